"""The seed's central claim, reproduced: a plain network made deeper trains worse, and the residual shortcut removes
that degradation (He et al. 2015, section 4.2, on the CIFAR family).

    .venv/bin/python benchmarks/degradation.py [--images 5000] [--epochs 12] [--batch 64] [--lr 0.05]
                                               [--out runs/degradation]

Trains plain20, plain56, resnet20 and resnet56 (``edgeres train --arch …``: 3×3 convs on 16/32/64 filters in three
stages; residual and plain networks have the same parameters) on the same Fashion-MNIST training images, with the
same schedule, seed and epochs, and records each epoch's training error (on the images as they were trained, as the
paper's curves do) and test error. Prints the table, checks the claim, and plots both errors per epoch to
``--plot`` (docs/degradation.png).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgeres.config import TrainConfig
from edgeres.train import train

ARCHS = ("plain20", "plain56", "resnet20", "resnet56")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000, help="training images (a class-mixed random subset)")
    ap.add_argument("--test", type=int, default=2000, help="test images")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("runs/degradation"))
    ap.add_argument("--plot", type=Path, default=Path("docs/degradation.png"))
    args = ap.parse_args()
    curves: dict[str, list[dict]] = {}
    for arch in ARCHS:
        t0 = time.perf_counter()
        cfg = TrainConfig(data="fashion-mnist", arch=arch, size=args.size, epochs=args.epochs, batch_size=args.batch,
                          lr=args.lr, limit_train=args.images, limit_test=args.test, zero_init_residual=False,
                          label_smoothing=0.0, weight_decay=1e-4, seed=0)
        r = train(cfg, args.out / f"{arch}.pt")
        man = json.loads((args.out / f"{arch}.pt.json").read_text())
        curves[arch] = man["results"]["history"]
        print(f"{arch}: {r.seconds:.0f} s ({time.perf_counter() - t0:.0f} s with data)", flush=True)
    print(f"\n{args.images} Fashion-MNIST training images, {args.test} test images, {args.size} px, {args.epochs} "
          f"epochs of batch {args.batch}, one-cycle to lr {args.lr}, same seed; error % per epoch (train / test)")
    print("epoch  " + "  ".join(f"{a:>15}" for a in ARCHS))
    for e in range(args.epochs):
        print(f"{e + 1:>5}  " + "  ".join(f"{100 - curves[a][e]['train_top1']:6.2f} / {100 - curves[a][e]['top1']:5.2f}"
                                        for a in ARCHS))
    final = {a: 100 - curves[a][-1]["train_top1"] for a in ARCHS}
    deeper_plain_worse = final["plain56"] > final["plain20"]
    residual_best = final["resnet56"] < min(final["plain20"], final["plain56"])
    print("\nfinal training error: " + ", ".join(f"{a} {final[a]:.2f}%" for a in ARCHS))
    print(f"deeper plain trains worse (plain56 > plain20): {'yes' if deeper_plain_worse else 'NO'}")
    print(f"deeper residual trains better than both plain (resnet56 < plain20, plain56): "
          f"{'yes' if residual_best else 'NO'}")
    plot(curves, args)


def plot(curves: dict[str, list[dict]], args: argparse.Namespace) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    style = {"plain20": ("tab:blue", "--"), "plain56": ("tab:red", "--"),
             "resnet20": ("tab:blue", "-"), "resnet56": ("tab:red", "-")}
    for ax, key, name in ((axes[0], "train_top1", "training error (%)"), (axes[1], "top1", "test error (%)")):
        for a, hist in curves.items():
            c, ls = style[a]
            ax.plot([h["epoch"] for h in hist], [100 - h[key] for h in hist], ls, color=c, label=a, marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"plain vs residual, 20 and 56 layers: Fashion-MNIST, {args.images} training images, "
                 f"{args.epochs} epochs (dashed: plain; solid: residual)", fontsize=10)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
