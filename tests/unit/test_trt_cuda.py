"""Device buffers without torch: where libcudart is missing, the error says where JetPack puts it."""
from __future__ import annotations

import ctypes.util
import sys

import pytest

from edgeres.backends.tensorrt import cuda, standalone
from edgeres.errors import BackendUnavailable


def test_missing_cuda_runtime_names_where_jetpack_has_it(monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(standalone, "CUDART_DIRS", ("/nowhere",))
    monkeypatch.setattr(sys, "path", [])
    with pytest.raises(BackendUnavailable, match="/usr/local/cuda/lib64"):
        cuda.CudartCuda()


def test_pips_cuda_runtime_is_found(monkeypatch, tmp_path):
    """``pip install nvidia-cuda-runtime-cu12``, which the error above suggests, puts libcudart in site-packages:
    the one search (edgeres's session and the bundle's runner share it) looks there, newest file first.
    """
    lib = tmp_path / "nvidia" / "cuda_runtime" / "lib"
    lib.mkdir(parents=True)
    for name in ("libcudart.so.11.0", "libcudart.so.12"):
        (lib / name).write_bytes(b"")
    opened: list[str] = []
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(standalone, "CUDART_DIRS", ("/nowhere",))
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.setattr(ctypes, "CDLL", lambda name: opened.append(name) or name)
    assert cuda._load_cudart() == str(lib / "libcudart.so.12") and opened == [str(lib / "libcudart.so.12")]


def test_the_runtime_is_chosen_without_torch(monkeypatch):
    """pycuda absent: the ctypes runtime is tried; torch is never imported for buffers."""
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch would now fail
    monkeypatch.setattr(cuda.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(cuda, "CudartCuda", lambda: "cudart")
    assert cuda.cuda_runtime() == "cudart"
