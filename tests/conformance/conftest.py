"""Fixtures for TensorRT API conformance: the real build and session code against a STAND-IN ``tensorrt`` per release.

The stand-in proves that edgeres calls only what each release defines, with the semantics that release needs. It
builds no engine and measures nothing (see tests/helpers/trt_standin.py).
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.fixtures import bare_cache
from tests.helpers.trt_standin import API_DIR, Recorder, StandInCuda, make_tensorrt


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not API_DIR.is_dir():
        for item in items:
            item.add_marker(pytest.mark.skip(reason=f"the TensorRT API manifests are not at {API_DIR} "
                                                    f"(../shared/tensorrt-api beside the checkout)"))


@pytest.fixture(scope="session")
def models(exports) -> dict[int, dict[str, Path]]:
    """The small run's checkpoint exported for each parser limit: opset 13 (TensorRT 8.2), 17 (8.5/8.6), 18 (10.x and
    newer), and each export quantized (tensorrt recipe).
    """
    return {opset: exports(opset) for opset in (13, 17, 18)}


class StandIn:
    """Installs the stand-in of one release as ``tensorrt`` (and a stand-in CUDA runtime) for one test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mp = monkeypatch
        self.rec: Recorder | None = None

    def use(self, version: str, dla_cores: int = 0, gpu: str | None = None) -> Recorder:
        import edgeres.backends.tensorrt.cuda as cuda_mod

        trt, rec = make_tensorrt(version, dla_cores, gpu)
        cuda = StandInCuda(gpu) if gpu else StandInCuda()
        self.mp.setitem(sys.modules, "tensorrt", trt)
        self.mp.setattr(cuda_mod, "cuda_runtime", lambda: cuda)
        self.rec, self.cuda = rec, cuda
        return rec


@pytest.fixture
def standin(monkeypatch, tmp_path) -> Iterator[StandIn]:
    for k, v in bare_cache(tmp_path / "cache").items():  # timing caches of this test only
        monkeypatch.setenv(k, v)
    yield StandIn(monkeypatch)
