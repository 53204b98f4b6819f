"""Short quantization-aware fine-tuning (``--qat STEPS``), on the very graph the Q/DQ model is written from.

The float ONNX graph (BatchNorm already folded where ONNX folds it) runs as a torch module: each initializer a
parameter, each node its torch function. Fake-quantization sits on exactly the tensors the weighted placement
quantizes, with per-channel int8 weights whose scales follow the weights, as the writer computes them; gradients pass
straight through the rounding. Each activation range starts at the plan's and, with ``--qat-ranges learned`` (the
default), is learned with the weights as one factor per tensor, by LSQ's gradients (Esser et al., 2020). The student
learns the float model's decisions on training images by distillation: the KL divergence between the two models'
class probabilities, both softened by ``TEMPERATURE`` (Hinton et al., 2015). Matching the logits by mean squared error
instead is ruled by the few images whose logits are largest, and on a DenseNet-121 whose logits reach ±130 it made
the int8 model worse (`docs/int8-hard-case.md`). Its weights are written back into the ONNX graph, and the plan then
writes Q/DQ around them with the ranges it learned, so the exported int8 model computes what was trained.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeres.errors import ConfigError
from edgeres.quantize.layers import class_divergence, fake_quant, torch_module
from edgeres.quantize.qdq_writer import ActRange, WeightedPlan, act_qparams, quantized_reads, weight_matrix

OPS = ("Conv", "Gemm", "Relu", "Add", "Concat", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
       "ReduceMean", "Reshape", "Flatten", "Identity", "Mul", "Sub", "Div", "Pad", "Slice", "Constant")


def _attrs(n: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


class GraphModule:
    """A float ONNX graph as trainable torch code; ``quantized`` switches the fake-quantization on."""

    def __init__(self, model: onnx.ModelProto, plan: WeightedPlan, learn_ranges: bool = False) -> None:
        torch = torch_module()
        self.model, self.plan = model, plan
        bad = sorted({n.op_type for n in model.graph.node} - set(OPS))
        if bad:
            raise ConfigError(f"--qat runs the graph in torch and does not know {', '.join(bad)} yet; quantize without "
                              f"--qat (--method auto, --adaround)")
        self.params = {t.name: torch.nn.Parameter(torch.from_numpy(numpy_helper.to_array(t).copy()))
                       if t.data_type == onnx.TensorProto.FLOAT else torch.from_numpy(numpy_helper.to_array(t).copy())
                       for t in model.graph.initializer}
        for n in model.graph.node:  # a BatchNorm's running statistics are constants of the graph, not weights
            if n.op_type == "BatchNormalization":
                for t in n.input[3:5]:
                    self.params[t] = self.params[t].detach()
        chosen, self.reads = quantized_reads(model, plan)
        self.weighted = {n.name for n in chosen}
        self.quantized = False
        # each quantized tensor's range as a learned factor on the plan's (its log, 0 at the start), when learned
        self.log_gain = {t: torch.zeros((), requires_grad=True) for t in plan.ranges} if learn_ranges else {}

    def trainable(self) -> list[Any]:
        return [p for p in self.params.values() if getattr(p, "requires_grad", False)]

    def _w(self, n: onnx.NodeProto) -> Any:
        torch = torch_module()
        w = self.params[n.input[1]]
        if not self.quantized or n.name not in self.weighted:
            return w
        m: Any = weight_matrix(n, w)  # [out, ...] (a torch tensor here)
        scale = (m.detach().abs().flatten(1).amax(1).clamp_min(1e-12) / self.plan.weight_qmax)
        scale = scale.reshape(-1, *[1] * (m.ndim - 1))
        q = torch.clamp(torch.round(m / scale), -self.plan.weight_qmax, self.plan.weight_qmax) * scale
        q = m + (q - m).detach()
        return weight_matrix(n, q)

    def _read(self, env: dict[str, Any], idx: int, n: onnx.NodeProto) -> list[Any]:
        """The node's inputs, fake-quantized where the written model reads them through Q/DQ."""
        out: list[Any] = []
        for k, t in enumerate(n.input):
            x = env[t] if t else None
            if self.quantized and (idx, k) in self.reads:
                if t in self.log_gain:
                    x = learned_quant(x, self.plan.ranges[t], self.plan.unsigned_of(t), self.log_gain[t])
                else:
                    x = x + (fake_quant(x, self.plan.ranges[t], self.plan.unsigned_of(t)) - x).detach()
            out.append(x)
        return out

    def __call__(self, x: Any) -> Any:
        torch = torch_module()
        f = torch.nn.functional
        env: dict[str, Any] = {**self.params, self.model.graph.input[0].name: x}
        for idx, n in enumerate(self.model.graph.node):
            a = _attrs(n)
            i = self._read(env, idx, n)
            op = n.op_type
            if op == "Conv":
                pads = list(a.get("pads", [0, 0, 0, 0]))
                xin = i[0]
                if pads[:2] != pads[2:]:
                    xin, pads = f.pad(xin, (pads[1], pads[3], pads[0], pads[2])), [0, 0, 0, 0]
                y = f.conv2d(xin, self._w(n), i[2] if len(i) > 2 else None, tuple(a.get("strides", [1, 1])),
                             tuple(pads[:2]), tuple(a.get("dilations", [1, 1])), int(a.get("group", 1)))
            elif op == "Gemm":
                w = self._w(n)
                w = w if a.get("transB", 0) else w.t()
                y = a.get("alpha", 1.0) * i[0].flatten(1) @ w.t()
                if len(i) > 2 and i[2] is not None:
                    y = y + a.get("beta", 1.0) * i[2]
            elif op == "BatchNormalization":
                y = f.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
            elif op == "Relu":
                y = f.relu(i[0])
            elif op in ("Add", "Mul", "Sub", "Div"):
                y = {"Add": torch.add, "Mul": torch.mul, "Sub": torch.sub, "Div": torch.div}[op](i[0], i[1])
            elif op == "Concat":
                y = torch.cat(i, dim=a["axis"])
            elif op in ("MaxPool", "AveragePool"):
                pads = list(a.get("pads", [0, 0, 0, 0]))
                if pads[:2] != pads[2:]:
                    raise ConfigError(f"--qat: {op} {n.name} has uneven padding; quantize without --qat")
                k, s = tuple(a["kernel_shape"]), tuple(a.get("strides", [1, 1]))
                ceil = bool(a.get("ceil_mode", 0))
                y = f.max_pool2d(i[0], k, s, tuple(pads[:2]), ceil_mode=ceil) if op == "MaxPool" else \
                    f.avg_pool2d(i[0], k, s, tuple(pads[:2]), ceil_mode=ceil,
                                 count_include_pad=bool(a.get("count_include_pad", 0)))
            elif op == "GlobalAveragePool":
                y = i[0].mean(dim=(2, 3), keepdim=True)
            elif op == "ReduceMean":
                axes = a.get("axes") or [int(v) for v in i[1].tolist()]
                y = i[0].mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))
            elif op == "Reshape":
                shape = [int(v) for v in i[1].tolist()]
                y = i[0].reshape([i[0].shape[k] if v == 0 else v for k, v in enumerate(shape)])
            elif op == "Flatten":
                y = i[0].flatten(a.get("axis", 1))
            elif op == "Identity":
                y = i[0]
            elif op == "Pad":
                p = [int(v) for v in i[1].tolist()]
                half = len(p) // 2
                torch_pads = [v for k in reversed(range(half)) for v in (p[k], p[k + half])]
                y = f.pad(i[0], torch_pads, value=float(i[2]) if len(i) > 2 and i[2] is not None else 0.0)
            elif op == "Slice":
                starts, ends = i[1].tolist(), i[2].tolist()
                axes = i[3].tolist() if len(i) > 3 and i[3] is not None else list(range(len(starts)))
                steps = i[4].tolist() if len(i) > 4 and i[4] is not None else [1] * len(starts)
                cut = [slice(None)] * i[0].ndim
                for s0, e0, ax, st in zip(starts, ends, axes, steps):
                    cut[ax] = slice(int(s0), min(int(e0), i[0].shape[ax]), int(st))
                y = i[0][tuple(cut)]
            else:  # Constant
                y = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
            env[n.output[0]] = y
        return env[self.model.graph.output[0].name]

    def save_weights(self, out: Path) -> None:
        """The graph with the trained weights: what the plan then writes Q/DQ around."""
        for t in self.model.graph.initializer:
            p = self.params[t.name]
            if getattr(p, "requires_grad", False):
                t.CopyFrom(numpy_helper.from_array(p.detach().numpy().astype(np.float32), t.name))
        onnx.save(self.model, str(out))


def learned_quant(x: Any, r: ActRange, unsigned: bool, log_gain: Any) -> Any:
    """``x`` through Q/DQ over ``r`` scaled by ``exp(log_gain)``, with LSQ's gradients (Esser et al., 2020): straight
    through the rounding inside the range, none for ``x`` outside it, and to the scale the rounding error inside and
    the clipped level outside.
    """
    torch = torch_module()
    scale, zp = act_qparams(r, unsigned)
    s, z = float(scale) * torch.exp(log_gain), float(zp)
    lo, hi = (0.0, 255.0) if unsigned else (-128.0, 127.0)
    v = x / s
    v = v + (torch.round(v) - v).detach()
    return (torch.clamp(v + z, lo, hi) - z) * s


def _restore(params: list[Any], saved: list[Any]) -> None:
    torch = torch_module()
    with torch.no_grad():
        for p, b in zip(params, saved):
            p.copy_(b)


TEMPERATURE = 2.0  # distillation's softening of both models' logits
RANGE_LR = 1e-3  # Adam's step on each range's log factor: 200 steps move a range by up to about a fifth


def distill_loss(student: Any, teacher: Any) -> Any:
    """KL(teacher ‖ student) of the class probabilities softened by ``TEMPERATURE``, × T² (so its gradients keep the
    scale of the hard targets'), averaged over the images.
    """
    return class_divergence(teacher, student, TEMPERATURE) * TEMPERATURE ** 2


PROBE_IMAGES = 128  # the fixed images QAT's own objective is checked on, every tenth of the run
BACKOFF = 2.0  # a check this many times above the best so far: back to the best weights, at a quarter of the step


def qat(pre: Path, out: Path, plan: WeightedPlan, images: np.ndarray, steps: int, batch: int = 32,
        lr: float = 1e-5, seed: int = 0, range_lr: float = RANGE_LR) -> tuple[dict[str, Any], dict[str, ActRange]]:
    """Fine-tune ``pre`` for ``steps`` steps with int8 fake-quant, distilled from its own float logits on ``images``;
    writes ``out`` and returns what it did and each quantized tensor's range (learned, or the plan's when
    ``range_lr`` is 0).

    Every tenth of the run the objective is measured on a fixed probe of the images, and the weights it is lowest at
    are the ones written, so QAT never returns weights it scores worse than those it started from. A check far above
    the best (a step too large for this model: Adam moves every weight by about ``lr`` whatever its gradient, and a
    model of high gain can jump across many rounding steps at once) goes back to the best weights with a quarter of
    the step. ``loss_first`` and ``loss_last`` are the probe's, at the start and at the weights written.
    """
    from edgeres.progress import progress

    torch = torch_module()
    gen = torch.Generator().manual_seed(seed)
    g = GraphModule(onnx.load(str(pre)), plan, learn_ranges=range_lr > 0)
    x = torch.from_numpy(images)
    with torch.no_grad():
        teacher = torch.cat([g(x[k:k + 256]) for k in range(0, len(x), 256)])
    g.quantized = True
    probe = torch.randperm(len(x), generator=gen)[:PROBE_IMAGES]

    def probe_loss() -> float:
        with torch.no_grad():
            return float(distill_loss(g(x[probe]), teacher[probe]))

    weights, gains = g.trainable(), list(g.log_gain.values())
    params = weights + gains

    def optimizer(scale: float) -> Any:
        groups = [{"params": weights, "lr": lr * scale}] + ([{"params": gains, "lr": range_lr * scale}] if gains else [])
        return torch.optim.Adam(groups)

    best, first = [p.detach().clone() for p in params], probe_loss()
    best_loss, step_lr, backoffs, every = first, lr, 0, max(1, steps // 10)
    opt = optimizer(1.0)
    for s in progress(range(steps), desc=f"QAT, seed {seed}", total=steps):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=gen)
        loss = distill_loss(g(x[idx]), teacher[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (s + 1) % every and s + 1 < steps:
            continue
        now = probe_loss()
        if now < best_loss:
            best, best_loss = [p.detach().clone() for p in params], now
        elif now > BACKOFF * best_loss:
            _restore(params, best)
            step_lr, backoffs = step_lr / 4, backoffs + 1
            opt = optimizer(step_lr / lr)
    _restore(params, best)
    g.save_weights(out)
    factors = {t: float(torch.exp(v.detach())) for t, v in g.log_gain.items()}
    ranges = {t: ActRange(r.lo * factors.get(t, 1.0), r.hi * factors.get(t, 1.0)) for t, r in plan.ranges.items()}
    moved = np.array(list(factors.values()) or [1.0])
    info = {"steps": steps, "images": int(len(x)), "lr": lr, "batch": batch, "probe_images": int(len(probe)),
            "loss_first": first, "loss_last": best_loss, "backoffs": backoffs, "lr_last": step_lr,
            "ranges": {"learned": len(factors), "range_lr": range_lr, "factor_min": round(float(moved.min()), 4),
                       "factor_median": round(float(np.median(moved)), 4), "factor_max": round(float(moved.max()), 4)}}
    return info, ranges
