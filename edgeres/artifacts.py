"""Atomic writes and sidecar provenance manifests for every artifact."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeres.errors import ArtifactError, ConfigError
from edgeres.paths import visible_files

MANIFEST_SUFFIX = ".json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def listing_sha256(folder: Path) -> str:
    """sha256 of a folder's listing: every visible file's relative path, size and modification time (an ImageFolder
    of 100,000 photos is listed in a second; hashing their bytes would take minutes on every run).
    """
    h = hashlib.sha256()
    for f in visible_files(folder):
        st = f.stat()
        h.update(f"{f.relative_to(folder).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(parent: Path, prefix: str) -> None:
    """Remove ``<prefix><pid>.*`` files and folders in ``parent`` whose process is gone (a killed run's leftovers)."""
    try:
        found = list(Path(parent).glob(f"{prefix}*"))
    except OSError:
        return
    for p in found:
        pid = p.name[len(prefix):].split(".", 1)[0].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def temp_dir(kind: str) -> tempfile.TemporaryDirectory:
    """A scratch folder under the system temp dir, named with this process's id so a later run removes it if this
    one is killed.
    """
    base = Path(tempfile.gettempdir())
    remove_stale_temporaries(base, f"edgeres-{kind}-")
    return tempfile.TemporaryDirectory(prefix=f"edgeres-{kind}-{os.getpid()}-", dir=base)


def check_out(out: Path, option: str = "--out", folder: bool = False) -> None:
    """Before any work: ``out`` must be a file path (or a folder path with ``folder``) that can be written."""
    out = Path(out)
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{option} {ascii(str(out))} has bytes that are not UTF-8; name it in UTF-8 (ONNX Runtime "
                          f"and TensorRT take UTF-8 paths only)") from None
    if not folder and out.is_dir():
        raise ConfigError(f"{option} {out} is a folder; give a file path inside it, e.g. {out / 'model.onnx'}")
    if folder and out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} is a file; give a folder path")
    up = out.parent if not folder or not out.exists() else out
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir():
        raise ConfigError(f"{option} {out} lies under {up}, which is a file; choose another {option}")
    if not os.access(up, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {out}: {up} is not writable (read-only or no permission); choose another "
                          f"{option}")
    try:
        probe = tempfile.NamedTemporaryFile(dir=up, prefix=".edgeres-probe-")
        probe.close()
    except OSError as e:
        raise ConfigError(f"{option} {out}: cannot write in {up} ({e.strerror}); choose another {option}") from None


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it over ``dest`` only on success. The temporary carries this
    process's id, so the next writer of ``dest`` removes it if this process is killed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest.parent, f".{dest.name}.")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; an artifact is as readable as any file
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield a scratch folder inside ``dest``; on success move every file in it into ``dest`` (renames, which a full
    disk cannot stop), on failure remove it: ``dest`` then holds all the old files or all the new ones.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest, ".stage.")
    stage = Path(tempfile.mkdtemp(prefix=f".stage.{os.getpid()}.", suffix=".tmp", dir=dest))
    try:
        yield stage
        for f in sorted(stage.iterdir()):
            os.chmod(f, 0o666 & ~_umask())
            os.replace(f, dest / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(dest: Path, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return dest


def write_json_atomic(dest: Path, obj: Any) -> Path:
    return write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def versions() -> dict[str, str | None]:
    """Versions of the packages that decide what an artifact contains."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("edgeres", "torch", "onnx", "onnxruntime", "numpy", "tensorrt"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def manifest_path(artifact: Path) -> Path:
    return Path(str(artifact) + MANIFEST_SUFFIX)


def write_manifest(
    artifact: Path,
    kind: str,
    inputs: dict[str, Path | str],
    config: dict[str, Any],
    preprocessing: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    content: Path | None = None,
) -> Path:
    """Write ``<artifact>.json``: what it is, the sha256 of itself and its inputs, config, versions.

    ``content``: the file whose bytes ``artifact`` will hold (its temporary), so the manifest can be written before
    the artifact is renamed into place and no artifact ever stands without one.
    """
    ins: dict[str, dict[str, Any]] = {}
    for name, p in inputs.items():
        p = Path(p)
        ins[name] = {"path": str(p), "sha256": sha256_file(p) if p.is_file() else None}
        if p.is_dir():
            ins[name]["listing_sha256"] = listing_sha256(p)
    doc = {
        "kind": kind,
        "artifact": {"path": str(artifact), "sha256": sha256_file(Path(content or artifact))},
        "inputs": ins,
        "config": config,
        "preprocessing": preprocessing,
        "results": results or {},
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return write_json_atomic(manifest_path(Path(artifact)), doc)


def read_manifest(artifact: Path) -> dict[str, Any] | None:
    p = manifest_path(Path(artifact))
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def is_fresh(artifact: Path, inputs: dict[str, Path | str], config: dict[str, Any]) -> bool:
    """True when ``artifact`` exists, matches its manifest, and was made from these inputs and config."""
    artifact = Path(artifact)
    man = read_manifest(artifact)
    if man is None or not artifact.is_file():
        return False
    if man.get("artifact", {}).get("sha256") != sha256_file(artifact):
        return False
    if json.loads(json.dumps(config, default=str)) != man.get("config"):
        return False
    for name, p in inputs.items():
        p = Path(p)
        rec = man.get("inputs", {}).get(name)
        if not isinstance(rec, dict):
            return False
        if p.is_dir():  # an ImageFolder: the same listing
            if rec.get("listing_sha256") is None or rec["listing_sha256"] != listing_sha256(p):
                return False
        elif not p.is_file() or rec.get("sha256") != sha256_file(p):
            return False
    return True


def check_against_manifest(path: Path, what: str, fix: str) -> None:
    """Refuse a file whose sidecar manifest (written when edgeres made it) records another sha256: it changed since."""
    man = read_manifest(Path(path))
    want = (man or {}).get("artifact", {}).get("sha256") if isinstance(man, dict) else None
    if want and Path(path).is_file() and sha256_file(Path(path)) != want:
        raise ArtifactError(f"{path} is not the {what} edgeres wrote: its sha256 differs from {manifest_path(path).name}"
                            f" (damaged or edited since); {fix}")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting_inputs(out: Path, inputs: dict[str, Path], option: str = "--out") -> None:
    """Raise ``ConfigError`` when ``out`` (or its manifest) is one of ``inputs``: a stage never writes over what it
    reads; or when ``out`` cannot be written (a folder, under a file, read-only): said before the work, not after.
    """
    out = Path(out)
    check_out(out, option)
    for what, p in inputs.items():
        p = Path(p)
        for target in (out, manifest_path(out)):
            if target.resolve() == p.resolve() or _same(target, p):
                raise ConfigError(f"{option} {out} would overwrite the {what} {p}; give another {option} path")
    if out.is_dir():
        raise ConfigError(f"{option} {out} is a folder; give a file path inside it, e.g. {out / 'model.onnx'}")
