"""Data-parallel training with a real torchrun: two processes over gloo, one checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from edgeres.models import load_checkpoint

# the smallest network (the subject is the process group, not the model): a third of ResNet-18's time
ARGS = ["train", "--epochs", "2", "--limit-train", "2048", "--limit-test", "300", "--size", "32", "--arch", "resnet20",
        "--batch-size", "32", "--lr", "0.1", "--amp", "off"]


def test_torchrun_two_processes_train_one_checkpoint(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "EDGERES_QUIET": "0", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "edgeres", *ARGS, "--out", str(out), "--json"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "× 2 processes (gloo)" in r.stderr
    doc = json.loads(r.stdout)  # rank 0 alone reports
    manifest = json.loads(out.with_name(out.name + ".json").read_text())
    assert manifest["results"]["processes"] == 2
    ck = load_checkpoint(out)
    assert ck.extra["epoch"] == 2 and ck.model() is not None
    # 128 steps learn: one run reached 60.0% with these options, chance is 10%
    assert doc["top1"] > 40 and manifest["results"]["history"][-1]["top1"] == round(doc["top1"], 2)
