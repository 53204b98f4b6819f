"""The classes of a bench: the labelled test images every row is scored on, checked against each model (the same
preprocessing, the same classes in the same order, labels on every image); and the per-class figures of its report,
every precision's top-1 per class, the classes a reduced precision hurts most, the float reference's confusion matrix
(plot), and each image's predicted class (``predictions.csv``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.artifacts import atomic_path
from edgeres.bench.rows import Entry
from edgeres.config import BenchConfig
from edgeres.data.datasets import ImageSet, load_dataset
from edgeres.errors import ConfigError, DataError
from edgeres.targets import TargetProfile

MAX_CONFUSION = 100  # classes; above, the matrix is left out of the report (it would be n² numbers)
HURT_SHOWN = 3


def hurt_most(report: dict[str, Any], row: dict[str, Any], n: int = HURT_SHOWN) -> list[tuple[str, float]]:
    """The ``n`` classes whose top-1 ``row`` lowers most against the reference row: (class, points)."""
    ref = report["results"][0]["accuracy"].get("per_class")
    mine = row["accuracy"].get("per_class")
    names = report["dataset"].get("classes") or []
    if not ref or not mine:
        return []
    drops = [(names[k] if k < len(names) else str(k), b - a) for k, (a, b) in enumerate(zip(ref, mine, strict=True))
             if a is not None and b is not None]
    return sorted((d for d in drops if d[1] < 0), key=lambda d: d[1])[:n]


def markdown_lines(report: dict[str, Any]) -> list[str]:
    names = report["dataset"].get("classes") or []
    res = report["results"]
    if not names or not res[0]["accuracy"].get("per_class"):
        return []
    out = ["", "Top-1 (%) per class:", "", "| class | " + " | ".join(r["label"] for r in res) + " |",
           "|---|" + "---|" * len(res)]
    for k, name in enumerate(names):
        cells = []
        for r in res:
            pc = r["accuracy"].get("per_class") or []
            v = pc[k] if k < len(pc) else None
            cells.append("—" if v is None else f"{v:.1f}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    for r in res[1:]:
        worst = hurt_most(report, r)
        if worst:
            out.append(f"- {r['label']} hurts most: " + ", ".join(f"{c} ({d:+.1f} pt)" for c, d in worst))
    return out


def plot_confusion(report: dict[str, Any], dest: Path) -> bool:
    """The reference's confusion matrix as a PNG; False when the report holds none."""
    m = report.get("confusion")
    if not m:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.asarray(m, dtype=np.float64)
    rows = a / np.maximum(1, a.sum(1, keepdims=True))
    names = report["dataset"].get("classes") or [str(i) for i in range(len(a))]
    side = max(4.0, 0.45 * len(a) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(a)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(a)), names, fontsize=7)
    if len(a) <= 20:
        for i in range(len(a)):
            for j in range(len(a)):
                if a[i, j]:
                    ax.text(j, i, str(int(a[i, j])), ha="center", va="center", fontsize=6,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{report['reference']}: confusion on {report['dataset']['name']} (rows sum to 1)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def predictions_csv(images: list[str], labels: np.ndarray, classes: list[str], predicted: dict[str, np.ndarray]) -> str:
    """``image,true,<row>…``: the class each row predicted for each image, by name."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "true", *predicted])
    name = (lambda k: classes[k] if 0 <= k < len(classes) else str(k))  # noqa: E731
    for i, img in enumerate(images):
        w.writerow([img, name(int(labels[i])), *(name(int(p[i])) for p in predicted.values())])
    return buf.getvalue()


def evaluation_data(entries: list[Entry], target: TargetProfile, cfg: BenchConfig) -> tuple[ImageSet, np.ndarray]:
    """The labelled test images every row is scored on, preprocessed as the models were made (checked alike)."""
    ref = entries[0]
    for e in entries[1:]:
        target.check_precision(e.precision)
        if e.info.preprocessing != ref.info.preprocessing:
            raise ConfigError(f"{e.path} was made with other preprocessing than {ref.path}; quantize the same float model")
    pre = ref.info.preprocessing
    data = cfg.data or ref.info.dataset
    if data is None:
        raise ConfigError(f"{ref.path} does not name its data set; pass --data")
    ds = load_dataset(data, "test")
    for e in entries:
        check_classes(e.info.classes, ds.classes, str(e.path), data)
    if cfg.limit:
        ds = ds.subset(np.arange(min(cfg.limit, len(ds))))
    if (ds.labels < 0).any():
        raise DataError(f"evaluation set {ds.name} has images without labels; use an ImageFolder tree with class folders")
    want = list(pre.input_shape)
    got = [d if isinstance(d, int) else None for d in ref.info.input_shape[1:]]
    if any(g is not None and g != w for g, w in zip(got, want)):
        raise ConfigError(f"{ref.path} takes input {got} but its preprocessing makes {want}; re-export the model")
    return ds, ds.tensors(pre, f"preprocess {ds.name}")


def check_classes(model: list[str], data: list[str], what: str, where: str) -> None:
    """A model is scored only on the classes it was trained on, in its order; otherwise the figures are noise."""
    if model and model != data:
        diff = sorted(set(model) ^ set(data))[:3]
        how = f"they differ in {', '.join(diff)}" if diff else "in another order"
        raise DataError(f"{what} classifies {len(model)} classes and {where}'s test split has {len(data)}: {how}; "
                        f"pass the --data the model was trained on")


def image_names(ds: ImageSet) -> list[str]:
    """How predictions.csv names each image: its file, or its index in an array-backed split."""
    return [str(p) for p in ds.paths] if ds.paths is not None else [f"{ds.name}#{i}" for i in range(len(ds))]
