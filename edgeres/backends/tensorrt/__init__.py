"""TensorRT: the only package that imports ``tensorrt`` or CUDA bindings, and only when a TensorRT target is used.

One backend for every release the targets name: 8.2 (JetPack 4.6), 8.5 (5.1), 8.6 (6.0), 10.3 (6.1/6.2),
10.13 (7.0) and 11.x (desktops, JetPack ≥ 7.2.2). See ``api.py`` for what differs between them.
"""
from edgeres.backends.base import EngineSpec
from edgeres.backends.tensorrt.api import HOW_TO_GET, tensorrt_status, tensorrt_version
from edgeres.backends.tensorrt.backend import TensorRTBackend
from edgeres.backends.tensorrt.build import BuildResult, build_engine

__all__ = ["HOW_TO_GET", "BuildResult", "EngineSpec", "TensorRTBackend", "build_engine", "tensorrt_status",
           "tensorrt_version"]
