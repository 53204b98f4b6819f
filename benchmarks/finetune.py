"""Fine-tuning against training from scratch, at the same number of steps, on a data set the model never saw.

    .venv/bin/python benchmarks/finetune.py [--weights runs/demo/model.pt] [--per-class 100] [--epochs 3] [--seeds 3]

Makes an ImageFolder of rendered digits (``edgeres.data.digits``: 28×28 grey, ten classes, 100 training and 50 test
images per class) and trains ResNet-18 on it twice per seed with the same options, steps and input size: from
random weights (at the checkpoint's input size, and at the folder's own default, 32 px), and from the demo's
Fashion-MNIST checkpoint (``--weights``, head replaced). Prints the test top-1 of each run and the margin over the
better scratch run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeres.data.digits import make_digits


def train(data: Path, out: Path, seed: int, epochs: int, weights: Path | None, size: int | None) -> dict:
    args = [sys.executable, "-m", "edgeres", "train", "--data", str(data), "--out", str(out), "--epochs", str(epochs),
            "--batch-size", "50", "--lr", "0.1", "--seed", str(seed), "--json"] + (["--size", str(size)] if size else [])
    if weights:
        args += ["--weights", str(weights)]
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "EDGERES_QUIET": "1"})
    if r.returncode:
        sys.exit(r.stderr.strip())
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=Path("runs/demo/model.pt"))
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    if not args.weights.is_file():
        sys.exit(f"{args.weights} not found; run ./scripts/demo.sh (or `edgeres run`) first")
    size = json.loads(args.weights.with_name(args.weights.name + ".json").read_text())["preprocessing"]["size"]
    with tempfile.TemporaryDirectory(prefix="edgeres-ft-") as tmp:
        data = make_digits(Path(tmp) / "digits", args.per_class, 50)
        print(f"digits ImageFolder: {args.per_class} train / 50 test images per class; ResNet-18 at {size} px, "
              f"{args.epochs} epochs of batch 50 for both (validation holds out 10% of train)")
        print(f"{'seed':>4} {f'scratch {size}px':>14} {'scratch 32px':>13} {'fine-tuned':>11} {'margin pt':>10} {'s':>6}")
        margins = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            a = train(data, Path(tmp) / f"s{seed}.pt", seed, args.epochs, None, size)
            d = train(data, Path(tmp) / f"d{seed}.pt", seed, args.epochs, None, None)  # the folder's default size
            b = train(data, Path(tmp) / f"f{seed}.pt", seed, args.epochs, args.weights, size)
            margins.append(b["top1"] - max(a["top1"], d["top1"]))
            print(f"{seed:>4} {a['top1']:14.2f} {d['top1']:13.2f} {b['top1']:11.2f} {margins[-1]:+10.2f} "
                  f"{time.perf_counter() - t0:6.1f}")
        print(f"margin over the better scratch run: mean {statistics.mean(margins):+.2f} pt, min {min(margins):+.2f} pt "
              f"over {args.seeds} seeds")


if __name__ == "__main__":
    main()
