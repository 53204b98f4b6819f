"""Markers that skip cleanly: needs_tensorrt, needs_cuda (as torchvision's conftest does for CUDA)."""
from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("EDGERES_QUIET", "1")


def _pin_xdist_worker() -> None:
    """Under pytest-xdist (scripts/test.sh runs the integration stage so), each worker on cores of its own, set before
    anything imports torch. torch's and ONNX Runtime's thread pools size themselves by the affinity mask
    (``edgeres.hw.usable_cores``), and so do the edgeres processes a test starts. Unpinned, two workers each ran two
    threads on the same two cores: a torch-heavy test took 92 s (17 s pinned, 11 s with the machine to itself), and
    the stage 868 s (665 s pinned, 1,048 s in one process).
    """
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    i = int(worker[2:])
    os.sched_setaffinity(0, cores[i % count::count] or [cores[i % len(cores)]])  # one core at least, more workers than cores


_pin_xdist_worker()


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
