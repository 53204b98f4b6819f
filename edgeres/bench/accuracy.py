"""Accuracy against labels and agreement with the float reference, for any Session."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Accuracy:
    images: int
    top1: float
    top5: float
    agreement: float | None = None  # top-1 agreement with the reference, %
    cosine: float | None = None  # mean cosine similarity of logits with the reference
    max_abs_diff: float | None = None  # max |Δlogit| against the reference
    delta_top1: float | None = None  # top-1 minus the reference's top-1, in points
    per_class: list[float | None] | None = None  # top-1 (%) of each class's images, by class index (None: no image)

    def to_dict(self) -> dict:
        return asdict(self)


def topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    if k == 1:  # argmax: ties (quantized logits have them) break to the lowest class, as predict and the CSV do
        return float(100.0 * (logits.argmax(1) == labels).mean())
    best = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(100.0 * (best == labels[:, None]).any(1).mean())


def accuracy(logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None) -> Accuracy:
    """Top-1/top-5 (%), and when ``reference`` logits are given, agreement, cosine and max |Δ|."""
    top1, top5 = topk(logits, labels, 1), topk(logits, labels, 5)
    classes = per_class(logits.argmax(1), labels, logits.shape[1])
    if reference is None:
        return Accuracy(len(labels), top1, top5, per_class=classes)
    agree = float(100.0 * (logits.argmax(1) == reference.argmax(1)).mean())
    num = (logits * reference).sum(1)
    den = np.linalg.norm(logits, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12
    cos = float((num / den).mean())
    diff = float(np.abs(logits - reference).max())
    return Accuracy(len(labels), top1, top5, agree, cos, diff, top1 - topk(reference, labels, 1), classes)


def per_class(pred: np.ndarray, labels: np.ndarray, n: int) -> list[float | None]:
    """Top-1 (%) among each class's images; None for a class without images."""
    out: list[float | None] = []
    for k in range(n):
        mine = labels == k
        out.append(float(100.0 * (pred[mine] == k).mean()) if mine.any() else None)
    return out


def confusion(pred: np.ndarray, labels: np.ndarray, n: int) -> list[list[int]]:
    """Counts: row = true class, column = predicted class."""
    m = np.zeros((n, n), np.int64)
    np.add.at(m, (labels, np.clip(pred, 0, n - 1)), 1)
    return m.tolist()
