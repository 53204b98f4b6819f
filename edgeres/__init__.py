"""edgeres: train, export, quantize, build and bench image classifiers for NVIDIA edge devices.

``edgeres.load(path)`` opens a checkpoint, ONNX or engine for prediction (``edgeres.predict``).
"""
__version__ = "0.1.0"

from edgeres.predict import load  # noqa: E402  # after __version__, which the modules below may read

__all__ = ["__version__", "load"]
