"""ONNX models (+ optional checkpoint) → report: accuracy against fp32 and latency, for every precision (``run.py``)."""
from edgeres.bench.rows import engine_configs, plan_rows
from edgeres.bench.run import SCHEMA, BenchConfig, bench, check_budget

__all__ = ["SCHEMA", "BenchConfig", "bench", "check_budget", "engine_configs", "plan_rows"]
