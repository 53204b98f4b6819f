"""Faults (issue 12, defects 6, 9, 11, 17): a read-only folder and a full disk (small tmpfs mounts, where the test
runs as root), SIGKILL in every stage, and a report that is written as one unit. For each: one line, no traceback,
nothing of the user's lost, and no leftover a later stage would use or that nothing removes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cli import QUICK_TIMING, assert_one_line_error, edgeres


def _mount(where: Path, opts: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {r.stderr.strip()}")
    return where


@pytest.fixture
def mounts(tmp_path):
    made: list[Path] = []

    def mount(name: str, opts: str) -> Path:
        made.append(_mount(tmp_path / name, opts))
        return made[-1]

    yield mount
    for m in made:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.mark.parametrize("stage", ["train", "export", "quantize", "bench", "calib", "bundle"])
def test_a_read_only_out_is_refused_before_any_work(stage, small_run, mounts):
    cfg, _ = small_run
    ro = mounts("ro", "ro,size=1m")
    args = {"train": ["train", "--epochs", "1", "--limit-train", "256", "--out", f"{ro}/m.pt"],
            "export": ["export", f"{cfg.out}/model.pt", "--out", f"{ro}/m.onnx"],
            "quantize": ["quantize", f"{cfg.out}/model.onnx", "--out", f"{ro}/q.onnx"],
            "bench": ["bench", f"{cfg.out}/model.onnx", "--out", f"{ro}/r"],
            "calib": ["calib", "make", "--out", f"{ro}/c"],
            "bundle": ["bundle", f"{cfg.out}/model.onnx", "--target", "cpu", "--out", f"{ro}/b"]}[stage]
    t0 = time.perf_counter()
    r = edgeres(*args)
    assert_one_line_error(r, "not writable")
    assert time.perf_counter() - t0 < 30  # refused up front, not after training or calibrating


@pytest.mark.parametrize("stage", ["export", "quantize", "bench"])
def test_a_full_disk_is_named_and_leaves_nothing_half_written(stage, small_run, mounts):
    cfg, _ = small_run
    full = mounts(f"full-{stage}", "size=32k")  # a model is megabytes, a report over 100 KB
    (full / "keep.txt").write_text("the user's")
    args = {"export": ["export", f"{cfg.out}/model.pt", "--out", f"{full}/m.onnx", "--parity-images", "16"],
            "quantize": ["quantize", f"{cfg.out}/model.onnx", "--out", f"{full}/q.onnx"],
            "bench": ["bench", f"{cfg.out}/model.onnx", "--out", f"{full}/r", "--limit", "50", *QUICK_TIMING]}
    r = edgeres(*args[stage])
    assert_one_line_error(r, "disk full")
    left = sorted(p.name for p in full.rglob("*") if p.is_file())
    assert left == ["keep.txt"], left  # no model, no orphan manifest, no temporary
    assert (full / "keep.txt").read_text() == "the user's"


def test_a_report_is_replaced_whole_or_not_at_all(small_run, tmp_path, monkeypatch):
    """A failure while writing the new report (here: the plot) leaves the old report.json, .md and .png intact."""
    from edgeres.bench import report as report_mod
    from edgeres.bench.report import load_report, write_reports

    cfg, rep = small_run
    out = tmp_path / "r"
    write_reports(rep, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    changed = {**rep, "created": "a later run"}

    def broken(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_mod, "plot", broken)
    with pytest.raises(OSError):
        write_reports(changed, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert load_report(out / "report.json")["created"] == rep["created"]


def _kill_when(proc: subprocess.Popen, folder: Path, pattern: str, timeout: float = 120) -> bool:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout and proc.poll() is None:
        if list(folder.glob(pattern)):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    return False


@pytest.mark.parametrize("stage", ["export", "quantize", "calib", "bench"])
def test_sigkill_leftovers_are_removed_by_the_next_run(stage, small_run, tmp_path):
    """A temporary of a killed run carries its pid; the next writer of the same output removes it."""
    cfg, _ = small_run
    out = tmp_path / {"export": "m.onnx", "quantize": "q.onnx", "calib": "c", "bench": "r"}[stage]
    args = {"export": ["export", f"{cfg.out}/model.pt", "--parity-images", "16"],
            "quantize": ["quantize", f"{cfg.out}/model.onnx", "--recipe", "cpu"],
            "calib": ["calib", "make", "--per-class", "100"],
            "bench": ["bench", f"{cfg.out}/model.onnx", "--limit", "50", "--duration", "0.05"]}[stage]
    watch, pattern = (out, ".stage.*.tmp") if stage == "bench" else (tmp_path, f".{out.name}.*.tmp")
    proc = subprocess.Popen([sys.executable, "-m", "edgeres", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "EDGERES_QUIET": "1"})
    if not _kill_when(proc, watch, pattern):
        pytest.skip("the run finished before its temporary appeared")
    if not list(watch.glob(pattern)) and out.exists():
        pytest.skip("the run put its output in place between the temporary's sighting and the kill")
    assert list(watch.glob(pattern))
    if stage in ("export", "quantize"):
        assert not out.exists() and not Path(str(out) + ".json").exists()  # no artifact or manifest alone
    r = edgeres(*args, *(QUICK_TIMING if stage == "bench" else ()), "--out", str(out))  # the killed run was slow on purpose
    assert r.returncode == 0, r.stderr
    assert not list(watch.glob(pattern)) and out.exists()
    if stage in ("export", "quantize"):
        from edgeres.artifacts import sha256_file

        assert json.loads(Path(str(out) + ".json").read_text())["artifact"]["sha256"] == sha256_file(out)


def test_a_damaged_run_checkpoint_is_trained_afresh_not_resumed(tmp_path, calib_dir):
    out = tmp_path / "run"
    # the smallest network and calibration set: the subject is the runner, not the model
    args = ("run", "--out", str(out), "--arch", "resnet20", "--limit-train", "256", "--limit-test", "64", "--epochs", "1",
            "--calibration", str(calib_dir), "--allow-small", *QUICK_TIMING)
    first = edgeres(*args)
    assert first.returncode == 0, first.stderr
    ck = out / "model.pt"
    ck.write_bytes(ck.read_bytes()[: len(ck.read_bytes()) // 2])  # cut short, as a full disk or a killed copy does
    again = edgeres(*args)
    assert again.returncode == 0, again.stderr
    from edgeres.artifacts import sha256_file

    assert json.loads((out / "model.pt.json").read_text())["artifact"]["sha256"] == sha256_file(ck)


def test_an_out_that_is_not_utf8_is_named_before_work(small_run, tmp_path):
    """Defect 16: a non-UTF-8 --out was reported as 'ONNX Runtime cannot load …; re-run export'."""
    cfg, _ = small_run
    r = subprocess.run([sys.executable, "-m", "edgeres", "export", f"{cfg.out}/model.pt", "--out",
                        os.fsencode(tmp_path) + b"/bad\xff/m.onnx"], capture_output=True, text=True,
                       env={**os.environ, "EDGERES_QUIET": "1"})
    assert_one_line_error(r, "not UTF-8")
    assert list(tmp_path.iterdir()) == []


def test_an_out_under_a_file_is_named_before_work(small_run, tmp_path):
    cfg, _ = small_run
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(edgeres("export", f"{cfg.out}/model.pt", "--out", str(tmp_path / "afile" / "m.onnx")),
                          "which is a file")


def _as_a_terminal_starts_it() -> None:
    """The stop signals at their defaults in the child, as a shell on a terminal leaves them: a suite run under
    ``nohup`` ignores SIGHUP, the child would inherit that, and edgeres rightly keeps going (seen: 'export-SIGHUP'
    exited 0 twice under a ``nohup`` run of the suite, and passed alone).
    """
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def _wait_until_working(stage: str, proc: subprocess.Popen, out: Path, wait_s: float = 4.0) -> None:
    """Until ``proc`` is into its work: calib until its temporary folder holds images (a fixed wait let a fast
    machine finish the 30,000 images first, and the signal land after the set was in place); the others ``wait_s``.
    """
    deadline = time.monotonic() + (60.0 if stage == "calib" else wait_s)
    while time.monotonic() < deadline and proc.poll() is None:
        if stage == "calib" and any(len(list(d.glob("*.png"))) >= 50 for d in out.parent.glob(f".{out.name}.*.tmp")):
            return
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip(f"{stage} finished before it could be interrupted")
    assert stage != "calib", "calib make wrote no image into a temporary folder within 60 s"


@pytest.mark.parametrize(("stage", "sig"), [(s, signal.SIGINT) for s in ("train", "export", "quantize", "bench", "calib")]
                         + [("calib", signal.SIGTERM), ("export", signal.SIGHUP)],
                         ids=lambda v: v.name if isinstance(v, signal.Signals) else v)
def test_a_stop_in_every_stage_leaves_no_partial_output(stage, sig, small_run, tmp_path):
    """Ctrl-C: one line, death by SIGINT (a shell's status 130), and neither the output nor a temporary of it left
    behind. (It exited 130 by sys.exit, and now and then died of SIGINT instead, under load: strace showed the process
    sending itself SIGINT at exit, CPython's way out for a KeyboardInterrupt it counts as unhandled, though edgeres had
    caught it; which call left that mark was not found. Now it is always the signal.) SIGTERM (kill, timeout,
    systemd, a CI runner) and SIGHUP (a closed terminal) do the same; they killed Python on the spot, leaving the
    temporary behind.
    """
    cfg, _ = small_run
    out = tmp_path / {"train": "m.pt", "export": "m.onnx", "quantize": "q.onnx", "bench": "r", "calib": "c"}[stage]
    args = {"train": ["train", "--epochs", "2", "--limit-train", "2048", "--size", "32"],
            "export": ["export", f"{cfg.out}/model.pt"],
            "quantize": ["quantize", f"{cfg.out}/model.onnx", "--method", "entropy", "--recipe", "cpu"],
            "bench": ["bench", f"{cfg.out}/model.onnx", "--limit", "200"],
            "calib": ["calib", "make", "--per-class", "3000"]}[stage]
    def stopped(wait_s: float) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen([sys.executable, "-m", "edgeres", *args, "--out", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "EDGERES_QUIET": "1"},
                                preexec_fn=_as_a_terminal_starts_it)
        _wait_until_working(stage, proc, out, wait_s)
        proc.send_signal(sig)
        return proc, proc.communicate(timeout=60)[1]

    proc, err = stopped(4.0)
    if proc.returncode == 0 and stage != "calib" and not err:
        # it ended in the instant between the wait and the signal (seen once: a small export done at 4 s); again,
        # sooner. A stage that ignored the signal would end at 0 both times, and fail below.
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
        proc, err = stopped(2.0)
    assert proc.returncode == -sig, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err
    assert not out.exists() or (stage == "bench" and not (out / "report.json").exists())
    assert not [p for p in tmp_path.rglob(".*") if p.name.endswith(".tmp")]


def test_ctrl_c_stops_the_shell_script_that_ran_edgeres(small_run, tmp_path):
    """A terminal's Ctrl-C goes to the whole foreground group. bash goes on with a script (or a loop of benches) after
    a child that exits 130 as if it had handled the signal, and stops only after a child that died of it.
    """
    cfg, _ = small_run
    out = tmp_path / "r"
    script = f"'{sys.executable}' -m edgeres bench '{cfg.out}/model.onnx' --duration 30 --out '{out}'; echo went on"
    proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "EDGERES_QUIET": "1"}, start_new_session=True,
                            preexec_fn=_as_a_terminal_starts_it)
    _wait_until_working("bench", proc, out)
    os.killpg(proc.pid, signal.SIGINT)  # as the terminal does
    stdout, err = proc.communicate(timeout=60)
    assert "interrupted" in err and "went on" not in stdout
    assert proc.returncode == -signal.SIGINT
