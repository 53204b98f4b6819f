"""Issue 10, item 2: training on a GPU (AMP, channels_last) and the device choice. The CUDA cases skip without a GPU;
the CPU cases run everywhere, so the same code path is exercised on both.
"""
from __future__ import annotations

import pytest
import torch

from edgeres.config import TrainConfig
from edgeres.errors import ConfigError
from edgeres.train.loop import _precision_note, autocast_dtype, device_for, train
from tests.conftest import cpu_and_cuda


def test_device_auto_is_the_cpu_without_a_gpu():
    if torch.cuda.is_available():
        assert device_for("auto").type == "cuda"
    else:
        assert device_for("auto").type == "cpu"
        with pytest.raises(ConfigError, match="--device cpu"):
            device_for("cuda")
        with pytest.raises(ConfigError, match="needs a GPU"):
            autocast_dtype("fp16", torch.device("cpu"))



def test_the_training_line_says_why_a_cpu_trains_in_fp32():
    """--amp auto on a CPU without native bf16 (an AVX2-only EPYC) trains in fp32, about twice as slow per step as a
    Xeon's bf16 here: the line says so, and how to ask for bf16 anyway."""
    cpu = torch.device("cpu")
    assert "no native bf16" in _precision_note(None, "auto", cpu) and "--amp bf16" in _precision_note(None, "auto", cpu)
    assert _precision_note(None, "off", cpu) == "fp32"
    assert _precision_note(torch.bfloat16, "auto", cpu) == "bfloat16 autocast"

@pytest.mark.parametrize("device", cpu_and_cuda())
def test_one_epoch_on_each_device(device, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=64, limit_train=2560, limit_test=200, size=32, lr=0.1, device=device,
                      amp="auto", zero_init_residual=False)
    r = train(cfg, tmp_path / "m.pt")
    assert r.device.startswith(device) and r.top1 > 20  # ten classes: chance is 10%


@pytest.mark.needs_cuda
def test_fp16_autocast_with_a_grad_scaler_on_cuda(tmp_path, recwarn):
    # 40 steps, as on each device above: 10 steps (640 images) learned nothing in fp32 on the CPU either (8.5%)
    cfg = TrainConfig(epochs=1, batch_size=64, limit_train=2560, limit_test=200, size=32, lr=0.1, device="cuda",
                      amp="fp16", zero_init_residual=False)
    assert autocast_dtype("fp16", torch.device("cuda")) == torch.float16
    r = train(cfg, tmp_path / "m.pt")
    assert r.top1 > 20
    # the scaler skips the first steps (scale too large); the schedule steps anyway, without PyTorch's warning
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]
