"""Markers that skip cleanly: needs_tensorrt, needs_cuda (as torchvision's conftest does for CUDA)."""
from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("EDGERES_QUIET", "1")


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    trt = importlib.util.find_spec("tensorrt") is not None
    cuda = _has_cuda()
    for item in items:
        if "needs_tensorrt" in item.keywords and not (trt and cuda):
            why = "the tensorrt package is not installed" if not trt else "no CUDA GPU"
            item.add_marker(pytest.mark.skip(reason=f"needs TensorRT on an NVIDIA GPU: {why}"))
        if "needs_cuda" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA: torch here is a CPU build or has no GPU"))


def cpu_and_cuda():
    """Parameters for one test body on the CPU and, where present, on CUDA."""
    return ("cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda))


pytest_plugins = ["tests.helpers.fixtures"]
