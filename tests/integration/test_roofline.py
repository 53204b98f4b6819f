"""MACs counted from the ONNX graph agree with PyTorch; floors follow from the target's figures."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeres.bench.roofline import ModelCost, floor_ms, model_cost
from edgeres.models import load_checkpoint
from edgeres.models.resnet import resnet18
from edgeres.targets import load_target


def torch_macs(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            total += m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    return total


def test_resnet18_at_224_is_1_81_gmacs():
    assert torch_macs(resnet18(), (3, 224, 224)) == pytest.approx(1.814e9, rel=2e-3)


@pytest.mark.parametrize("arch,gmacs", [("resnet50", 4.09), ("resnext50_32x4d", 4.23), ("densenet121", 2.83)])
def test_variants_cost_what_torchvision_lists(arch, gmacs):
    """torchvision's model docs give GFLOPS (multiply-adds) at 224 px, rounded to two decimals."""
    from edgeres.archs import config_for
    from edgeres.models import build_model

    assert torch_macs(build_model(config_for(arch)), (3, 224, 224)) / 1e9 == pytest.approx(gmacs, abs=0.006)


def test_onnx_macs_match_pytorch(small_run):
    cfg, _ = small_run
    cost = model_cost(Path(cfg.out) / "model.onnx")
    model = load_checkpoint(Path(cfg.out) / "model.pt").model()
    assert cost.macs == torch_macs(model, (1, 32, 32))
    assert cost.weight_params == pytest.approx(11.17e6, rel=0.01)


def test_floor_from_target_figures():
    cost = ModelCost(macs=1_814_000_000, weight_params=11_700_000, activation_elems=10_000_000)
    orin = load_target("jetson-agx-orin")
    f = floor_ms(cost, orin, "int8", 1)
    assert f["compute_ms"] == pytest.approx(2 * 1.814e9 / 85e12 * 1e3)
    assert f["memory_ms"] == pytest.approx((11.7e6 + 10e6) / 204.8e9 * 1e3)
    assert f["floor_ms"] == max(f["compute_ms"], f["memory_ms"])
    assert floor_ms(cost, load_target("cpu"), "fp32", 1) is None
