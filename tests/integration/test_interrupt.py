"""Ctrl-C during training keeps the last finished epoch, and --resume carries on from it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgeres.models import load_checkpoint

# resnet20, the smallest network: about 1.3 s an epoch here, far more than the 0.2 s between looks for epoch 1
ARGS = ["--arch", "resnet20", "--epochs", "3", "--limit-train", "1024", "--limit-test", "200", "--batch-size", "64",
        "--size", "32"]


def test_interrupt_then_resume(tmp_path):
    out = tmp_path / "m.pt"
    env = {**os.environ, "EDGERES_QUIET": "1"}
    # A shell without job control starts background jobs with SIGINT ignored, and children inherit that;
    # give the child the default disposition a terminal would, so Python raises KeyboardInterrupt.
    p = subprocess.Popen([sys.executable, "-m", "edgeres", "train", *ARGS, "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not out.with_name("m.pt.json").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)  # mid-way through a later epoch
    _, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGINT and "Traceback" not in err  # a shell's status 130
    assert "re-run to resume" in err
    ck = load_checkpoint(out)  # the last finished epoch, intact
    done = ck.extra["epoch"]
    assert 1 <= done < 3
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    r = subprocess.run([sys.executable, "-m", "edgeres", "train", *ARGS, "--out", str(out), "--resume", "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(out)
    assert ck.extra["epoch"] == 3 and [h["epoch"] for h in ck.extra["history"]] == [1, 2, 3]
    assert Path(out).with_name("m.pt.json").is_file()
