"""edgeres: train, export, quantize, build and bench image classifiers for NVIDIA edge devices.

``edgeres.load(path)`` opens a checkpoint, ONNX or engine for prediction (``edgeres.predict``); it is imported on
first use, so ``import edgeres`` and the command line stay light.
"""
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from edgeres.predict import load
        return load
    raise AttributeError(f"module 'edgeres' has no attribute {name!r}")
