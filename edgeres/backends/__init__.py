"""Runtimes behind one interface (``base.py``): ONNX Runtime, PyTorch eager, and TensorRT (``tensorrt/``)."""
from edgeres.backends.base import Backend, Session, infer_all
from edgeres.backends.registry import get_backend, require

__all__ = ["Backend", "Session", "get_backend", "infer_all", "require"]
