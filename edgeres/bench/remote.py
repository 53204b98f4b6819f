"""Bench on another machine over SSH: models go there, its own edgeres measures, the report comes back.

The device measures itself (``--target jetson`` detects its model there); this side checks that the
report is of the very files sent (sha256), applies ``--max-drop``, and writes report.json/.md/.png.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

from edgeres.artifacts import sha256_file
from edgeres.bench import BenchConfig, check_budget
from edgeres.errors import ArtifactError, ConfigError, RemoteError
from edgeres.progress import enabled, log
from edgeres.remote import SshHost


def config_json(cfg: BenchConfig) -> str:
    """The config the device runs with, as JSON (less ``max_drop``, which is applied here): no flags rebuilt. Fields
    at their defaults are left out, so a device's edgeres of an earlier release reads a config that uses nothing new.
    """
    default = asdict(BenchConfig())
    return json.dumps({k: v for k, v in asdict(replace(cfg, max_drop=None)).items() if v != default[k]},
                      separators=(",", ":"))


def _names(paths: list[Path]) -> dict[str, Path]:
    """Remote file names: the local base names, made unique."""
    out: dict[str, Path] = {}
    for i, p in enumerate(paths):
        name = p.name if p.name not in out else f"{i}-{p.name}"
        out[name] = p
    return out


# On the device, one folder per set of models (named by their sha256): engines built there by one bench are
# reused by the next, since a TensorRT build takes minutes on a Jetson. --clean-remote removes the folder.
REMOTE_CACHE = ".cache/edgeres/bench"


def _remote_dir(host: SshHost, digests: list[str]) -> str:
    key = hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()[:16]
    script = f'd="$HOME/{REMOTE_CACHE}/$1" && mkdir -p -- "$d" && cd -- "$d" && pwd -P'
    rdir = host.run(["sh", "-c", script, "sh", key]).stdout.decode().strip()
    if not rdir.startswith("/"):
        raise RemoteError(f"{host.destination}: could not make ~/{REMOTE_CACHE}/{key} (got {rdir!r}); "
                          f"check that its home folder is writable")
    return rdir


def bench_remote(models: list[Path], out_dir: Path, cfg: BenchConfig, host: SshHost,
                 checkpoint: Path | None = None, remote_edgeres: str = "edgeres", clean: bool = False) -> dict:
    """Run ``edgeres bench`` on ``host`` with these models; write the report into ``out_dir`` here."""
    from edgeres.bench.report import write_reports

    cfg.validate()
    paths = [Path(m) for m in models] + ([Path(checkpoint)] if checkpoint else [])
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"{p} does not exist; pass the ONNX files from `edgeres export`/`quantize`")
    files = _names(paths)
    digest = {name: sha256_file(p) for name, p in files.items()}
    version = host.run([remote_edgeres, "--version"]).stdout.decode().strip()
    log(f"{host.destination}: {version}")
    rdir = _remote_dir(host, list(digest.values()))
    try:
        size = sum(p.stat().st_size for p in paths) / 1e6
        log(f"{host.destination}: sending {len(files)} files ({size:.1f} MB) to {rdir}")
        host.put(files, rdir)
        names = list(files)
        quiet = [] if enabled() else ["env", "EDGERES_QUIET=1"]
        cmd = [*quiet, remote_edgeres, "bench", *(f"{rdir}/{n}" for n in names[:len(models)]),
               "--config-json", config_json(cfg), "--out", f"{rdir}/report", "--json"]
        if checkpoint:
            cmd += ["--checkpoint", f"{rdir}/{names[-1]}"]
        rc, out, err = host.stream(cmd)
        if rc != 0:
            raise RemoteError(host.failure(cmd[len(quiet):], rc, err))
    finally:
        if clean:
            host.run(["rm", "-rf", "--", rdir], check=False)
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        raise RemoteError(f"{host.destination} printed no report; is its edgeres ({version}) this version?") from None
    sent = {f"{rdir}/{n}": n for n in files}
    for r in report.get("results", []):
        name = sent.get(r.get("model"))
        if name is None or r.get("sha256") != digest[name]:
            raise ArtifactError(f"{host.destination} reported on {r.get('model')}, not on a file that was sent; "
                                f"check its edgeres version ({version})")
        r["remote_model"], r["model"] = r["model"], str(files[name])
    report["remote"] = {"host": host.destination, "edgeres": version, "dir": rdir, "kept": not clean}
    report["config"] = asdict(cfg)
    write_reports(report, Path(out_dir))
    check_budget(report, cfg.max_drop, Path(out_dir))
    return report
