"""A STAND-IN for NVIDIA's trtexec, computing with ONNX Runtime: it proves the trtexec runner's protocol, never TensorRT.

It takes trtexec's options, prints its banner, refuses the precision flags TensorRT 11 removed, "builds" an engine
file that is only the ONNX with a header, and writes ``--exportTimes``, ``--exportOutput``, ``--exportProfile``
(each ONNX node as a layer of 1.0 ms, a marker) in the layouts of NVIDIA's sampleReporting.cpp, and
``--exportLayerInfo`` in the engine inspector's (each node a layer, in the precision the build asked). Its logits are ONNX
Runtime's (Q/DQ models run unoptimized, as fake-quant), its times are ONNX Runtime's on this CPU: no figure from it
describes TensorRT or a GPU.

Run through a wrapper made by ``install`` (a shell script that sets the version it claims and the fault to inject).
Its timed runs last ``second`` of a second for each second of ``--duration`` and ``--warmUp`` (0.1 unless a test
samples power over them): the runner's whole-second windows, kept whole, made most of a stand-in bench's wall time,
and a stand-in's times say nothing anyway.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HEADER = b"EDGERES TRTEXEC STAND-IN: not an engine\n"
STANDIN_GPU = "stand-in GPU (no GPU: nothing runs)"


def install(bin_dir: Path, code: str = "100300", fail_after: int | None = None, log: Path | None = None,
            build_s: float = 0.0, busy: Path | None = None, second: float = 0.1, refuse: str = "") -> Path:
    """Write ``bin_dir/trtexec``: a shell wrapper that runs this stand-in with this venv's Python. With ``build_s``, a
    build first writes its process id to ``busy`` and waits that long, as a real build on a Jetson takes minutes.
    ``second``: how long the stand-in's timed runs take per second asked for (1.0 where power is sampled over them).
    ``refuse``: an option this trtexec does not know (comma-separated), as an older or trimmed build would refuse it.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = [f"EDGERES_STANDIN_TRT_CODE={code}", f"EDGERES_STANDIN_SECOND={second}"]
    if fail_after is not None:
        env.append(f"EDGERES_STANDIN_FAIL_AFTER={fail_after}")
    if log is not None:
        env.append(f"EDGERES_STANDIN_LOG={log}")
    if refuse:
        env.append(f"EDGERES_STANDIN_REFUSE={refuse}")
    if build_s:
        env += [f"EDGERES_STANDIN_BUILD_S={build_s}", f"EDGERES_STANDIN_BUSY={busy}"]
    exe = bin_dir / "trtexec"
    exe.write_text(f"#!/bin/sh\n{' '.join(env)} exec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    exe.chmod(0o755)
    return exe


def _opts(argv: list[str]) -> dict[str, str]:
    out = {}
    for a in argv:
        key, _, value = a.lstrip("-").partition("=")
        out[key] = value
    return out


def _session(engine: Path):  # noqa: ANN202
    import onnx
    import onnxruntime as ort

    blob = engine.read_bytes()
    if not blob.startswith(HEADER):
        raise SystemExit(f"[E] Error: {engine} is not an engine this stand-in wrote")
    model = blob[len(HEADER):]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if any(n.op_type == "QuantizeLinear" for n in onnx.load_from_string(model).graph.node):
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # fake-quant, as bench simulates
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _static_input(model: bytes) -> tuple[int, ...] | None:
    """The ONNX input's shape where every dimension is fixed (a graph of fixed batch), else None."""
    import onnx

    dims = onnx.load_from_string(model).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims) if all(d.HasField("dim_value") for d in dims) else None


def _shape(spec: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = spec.rpartition(":")
    return name, tuple(int(d) for d in dims.split("x"))


DLA_OPS = {"Conv", "Relu", "MaxPool", "AveragePool", "BatchNormalization", "Add", "Concat"}  # the stand-in's rule


def _layer_info(engine: Path) -> str:
    """``--exportLayerInfo``'s JSON (the inspector's layout, tests/data/inspector/) from what the build was asked: each
    ONNX node a layer in the precision its flags or Q/DQ name, the last writing the float output, DLA ops as
    ForeignNodes on a DLA build. A marker of the request, not TensorRT's choice. Names only unless built with
    ``--profilingVerbosity=detailed``, as trtexec's default (layer_names_only) gives."""
    import onnx

    built = json.loads(Path(f"{engine}.standin.json").read_text())
    graph = onnx.load_from_string(engine.read_bytes()[len(HEADER):]).graph
    nodes = [(n.name or n.op_type, n.op_type) for n in graph.node]
    if built.get("profilingVerbosity") != "detailed":
        return json.dumps({"Layers": [name for name, _ in nodes]})
    half = "fp16" in built or any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    prec = "Int8" if any(op == "QuantizeLinear" for _, op in nodes) else "Half" if half else "Float"
    fmt = f"Row major linear {prec} format"
    return json.dumps({"Layers": [
        {"Name": "{ForeignNode[" + name + "]}" if "useDLACore" in built and op in DLA_OPS else name, "LayerType": op,
         "Inputs": [{"Format/Datatype": fmt}],
         "Outputs": [{"Format/Datatype": fmt if i < len(nodes) - 1 else "Row major linear FP32 format"}]}
        for i, (name, op) in enumerate(nodes)]})


def main(argv: list[str]) -> int:
    import numpy as np

    code = os.environ.get("EDGERES_STANDIN_TRT_CODE", "100300")
    print(f"&&&& RUNNING TensorRT.trtexec [TensorRT v{code}] # trtexec {' '.join(argv)}")
    o = _opts(argv)
    if "help" not in o:  # trtexec's device lines, in its format; the name is the stand-in's, no GPU is there
        print(f"[I] === Device Information ===\n[I] Selected Device: {STANDIN_GPU}\n[I] Compute Capability: 0.0")
    major = int(code) // (10000 if len(code) > 4 else 1000)
    for gone in ("fp16", "int8", "best"):
        if major >= 11 and gone in o:
            print(f"[E] Unknown option: --{gone}", file=sys.stderr)
            return 1
    for unknown in filter(None, os.environ.get("EDGERES_STANDIN_REFUSE", "").split(",")):
        if unknown in o:
            print(f"[E] Unknown option: --{unknown}\n&&&& FAILED TensorRT.trtexec [TensorRT v{code}]")
            return 1
    if "help" in o:
        print("=== Model Options ===\n  --onnx=<file>  ONNX model (stand-in)")
        return 0
    if "onnx" in o:
        if os.environ.get("EDGERES_STANDIN_BUILD_S"):
            Path(os.environ["EDGERES_STANDIN_BUSY"]).write_text(str(os.getpid()))
            time.sleep(float(os.environ["EDGERES_STANDIN_BUILD_S"]))
        if _static_input(Path(o["onnx"]).read_bytes()) and any(f"{k}Shapes" in o for k in ("min", "opt", "max")):
            print("[E] Static model does not take explicit shapes since the shape of inference tensors will be "
                  f"determined by the model itself\n[E] Network And Config setup failed\n"
                  f"&&&& FAILED TensorRT.trtexec [TensorRT v{code}]")  # sampleEngines.cpp, as trtexec does
            return 1
        Path(o["saveEngine"]).write_bytes(HEADER + Path(o["onnx"]).read_bytes())
        Path(f"{o['saveEngine']}.standin.json").write_text(json.dumps(o))  # what the build was asked, for its layers
        if "useDLACore" in o:  # a line about the DLA, as TensorRT's builds write them; nothing runs on a DLA here
            print(f"[W] [TRT] stand-in: DLA core {o['useDLACore']} asked, and no layer runs on a DLA here")
        print(f"[I] Engine built in 0.0 sec. (stand-in: nothing was built)\n&&&& PASSED TensorRT.trtexec [TensorRT v{code}]")
        return 0
    sess = _session(Path(o["loadEngine"]))
    static = _static_input(Path(o["loadEngine"]).read_bytes()[len(HEADER):])
    if "shapes" not in o:  # a static engine runs its own shape; a dynamic one needs --shapes (the stand-in insists)
        if static is None:
            print("[E] stand-in: a dynamic engine run without --shapes", file=sys.stderr)
            return 1
        dims = static
    else:
        _, dims = _shape(o["shapes"])
        if static is not None and dims != static:
            print("[E] Error[3]: [executionContext.cpp::setInputShape] Static dimension mismatch while setting input "
                  "shape.", file=sys.stderr)
            return 1
    # trtexec's memory lines, in TensorRT's format; the figures are the engine file's MiB and 1, nothing measured
    mib = Path(o["loadEngine"]).stat().st_size >> 20
    print(f"[I] [TRT] Loaded engine size: {mib} MiB\n"
          f"[I] [TRT] [MemUsageChange] TensorRT-managed allocation in engine deserialization: CPU +0, GPU +{mib}, "
          f"now: CPU 0, GPU {mib} (MiB)\n"
          f"[I] [TRT] [MemUsageChange] TensorRT-managed allocation in IExecutionContext creation: CPU +0, GPU +1, "
          f"now: CPU 0, GPU {mib + 1} (MiB)")
    if "exportLayerInfo" in o:
        Path(o["exportLayerInfo"]).write_text(_layer_info(Path(o["loadEngine"])))
        return 0
    if "exportOutput" in o:
        log = os.environ.get("EDGERES_STANDIN_LOG")
        if log:
            with open(log, "a") as f:
                f.write("inference\n")
            calls = Path(log).read_text().count("inference")
            limit = os.environ.get("EDGERES_STANDIN_FAIL_AFTER")
            if limit is not None and calls > int(limit):
                print("Connection to device closed by remote host (stand-in fault)", file=sys.stderr)
                return 255
        x = np.fromfile(o["loadInputs"].rpartition(":")[2], dtype=np.float32).reshape(dims)
        y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        values = ", ".join(repr(float(v)) for v in y.ravel())
        Path(o["exportOutput"]).write_text(
            f'[\n  {{ "name" : "{sess.get_outputs()[0].name}"\n  , "dimensions" : "{"x".join(map(str, y.shape))}"\n'
            f'  , "values" : [ {values} ]\n  }}\n]\n')
        return 0
    x = np.zeros(dims, np.float32)
    if "exportProfile" in o:  # the layout of sampleReporting.cpp's exportJSONProfile; each node at a 1.0 ms MARKER
        import onnx

        runs = int(o.get("iterations", 10))
        graph = onnx.load_from_string(Path(o["loadEngine"]).read_bytes()[len(HEADER):]).graph
        nodes = [n.name or n.op_type for n in graph.node]
        rows = [json.dumps({"count": runs})] + [json.dumps({"name": n, "timeMs": float(runs), "averageMs": 1.0,
                                                            "percentage": 100 / len(nodes)}) for n in nodes]
        Path(o["exportProfile"]).write_text("[\n  " + "\n, ".join(rows) + "\n]\n")
        print(f"=== Profile ({runs} iterations ) === (stand-in: 1.0 ms per layer, a marker; nothing was timed)")
        return 0
    second = float(os.environ.get("EDGERES_STANDIN_SECOND", "1"))
    warm, dur = float(o.get("warmUp", 200)) * second, float(o.get("duration", 3)) * second
    iters = int(o.get("iterations", 10))
    t0 = time.perf_counter()
    rows = []
    while True:
        s = (time.perf_counter() - t0) * 1e3
        sess.run(None, {sess.get_inputs()[0].name: x})
        e = (time.perf_counter() - t0) * 1e3
        rows.append(f'{{ "startEnqMs" : {s}, "endEnqMs" : {s}, "startH2dMs" : {s}, "endH2dMs" : {s}, '
                    f'"startComputeMs" : {s}, "endComputeMs" : {e}, "startD2hMs" : {e}, "endD2hMs" : {e}, '
                    f'"h2dMs" : 0, "computeMs" : {e - s}, "d2hMs" : 0, "latencyMs" : {e - s}, "endToEndMs" : {e - s} }}')
        timed = [r for r in rows if float(r.split('"startComputeMs" : ')[1].split(",")[0]) >= warm]
        if e >= warm + dur * 1000 and len(timed) >= iters:
            break
    Path(o["exportTimes"]).write_text("[\n  " + "\n, ".join(rows) + "\n]\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
