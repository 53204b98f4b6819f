"""``edgeres build --host USER@DEVICE``: the engine built on the device by its own trtexec, and brought back here.

edgeres needs Python 3.10, and JetPack 4.6 and 5 (Nano, TX2, Xavier, Orin on JetPack 5) have 3.6 and 3.8, so
``edgeres build`` cannot run there, and a Jetson engine is tuned to the GPU that builds it. Every JetPack ships trtexec.
This builds with it, as ``bench --runner trtexec`` does (the same commands, the model sent and checked by sha256), reads
the engine's layers back with ``--exportLayerInfo``, and writes the engine here with the manifest ``edgeres build``
writes. The GPU and compute capability come from trtexec's own "=== Device Information ===" lines. So ``bundle`` takes
the engine, and the device's TensorRT refuses it nowhere else. It lives with the trtexec bench, whose device side it
uses.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict
from pathlib import Path

from edgeres.artifacts import atomic_path, refuse_overwriting_inputs, sha256_file, write_manifest
from edgeres.backends.trtexec import PRECISION_FLAGS_GONE
from edgeres.bench.device_state import Device
from edgeres.bench.rows import Entry
from edgeres.bench.trtexec_device import TrtexecBench, cache_root, device_trtexec
from edgeres.bench.trtexec_runner import send_models
from edgeres.build import BuildOutput, build_precision, engine_name, engine_spec
from edgeres.config import BuildConfig
from edgeres.errors import ConfigError, RemoteError
from edgeres.onnx_limits import require_parsable
from edgeres.onnx_model import load_onnx, onnx_info
from edgeres.progress import log
from edgeres.remote import LocalDevice


def engine_from_onnx_on_device(onnx: Path, cfg: BuildConfig, device: Device, trtexec: str | None = None,
                               out: Path | None = None) -> BuildOutput:
    """Build ``onnx`` for ``cfg.target`` with trtexec on ``device``; the engine and its manifest land here."""
    cfg.validate()
    onnx = Path(onnx)
    if cfg.allow_tf32:
        raise ConfigError("--tf32 is not built through trtexec here (its builds set --noTF32); drop --tf32")
    if out is not None:
        refuse_overwriting_inputs(Path(out), {"input model": onnx})
    target, exe, version, _ = device_trtexec(cfg.target, device, trtexec, "drop --host")
    model = load_onnx(onnx)
    info = onnx_info(onnx, model)
    precision = build_precision(info, cfg.precision, onnx)
    target.check_precision(precision)
    target.check_dla(cfg.dla_core, version)
    require_parsable(onnx, model, target, version)
    spec = engine_spec(onnx, info, cfg, precision, precision == "fp16" and version >= PRECISION_FLAGS_GONE)
    batch = spec.opt_batch
    entry = Entry(f"{precision}{'' if cfg.dla_core is None else f'-dla{cfg.dla_core}'}", onnx, info, None, precision,
                  cfg.dla_core)
    digest = sha256_file(onnx)
    key = hashlib.sha256(json.dumps([digest, str(version), target.name, "build"]).encode()).hexdigest()[:16]
    base = str(cache_root() / "device") if isinstance(device, LocalDevice) else ".cache/edgeres/trtexec"
    tb = TrtexecBench(device, exe, version, key, base)
    sent = send_models(tb, [entry], [digest], version)[entry.label]
    remote = tb.engine(entry, sent, "latency", batch, spec.max_batch)
    inspected = tb.inspect(entry, remote, batch)
    gpu, cc = tb.gpu
    if gpu is None:
        raise RemoteError(f"trtexec on {device.destination} printed no 'Selected Device:' line, so the engine's GPU is "
                          f"unknown and no manifest can name it; run `{exe} --loadEngine={remote}` there to see why")
    out = Path(out) if out is not None else onnx.with_name(engine_name(onnx, spec.label, batch, spec.max_batch,
                                                                       cfg.dla_core, str(version), gpu))
    log(f"{entry.label}: bringing the engine back from {device.destination}")
    blob = device.read(remote)
    with atomic_path(out) as tmp:
        tmp.write_bytes(blob)
    source = tb.cache / f"{digest[:16]}.fp16.onnx" if spec.onnx_is_fp16 else onnx  # what trtexec was given
    details = {"tensorrt": str(version), "label": spec.label, "profile": [spec.min_batch, spec.opt_batch, spec.max_batch],
               "dla_core": cfg.dla_core, "target": target.name, "gpu": gpu, "compute_capability": cc,
               "built_on": device.destination, "forced_device": False, "classes": info.classes, "runner": "trtexec",
               "command": next((c for c in tb.commands if "--saveEngine=" in c), None),
               "layers": inspected.get("layers", []), "int8_fallback_layers": inspected.get("int8_fallback_layers", []),
               "layers_why": inspected.get("why")}
    write_manifest(out, "engine-tensorrt", {"onnx": source}, {**asdict(cfg), "spec": asdict(spec)},
                   info.preprocessing.to_dict(), details)
    log(f"built on {device.destination}: {shlex.quote(str(out))}")
    return BuildOutput(out, "tensorrt", spec.label, target.name, details)
