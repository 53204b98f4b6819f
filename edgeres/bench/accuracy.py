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

    def to_dict(self) -> dict:
        return asdict(self)


def topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    best = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(100.0 * (best == labels[:, None]).any(1).mean())


def accuracy(logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None) -> Accuracy:
    """Top-1/top-5 (%), and when ``reference`` logits are given, agreement, cosine and max |Δ|."""
    top1, top5 = topk(logits, labels, 1), topk(logits, labels, 5)
    if reference is None:
        return Accuracy(len(labels), top1, top5)
    agree = float(100.0 * (logits.argmax(1) == reference.argmax(1)).mean())
    num = (logits * reference).sum(1)
    den = np.linalg.norm(logits, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12
    cos = float((num / den).mean())
    diff = float(np.abs(logits - reference).max())
    return Accuracy(len(labels), top1, top5, agree, cos, diff, top1 - topk(reference, labels, 1))
