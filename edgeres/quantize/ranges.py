"""Activation ranges for the weighted placement, searched per tensor on the calibration images.

(``minmax``, ``entropy`` and ``percentile`` come from ONNX Runtime's calibrators, for either placement.)
``mse`` picks the clipping range that minimizes the tensor's own quantization error. ``layer-mse`` and
``layer-cosine`` pick the one that keeps the output of the layers reading the tensor (with their int8 weights)
closest to float: an outlier that matters downstream is kept, one that does not is clipped. The layer that writes
the logits is judged by what it decides: the KL divergence of its class probabilities, not its output's cosine or
squared error, which the few images with the largest logits rule (and those are the images a clipped range cannot
flip). Each search tries clipping fractions of the observed range on a coarse grid, then refines.

Every measure is a mean over the search images, and with ``search_weights="margin"`` (the default) each image
counts by how near the float model's decision it is: ``exp(-m / median m)``, where ``m`` is its top-1 minus top-2
logit. An image whose decision is wide cannot flip, however its activations are clipped; an image near the boundary
flips on a small error. Uniformly weighted, the few images with the largest activations (and wide margins) rule the
mean, and the search keeps ranges wide for them at the cost of every other image's rounding (`docs/int8-hard-case.md`).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeres.quantize.layers import Layer, class_divergence, fake_quant, layers_of, torch_module
from edgeres.quantize.qdq_writer import ActRange

SEARCHED = ("mse", "layer-mse", "layer-cosine")
SEARCH_IMAGES = 128  # images each range search scores on (statistics use every calibration image)
COARSE = np.linspace(0.05, 1.0, 20)


@dataclass
class Activations:
    """The inputs of every weighted layer on the calibration images: extremes over all, samples of a few."""

    lo: dict[str, float]
    hi: dict[str, float]
    sample: dict[str, np.ndarray]  # first SEARCH_IMAGES images
    layers: list[Layer]
    outputs: frozenset[str] = frozenset()  # the logits: what a graph output is, or what its (Log)Softmax reads
    margins: np.ndarray | None = None  # the float model's top-1 minus top-2 logit on each sampled image

    def consumers(self, tensor: str) -> list[Layer]:
        return [la for la in self.layers if la.node.input[0] == tensor]


def collect(pre: Path, x: np.ndarray, input_name: str, batch: int, reduce_range: bool = False) -> Activations:
    """Run the float model once over ``x`` with every weighted layer's input as an extra output."""
    import onnxruntime as ort

    model = onnx.load(str(pre))
    layers = layers_of(model, reduce_range)
    outputs = logits_of(model)
    decision = decision_of(model)
    names = list(dict.fromkeys(la.node.input[0] for la in layers))
    fetched = names + ([decision] if decision not in names else [])
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in fetched)
    lo = {t: np.inf for t in names}
    hi = {t: -np.inf for t in names}
    parts: dict[str, list[np.ndarray]] = {t: [] for t in fetched}
    seen = 0
    with tempfile.TemporaryDirectory(prefix="edgeres-ranges-") as tmp:
        path = Path(tmp) / "augmented.onnx"
        onnx.save(model, str(path))
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for i in range(0, len(x), batch):
            outs = sess.run(fetched, {input_name: x[i:i + batch]})
            for t, a in zip(fetched, outs):
                if t in lo:
                    lo[t], hi[t] = min(lo[t], float(a.min())), max(hi[t], float(a.max()))
                if seen < SEARCH_IMAGES:
                    parts[t].append(a[:SEARCH_IMAGES - seen])
            seen += len(outs[0])
    sample = {t: np.concatenate(parts[t]) for t in names}
    return Activations(lo, hi, sample, layers, outputs, margins_of(np.concatenate(parts[decision])))


def decision_of(model: onnx.ModelProto) -> str:
    """The tensor the model decides by: its first output, or what the (Log)Softmax writing it reads."""
    out = model.graph.output[0].name
    return next((n.input[0] for n in model.graph.node
                 if n.op_type in ("Softmax", "LogSoftmax") and n.output[0] == out), out)


def margins_of(logits: np.ndarray) -> np.ndarray | None:
    """Each image's top-1 minus top-2 score; None where the output is not one score per class ([N, C], or
    [N, C, 1, 1]) of at least two classes: a map has no one decision to be near.
    """
    if logits.ndim < 2 or any(d != 1 for d in logits.shape[2:]):
        return None
    flat = logits.reshape(len(logits), -1).astype(np.float64)
    if flat.shape[1] < 2 or not np.isfinite(flat).all():
        return None
    top = np.sort(flat, axis=1)
    return top[:, -1] - top[:, -2]


def image_weights(margins: np.ndarray | None, how: str) -> np.ndarray | None:
    """Each search image's weight (mean 1): ``exp(-m / median m)`` by margin ``m`` for ``"margin"``; None (alike)
    for ``"uniform"``, or where the margins are unknown or their median is zero (most images tied).
    """
    if how == "uniform" or margins is None:
        return None
    tau = float(np.median(margins))
    if not tau > 0:
        return None
    w = np.exp(-margins / tau)
    return w / w.mean()


def logits_of(model: onnx.ModelProto) -> frozenset[str]:
    """The graph's outputs, and the input of each Softmax or LogSoftmax that writes one: the tensors that decide."""
    out = {o.name for o in model.graph.output}
    return frozenset(out | {n.input[0] for n in model.graph.node
                            if n.op_type in ("Softmax", "LogSoftmax") and n.output[0] in out})


def weighting(margins: np.ndarray | None, how: str) -> dict[str, Any]:
    """What the search's weighting did, for the report: how, over how many images, and their effective number
    (Kish's: (Σw)² / Σw², the number of equally weighted images that would give as steady a mean).
    """
    w = image_weights(margins, how)
    n = len(margins) if margins is not None else 0
    eff = float(w.sum() ** 2 / (w ** 2).sum()) if w is not None else float(n)
    return {"by": how if w is not None else "uniform", "images": n, "effective_images": round(eff, 1)}


def search_ranges(acts: Activations, method: str, unsigned: bool, offset: frozenset[str] = frozenset(),
                  weights: str = "margin") -> dict[str, ActRange]:
    """One range per weighted input, by ``method`` (one of SEARCHED), within the observed minimum and maximum; the
    ``offset`` tensors (`qdq_writer.offsettable`) over 256 levels whatever ``unsigned`` says; each search image
    weighted as ``weights`` (one of `config.SEARCH_WEIGHTS`) says.
    """
    from edgeres.progress import progress

    w = image_weights(acts.margins, weights)
    return {t: _searched(acts, t, ActRange(min(acts.lo[t], 0.0), max(acts.hi[t], 0.0)), method,
                         unsigned or t in offset, w)
            for t in progress(list(acts.sample), desc=f"{method} ranges", total=len(acts.sample))}


def _searched(acts: Activations, t: str, full: ActRange, method: str, unsigned: bool,
              weights: np.ndarray | None) -> ActRange:
    torch = torch_module()
    x = torch.from_numpy(acts.sample[t])
    consumers = acts.consumers(t)
    w = torch.from_numpy(weights[:len(x)].astype(np.float32)) if weights is not None else None

    def mean(v: Any) -> float:  # over the images, weighted
        return float(v.mean() if w is None else (v * w).sum() / w.sum())

    def scaled(f: float) -> ActRange:
        return clipped(full, f, unsigned)

    if method == "mse":
        def error(r: ActRange) -> float:
            return mean(((x - fake_quant(x, r, unsigned)) ** 2).flatten(1).mean(1))
    else:
        with torch.no_grad():
            wq = [torch.from_numpy(_dequantized_weight(la)) for la in consumers]
            ref = [la.run(x, torch.from_numpy(la.weight)) for la in consumers]

        def error(r: ActRange) -> float:
            xq = fake_quant(x, r, unsigned)
            total = 0.0
            with torch.no_grad():
                for la, w, y in zip(consumers, wq, ref):
                    yq = la.run(xq, w)
                    if la.node.output[0] in acts.outputs:
                        total += mean(class_divergence(y, yq, per_image=True))
                    elif method == "layer-mse":
                        total += mean(((y - yq) ** 2).flatten(1).sum(1)) / (mean((y ** 2).flatten(1).sum(1)) + 1e-20)
                    else:
                        total += 1.0 - mean(torch.nn.functional.cosine_similarity(y.flatten(1), yq.flatten(1)))
            return total

    best = min(COARSE, key=lambda f: error(scaled(float(f))))
    fine = np.clip(np.linspace(best - 0.05, best + 0.05, 11), 0.01, 1.0)
    return scaled(float(min(fine, key=lambda f: error(scaled(float(f))))))


def clipped(full: ActRange, f: float, unsigned: bool) -> ActRange:
    """A candidate range: the fraction ``f`` of the observed ``full`` range (post-ReLU: the top only; symmetric int8:
    of the larger side).
    """
    if full.lo >= 0:
        return ActRange(0.0, full.hi * f)
    if unsigned:
        return ActRange(full.lo * f, full.hi * f)
    a = full.amax * f
    return ActRange(-a, a)


def _dequantized_weight(la: Layer) -> np.ndarray:
    from edgeres.quantize.qdq_writer import dequantized

    q, scale = la.int8_weight()
    return dequantized(q, scale)
