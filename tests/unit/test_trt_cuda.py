"""Device buffers without torch: where libcudart is missing, the error says where JetPack puts it."""
from __future__ import annotations

import ctypes.util

import pytest

from edgeres.backends.tensorrt import cuda
from edgeres.errors import BackendUnavailable


def test_missing_cuda_runtime_names_where_jetpack_has_it(monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(cuda, "_CUDART_DIRS", ("/nowhere",))
    with pytest.raises(BackendUnavailable, match="/usr/local/cuda/lib64"):
        cuda.CudartCuda()


def test_the_runtime_is_chosen_without_torch(monkeypatch):
    """pycuda absent: the ctypes runtime is tried; torch is never imported for buffers."""
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch would now fail
    monkeypatch.setattr(cuda.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(cuda, "CudartCuda", lambda: "cudart")
    assert cuda.cuda_runtime() == "cudart"
