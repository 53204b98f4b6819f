"""Training memory on an ImageFolder does not grow with the number of images: images stream from disk.

    .venv/bin/python benchmarks/train_memory.py [--images 1000] [--factor 10] [--size 64]

Makes two RGB ImageFolders of rendered digits (``--images`` and ``--factor`` times as many, ``--size`` px), trains
one epoch of ResNet-18 on each at ``--size`` px with two loader workers, and samples the resident memory of the whole
process tree (trainer and workers, from /proc) every 0.1 s. Prints the peak of each run and their ratio. Holding the
decoded images would cost ``images × 3 × size² × 4`` bytes: that figure is printed for comparison.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeres.data.digits import make_digits


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def peak_training_rss(data: Path, out: Path, size: int) -> tuple[int, float, float]:
    args = [sys.executable, "-m", "edgeres", "train", "--data", str(data), "--out", str(out), "--epochs", "1",
            "--batch-size", "50", "--lr", "0.1", "--size", str(size), "--workers", "2", "--val-split", "0"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "EDGERES_QUIET": "1"})
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    if proc.returncode:
        sys.exit(proc.stderr.read() if proc.stderr else "training failed")
    man = out.with_name(out.name + ".json").read_text()
    import json
    return peak, time.perf_counter() - t0, json.loads(man)["results"]["top1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000, help="training images of the smaller set")
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    print(f"{'train images':>12} {'peak RSS MiB':>13} {'decoded set MiB':>16} {'s':>6} {'top-1':>6}")
    peaks = []
    with tempfile.TemporaryDirectory(prefix="edgeres-mem-") as tmp:
        for n in (args.images, args.images * args.factor):
            data = make_digits(Path(tmp) / f"d{n}", n // 10, 10, side=args.size, rgb=True, seed=n)
            peak, secs, top1 = peak_training_rss(data, Path(tmp) / f"m{n}.pt", args.size)
            peaks.append(peak)
            held = n * 3 * args.size ** 2 * 4 / 2**20
            print(f"{n:>12} {peak / 2**20:13.0f} {held:16.0f} {secs:6.0f} {top1:6.1f}")
    print(f"peak RSS ratio, {args.factor}x the images: {peaks[1] / peaks[0]:.3f}x (bar: within 1.2x)")


if __name__ == "__main__":
    main()
