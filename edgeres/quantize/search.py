"""Choosing how to quantize: method search, per-layer sensitivity, and an accuracy budget."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeres.backends import infer_all
from edgeres.backends.onnxruntime import OrtSession
from edgeres.quantize.plans import Plan
from edgeres.quantize.recipes import Recipe

QUANTIZABLE = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class Score:
    """How far a quantized model's logits are from fp32's on the validation slice."""

    images: int
    agreement: float  # top-1 agreement with fp32, %
    cosine: float
    snr_db: float
    top1: float | None  # against labels, when the slice has them
    delta_top1: float | None  # points against fp32

    @property
    def drop(self) -> float:
        """Top-1 points lost against fp32; without labels, the disagreement rate bounds it."""
        return -self.delta_top1 if self.delta_top1 is not None else 100.0 - self.agreement

    def to_dict(self) -> dict:
        return {**asdict(self), "drop": self.drop}


def split_validation(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Every k-th image to validation (deterministic, class-balanced for balanced sets); the rest calibrate."""
    k = max(2, round(1 / fraction))
    idx = np.arange(n)
    return idx[idx % k != 0], idx[idx % k == 0]


def score(logits: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> Score:
    agree = float(100.0 * (logits.argmax(1) == ref.argmax(1)).mean())
    cos = float(((logits * ref).sum(1) / (np.linalg.norm(logits, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)).mean())
    snr = float(10 * np.log10((ref ** 2).sum() / max(((logits - ref) ** 2).sum(), 1e-20)))
    if labels is None or (labels < 0).any():
        return Score(len(ref), agree, cos, snr, None, None)
    top1 = float(100.0 * (logits.argmax(1) == labels).mean())
    return Score(len(ref), agree, cos, snr, top1, top1 - float(100.0 * (ref.argmax(1) == labels).mean()))


class Evaluator:
    """Writes Q/DQ variants into a work folder and scores them on the validation slice."""

    def __init__(self, pre: Path, x_val: np.ndarray, y_val: np.ndarray | None, recipe: Recipe, workdir: Path):
        self.pre, self.x, self.y, self.recipe, self.work = pre, x_val, y_val, recipe, workdir
        sess = OrtSession(pre)
        self.ref = infer_all(sess, x_val, 250)
        sess.close()
        self._n = 0

    def logits(self, path: Path) -> np.ndarray:
        sess = OrtSession(path, simulate=self.recipe.accuracy_mode == "simulate")
        try:
            return infer_all(sess, self.x, 250)
        finally:
            sess.close()

    def variant(self, plan: Plan, exclude: list[str] | None = None, only: list[str] | None = None,
                keep: bool = False) -> tuple[Path | None, Score]:
        """Write and score one Q/DQ variant; its file (about 1/4 of the float model) is deleted unless ``keep``."""
        self._n += 1
        path = self.work / f"variant-{self._n}.onnx"
        plan.write(self.pre, path, exclude, only)
        s = score(self.logits(path), self.ref, self.y)
        if keep:
            return path, s
        path.unlink()
        return None, s


def quantizable_layers(model_path: Path) -> list[dict]:
    """Conv/Gemm nodes of the float model, with the PyTorch module each came from where recorded."""
    model = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in QUANTIZABLE and len(n.input) > 1 and n.input[1] in inits:
            meta = {p.key: p.value for p in n.metadata_props}
            out.append({"node": n.name, "op": n.op_type, "module": module_path(meta) or n.name})
    return out


def module_path(meta: dict[str, str]) -> str:
    """The PyTorch module a node came from (``layer1.0.conv2``), from the dynamo exporter's name scopes.

    A Conv with BatchNorm folded in carries the BN's scope; it is named after its conv.
    """
    scopes = [s.strip(" '") for s in meta.get("pkg.torch.onnx.name_scopes", "").strip("[]").split(",")]
    scopes = [s for s in scopes if s]
    if len(scopes) < 2:
        return ""
    path = re.sub(r"(^|\.)bn(\d)$", r"\1conv\2", scopes[-2])
    return re.sub(r"downsample\.1$", "downsample.0", path)


def sensitivity(ev: Evaluator, plan: Plan, layers: list[dict], left_out: bool = True) -> list[dict]:
    """Each layer quantized alone (and, with ``left_out``, each left out alone); ranked, worst first."""
    from edgeres.progress import progress

    rows = []
    for layer in progress(layers, desc="sensitivity", total=len(layers)):
        _, alone = ev.variant(plan, only=[layer["node"]])
        row = {**layer, "alone": alone.to_dict()}
        if left_out:
            row["left_out"] = ev.variant(plan, exclude=[layer["node"]])[1].to_dict()
        rows.append(row)
    rows.sort(key=lambda r: (r["alone"]["cosine"], -r.get("left_out", {}).get("cosine", 0.0)))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return rows


def sensitivity_markdown(rows: list[dict], baseline: dict) -> str:
    out = ["# Per-layer INT8 sensitivity", "",
           f"All layers quantized: agreement {baseline['agreement']:.2f}%, cosine {baseline['cosine']:.5f}, "
           f"SNR {baseline['snr_db']:.1f} dB, top-1 drop {baseline['drop']:.2f} pt (validation slice, "
           f"{baseline['images']} images).", "",
           "Worst first. *alone*: only this layer quantized; *left out*: every layer but this one.", "",
           "| rank | layer | op | alone: cosine | alone: SNR dB | alone: agree % | left out: cosine | left out: drop pt |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, w = r["alone"], r.get("left_out")
        tail = f"{w['cosine']:.5f} | {w['drop']:.2f}" if w else "— | —"
        out.append(f"| {r['rank']} | {r['module']} | {r['op']} | {a['cosine']:.5f} | {a['snr_db']:.1f} | "
                   f"{a['agreement']:.2f} | {tail} |")
    return "\n".join(out) + "\n"
