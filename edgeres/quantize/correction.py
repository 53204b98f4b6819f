"""Corrections of int8 weights on calibration data: bias correction, and AdaRound for the worst layers.

Bias correction (Nagel et al., 2019): rounding the weights shifts each output channel's mean by
E[(W - W_q) x]; the shift, measured on the calibration images with the int8 input, is added back to the bias.

AdaRound (Nagel et al., 2020): each weight may round down or up; a rectified sigmoid per weight learns which, so that
the layer's output on calibration images stays closest to float, with a regularizer that drives every choice to 0 or 1.
Only the layers named get it (the worst by local error or by the sensitivity pass): it costs seconds per layer.
"""
from __future__ import annotations

import numpy as np

from edgeres.quantize.layers import Layer, fake_quant, torch_module
from edgeres.quantize.qdq_writer import ActRange, WeightedPlan, dequantized
from edgeres.quantize.ranges import Activations

ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (AdaRound's defaults)


def local_errors(acts: Activations, plan: WeightedPlan) -> dict[str, float]:
    """1 − cosine of each layer's output, int8 input and weights (``plan``'s) against float, on the search images."""
    torch = torch_module()
    out = {}
    with torch.no_grad():
        for la in acts.layers:
            x = torch.from_numpy(acts.sample[la.node.input[0]])
            q, scale = la.int8_weight()
            q = plan.weights.get(la.name, q)
            y = la.run(x, torch.from_numpy(la.weight))
            t = la.node.input[0]
            yq = la.run(fake_quant(x, plan.ranges[t], plan.unsigned_of(t)), torch.from_numpy(dequantized(q, scale)))
            out[la.name] = 1.0 - float(torch.nn.functional.cosine_similarity(y.flatten(1), yq.flatten(1)).mean())
    return out


def corrected_biases(acts: Activations, plan: WeightedPlan) -> dict[str, np.ndarray]:
    """Each biased layer's bias plus the mean output shift its int8 weights (``plan``'s) cause."""
    torch = torch_module()
    out = {}
    with torch.no_grad():
        for la in acts.layers:
            if la.bias is None:
                continue
            q, scale = la.int8_weight()
            q = plan.weights.get(la.name, q)
            t = la.node.input[0]
            xq = fake_quant(torch.from_numpy(acts.sample[t]), plan.ranges[t], plan.unsigned_of(t))
            diff = la.run(xq, torch.from_numpy(la.weight - dequantized(q, scale)), bias=False)
            dims = [0, 2, 3] if diff.ndim == 4 else [0]
            out[la.name] = la.bias + diff.mean(dim=dims).numpy()
    return out


def adaround(la: Layer, x: np.ndarray, r: ActRange, unsigned: bool, iters: int = 400, batch: int = 32,
             reg: float = 0.01, seed: int = 0) -> np.ndarray:
    """Learned int8 rounding of one layer's weights ([out, ...], the int8 values)."""
    torch = torch_module()
    gen = torch.Generator().manual_seed(seed)
    _, scale = la.int8_weight()
    s = torch.from_numpy(scale.reshape(-1, *[1] * (la.weight.ndim - 1)))
    w = torch.from_numpy(la.weight)
    floor = torch.floor(w / s)
    rest = w / s - floor  # in [0, 1): the initial soft value starts at the nearest rounding's side
    v = torch.log((rest - GAMMA) / (ZETA - rest)).clamp(-8, 8).requires_grad_(True)  # inverse rectified sigmoid
    xt = torch.from_numpy(x)
    with torch.no_grad():
        xq = fake_quant(xt, r, unsigned)
        y = la.run(xt, w, bias=False)
    opt = torch.optim.Adam([v], lr=1e-2)
    qmax = la.qmax
    for i in range(iters):
        idx = torch.randint(0, len(xt), (min(batch, len(xt)),), generator=gen)
        h = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
        wsoft = torch.clamp(floor + h, -qmax, qmax) * s
        loss = ((la.run(xq[idx], wsoft, bias=False) - y[idx]) ** 2).mean()
        warm = i < iters // 5
        if not warm:  # after a warm-up, push every h to 0 or 1, ever harder (beta 20 → 2)
            beta = 20 - (20 - 2) * (i - iters // 5) / max(1, iters - iters // 5)
            loss = loss + reg * (1 - (2 * h - 1).abs() ** beta).sum() / h.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        hard = (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA >= 0.5).float()
        return torch.clamp(floor + hard, -qmax, qmax).numpy().astype(np.int8)
