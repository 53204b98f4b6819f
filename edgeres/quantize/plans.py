"""What quantize can write (a placement and its ranges), and the candidates ``--method auto`` scores.

Two placements:
- ``weighted``: Q/DQ on every Conv/Gemm input and weights only (TensorRT's guidance; `qdq_writer`). Its ranges come
  from ONNX Runtime's calibrators or from a search per tensor (`ranges`), optionally with bias correction.
- ``ort``: ONNX Runtime's ``quantize_static`` placement, every op it knows quantized, which the cpu recipe needs for
  ONNX Runtime's fused int8 kernels. The inputs and output of each Concat get one range, so neither TensorRT nor ONNX
  Runtime requantizes there.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx

from edgeres.config import QuantConfig
from edgeres.errors import ConfigError
from edgeres.quantize.calibrate import calibrate, range_of, tensor_ranges, write_qdq
from edgeres.quantize.qdq_writer import ActRange, WeightedPlan, offsettable, write_weighted
from edgeres.quantize.ranges import SEARCHED, Activations, collect, search_ranges
from edgeres.quantize.recipes import Recipe

ORT_METHODS = ("minmax", "entropy", "percentile")
# ops whose output ONNX Runtime's QDQ quantizer writes with its input's scale (QDQDirect8BitOp and MaxPool)
SHARES_INPUT_PARAMS = frozenset({"MaxPool", "AveragePool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten",
                                 "Slice", "TopK"})
# what --method auto tries, in this order: (placement, method, percentile); bias correction is tried on the best
# weighted candidate afterwards. Not entropy: ONNX Runtime's entropy calibrator was most of auto's time (164 of 214 s
# on DenseNet-121, tensorrt recipe) and never the choice, on either placement, for ResNet-18, ResNeXt-50 or DenseNet-121 in
# benchmarks/int8_peers.py (`--method entropy` still gives it)
AUTO_CANDIDATES: tuple[tuple[str, str, float | None], ...] = (
    ("ort", "minmax", None), ("ort", "percentile", 99.99),
    ("weighted", "minmax", None), ("weighted", "percentile", 99.99),
    ("weighted", "mse", None), ("weighted", "layer-mse", None), ("weighted", "layer-cosine", None))


class Plan(Protocol):
    label: str
    placement: str
    method: str
    percentile: float | None  # for method percentile

    def write(self, pre: Path, out: Path, exclude: list[str] | None = None, only: list[str] | None = None) -> None: ...

    def tensor_ranges(self) -> dict[str, tuple[float, float]]: ...


@dataclass
class OrtPlan:
    data: Any  # ONNX Runtime's TensorsData
    method: str
    recipe: Recipe
    work: Path
    label: str
    percentile: float | None = None
    placement: str = "ort"

    def write(self, pre: Path, out: Path, exclude: list[str] | None = None, only: list[str] | None = None) -> None:
        write_qdq(pre, out, self.data, self.method, self.recipe, self.work, exclude, only)

    def tensor_ranges(self) -> dict[str, tuple[float, float]]:
        return tensor_ranges(self.data)


@dataclass
class Weighted:
    plan: WeightedPlan
    method: str
    label: str
    percentile: float | None = None
    placement: str = "weighted"
    adarounded: list[str] = field(default_factory=list)
    graph: Path | None = None  # the float graph to write from, when QAT changed its weights

    def write(self, pre: Path, out: Path, exclude: list[str] | None = None, only: list[str] | None = None) -> None:
        write_weighted(self.graph or pre, out, self.plan, exclude, only)

    def tensor_ranges(self) -> dict[str, tuple[float, float]]:
        return {t: (r.lo, r.hi) for t, r in self.plan.ranges.items()}


def resolve_placement(placement: str, recipe: Recipe, method: str) -> str:
    """``auto``: weighted for TensorRT (and for searched ranges), ONNX Runtime's own for the cpu recipe."""
    if placement == "auto":
        return "weighted" if recipe.tensorrt_rules or method in SEARCHED else "ort"
    if placement == "ort" and method in SEARCHED:
        raise ConfigError(f"--method {method} searches ranges for the weighted placement; drop --placement ort")
    return placement


def unify_concat(data: Any, model: onnx.ModelProto) -> None:
    """Give every Concat's inputs and output one range. A tensor can feed several Concats (each DenseNet layer's output
    is in every later concatenation of its block), and ONNX Runtime writes the output of a pool, reshape or slice with
    its input's parameters, so the tensors Concats join are grouped transitively, through those ops too, and each group
    that holds a Concat gets the union of its ranges.
    """
    group: dict[str, str] = {}

    def root(t: str) -> str:
        while group.setdefault(t, t) != t:
            group[t] = group[group[t]]
            t = group[t]
        return t

    joined = set()
    for n in model.graph.node:
        if n.op_type == "Concat" or (n.op_type in SHARES_INPUT_PARAMS and n.input and n.output):
            names = [t for t in ([*n.input, *n.output] if n.op_type == "Concat" else [n.input[0], n.output[0]])
                     if t in data.data]
            for t in names[1:]:
                group[root(t)] = root(names[0])
            if n.op_type == "Concat":
                joined.update(names)
    members: dict[str, list[str]] = {}
    for t in list(group):
        members.setdefault(root(t), []).append(t)
    for names in members.values():
        if not joined.intersection(names):
            continue
        ranges = [range_of(data.data[t]) for t in names]
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        for t in names:
            data.data[t].lowest, data.data[t].highest = np.array(lo, np.float32), np.array(hi, np.float32)


class Planner:
    """Calibration statistics, computed once per method and shared by every candidate of one quantize run."""

    def __init__(self, pre: Path, x: np.ndarray, input_name: str, recipe: Recipe, cfg: QuantConfig, work: Path):
        self.pre, self.x, self.input_name, self.recipe, self.cfg, self.work = pre, x, input_name, recipe, cfg, work
        self._ort: dict[tuple[str, float], Any] = {}
        self._acts: Activations | None = None
        self._offset: frozenset[str] | None = None
        self.unsigned = recipe.activation == "uint8"

    def ort_data(self, method: str, percentile: float) -> Any:
        key = (method, percentile)
        if key not in self._ort:
            data = calibrate(self.pre, self.x, self.input_name, method, self.recipe, percentile, self.cfg.num_bins,
                             self.cfg.batch_size, self.work)
            unify_concat(data, onnx.load(str(self.pre), load_external_data=False))
            self._ort[key] = data
        return self._ort[key]

    def acts(self) -> Activations:
        if self._acts is None:
            self._acts = collect(self.pre, self.x, self.input_name, self.cfg.batch_size, self.recipe.reduce_range)
        return self._acts

    def offset(self) -> frozenset[str]:
        """The weighted inputs quantized over 256 levels by an offset (`qdq_writer.offsettable`): none where the
        activations are uint8 anyway, or with ``offset_inputs`` off.
        """
        if self._offset is None:
            self._offset = frozenset()
            if self.cfg.offset_inputs and not self.unsigned:
                self._offset = offsettable(onnx.load(str(self.pre), load_external_data=False), self.acts().lo)
        return self._offset

    def plan(self, placement: str, method: str, percentile: float | None = None,
             bias_correction: bool = False) -> Plan:
        pct = percentile or self.cfg.percentile
        label = f"{placement} {method}{f' {pct}' if method == 'percentile' else ''}"
        kept_pct = pct if method == "percentile" else None
        if placement == "ort":
            return OrtPlan(self.ort_data(method, pct), method, self.recipe, self.work, label, kept_pct)
        if method in SEARCHED:
            ranges = search_ranges(self.acts(), method, self.unsigned, self.offset(), self.cfg.search_weights)
        else:
            data = self.ort_data(method, pct)
            ranges = {t: ActRange(*range_of(data.data[t])) for t in self.acts().sample}
        plan = WeightedPlan(ranges, unsigned=self.unsigned, weight_qmax=63 if self.recipe.reduce_range else 127,
                            fold_unfused=self.recipe.latency_representative, offset=self.offset())
        if bias_correction:
            self.correct_biases(plan)
            label += " + bias correction"
        return Weighted(plan, method, label, kept_pct)

    def correct_biases(self, plan: WeightedPlan) -> None:
        from edgeres.quantize.correction import corrected_biases

        plan.biases = corrected_biases(self.acts(), plan)

    def adaround(self, w: Weighted, layers: list[str]) -> Weighted:
        """A copy of ``w`` with AdaRound weights for ``layers`` (node names); biases re-corrected if they were."""
        from edgeres.progress import progress
        from edgeres.quantize.correction import adaround

        acts = self.acts()
        todo = [la for la in acts.layers if la.name in layers]
        weights = dict(w.plan.weights)
        for la in progress(todo, desc="AdaRound", total=len(todo)):
            t = la.node.input[0]
            weights[la.name] = adaround(la, acts.sample[t], w.plan.ranges[t], w.plan.unsigned_of(t))
        plan = replace(w.plan, weights=weights, biases={})
        if w.plan.biases:
            self.correct_biases(plan)
        return Weighted(plan, w.method, f"{w.label} + AdaRound ({len(todo)} layers)", w.percentile,
                        adarounded=[la.name for la in todo])

    def qat(self, w: Weighted, steps: int, images: np.ndarray, seed: int = 0) -> tuple[Weighted, dict]:
        """A copy of ``w`` written from a graph fine-tuned on ``images`` with its own fake-quantization for ``steps``
        steps (``seed``: the order of its minibatches and its probe), with the activation ranges QAT learned
        (``--qat-ranges learned``) or the plan's.
        """
        from edgeres.quantize.qat import RANGE_LR, qat

        plan = replace(w.plan, weights={}, biases={})
        graph = self.work / f"qat-{steps}-{seed}.onnx"
        info, ranges = qat(self.pre, graph, plan, images, steps, seed=seed,
                           range_lr=RANGE_LR if self.cfg.qat_ranges == "learned" else 0.0)
        plan = replace(plan, ranges=ranges)
        label = w.label.replace(" + bias correction", "").split(" + AdaRound")[0] + f" + QAT ({steps} steps)"
        return Weighted(plan, w.method, label, w.percentile, graph=graph), info
