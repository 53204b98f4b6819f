"""float ONNX → INT8 Q/DQ ONNX: calibration, recipes per target, sensitivity, accuracy budget (``ptq.py``)."""
from edgeres.quantize.ptq import QuantConfig, QuantResult, SearchResult, qdq_from_onnx

__all__ = ["QuantConfig", "QuantResult", "SearchResult", "qdq_from_onnx"]
