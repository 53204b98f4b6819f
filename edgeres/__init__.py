"""edgeres: train, export, quantize, build and bench image classifiers for NVIDIA edge devices."""

__version__ = "0.1.0"
