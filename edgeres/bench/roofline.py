"""How far a measured latency is from the device's floor, from the model's MACs and bytes."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from edgeres.hw import usable_cores
from edgeres.targets import TargetProfile

BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class ModelCost:
    macs: int  # per image
    weight_params: int
    activation_elems: int  # per image: inputs and outputs of every Conv/Gemm

    def bytes_moved(self, precision: str, batch: int) -> int:
        """Weights once per call, activations per image, at the precision's element size."""
        b = BYTES[precision]
        return self.weight_params * b + batch * self.activation_elems * b

    def to_dict(self) -> dict:
        return asdict(self)


def _shape(vi: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]


def model_cost(onnx_path: Path) -> ModelCost:
    """MACs of every Conv and Gemm/MatMul per image (batch 1), counted from the float graph."""
    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    shapes = {vi.name: _shape(vi) for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    inits = {t.name: t for t in model.graph.initializer}
    macs = params = acts = 0
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        out = shapes.get(n.output[0])
        inp = shapes.get(n.input[0])
        if out is None or inp is None:
            continue
        if n.op_type == "Conv":
            macs += int(np.prod(out[1:])) * int(np.prod(w.shape[1:]))
        else:
            macs += int(np.prod(out[1:])) * int(w.shape[1] if n.op_type == "Gemm" else w.shape[0])
        params += int(w.size)
        acts += int(np.prod(inp[1:])) + int(np.prod(out[1:]))
    return ModelCost(macs, params, acts)


def floor_ms(cost: ModelCost, target: TargetProfile, precision: str, batch: int) -> dict | None:
    """The roofline floor (ms) for one call, or None when the target has no peak figures."""
    peak = {"int8": target.peak_int8_tops, "fp16": target.peak_fp16_tflops,
            "fp32": target.peak_fp32_tflops}.get(precision)
    bw = target.memory_bandwidth_gbs
    if peak is None and bw is None:
        return None
    compute = 2.0 * cost.macs * batch / (peak * 1e12) * 1e3 if peak else None
    memory = cost.bytes_moved(precision, batch) / (bw * 1e9) * 1e3 if bw else None
    bound = max(v for v in (compute, memory) if v is not None)
    return {"compute_ms": compute, "memory_ms": memory, "floor_ms": bound,
            "bound": "compute" if compute is not None and compute >= (memory or 0) else "memory"}


def measure_cpu_peaks(threads: int | None = None, seconds: float = 0.5) -> dict:
    """This CPU's achievable fp32 GEMM rate, measured (the cpu target has no datasheet).

    Measured in ONNX Runtime, the runtime bench times on the cpu target, at bench's thread count; with or without
    torch installed (importing torch alone took 2-3 s of every bench).
    No memory floor: a CPU's caches hold much of a small model's weights between calls, so DRAM
    bandwidth gives no lower bound (measured here, it put the floor above the real latency).
    """
    import time

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n = 1024
    b = numpy_helper.from_array(np.random.default_rng(1).standard_normal((n, n), dtype=np.float32), "b")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION, 8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or usable_cores()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"a": np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)}
    sess.run(None, feed)
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, feed)
        runs += 1
    return {"peak_fp32_tflops": 2 * n ** 3 * runs / (time.perf_counter() - t0) / 1e12, "memory_bandwidth_gbs": None,
            "how": f"measured: {n}² fp32 GEMM in ONNX Runtime at {so.intra_op_num_threads} thread(s); no memory floor, "
                   "since caches hold the weights"}
