"""ONNX models (+ optional checkpoint) → report: accuracy against fp32 and latency, for every precision (``run.py``)."""
from edgeres.bench.run import SCHEMA, BenchConfig, bench, check_budget, engine_configs, plan_rows

__all__ = ["SCHEMA", "BenchConfig", "bench", "check_budget", "engine_configs", "plan_rows"]
