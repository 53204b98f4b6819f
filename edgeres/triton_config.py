"""A bundle's Triton ``config.pbtxt``, and the batch its dynamic batcher should prefer, read from a bench's sweep.

``bench --sweep`` names, for each row, the smallest batch within 5% of its most images per second: as many images per
second as any batch, at the least latency. ``bundle --report report.json`` writes it as the dynamic batcher's
``preferred_batch_size``, for the row that measured this model on this target (its sha256, precision and DLA core).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeres.config import SWEEP_KNEE
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ArtifactError, ConfigError


def triton_config(name: str, platform: str, input_name: str, output_name: str, pre: Preprocessing, n_classes: int,
                  max_batch: int, gpu: bool, trt_precision: str | None, fixed_batch: int | None = None,
                  dla_core: int | None = None, preferred_batch: int | None = None) -> str:
    """``config.pbtxt``: batch dimension implicit (``max_batch_size``), labels attached to the output; for a model
    whose graph fixes a batch above 1, ``max_batch_size: 0`` and that batch in the dims, as Triton wants. With
    ``trt_precision`` (FP32, INT8) ONNX Runtime runs the model through its TensorRT accelerator in that mode: a Q/DQ
    model needs INT8, without which TensorRT will not build it (the backend's default is FP32). ``dla_core``: the
    instance's secondary device, which loads a DLA engine onto that core.
    """
    dims = f"{pre.channels}, {pre.size}, {pre.size}"
    dla = "" if dla_core is None else f" secondary_devices [ {{ kind: KIND_NVDLA device_id: {dla_core} }} ]"
    batch = ""
    if fixed_batch is not None and fixed_batch > 1:  # Triton would send any batch up to it: the full shape instead
        batch, max_batch = f"{fixed_batch}, ", 0
    lines = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch}",
        f'input [ {{ name: "{input_name}" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ {batch}{dims} ] }} ]',
        f'output [ {{ name: "{output_name}" data_type: TYPE_FP32 dims: [ {batch}{n_classes} ] '
        f'label_filename: "labels.txt" }} ]',
        f"instance_group [ {{ kind: {'KIND_GPU' if gpu else 'KIND_CPU'} count: 1{dla} }} ]",
    ]
    if max_batch > 1:
        lines.append("dynamic_batching { }" if preferred_batch is None else
                     f"dynamic_batching {{ preferred_batch_size: [ {preferred_batch} ] }}")
    if trt_precision:
        lines.append('optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" '
                     f'parameters {{ key: "precision_mode" value: "{trt_precision}" }} }} ] }} }}')
    return "\n".join(lines) + "\n"


def preferred_batch(report_path: Path, sha256: str, precision: str, dla_core: int | None, target: str,
                    max_batch: int) -> tuple[int, str]:
    """The batch a bench's sweep found for this model on ``target``, and where it came from (for the bundle's notes).

    The row is the one that measured this file (``sha256``) at ``precision``, on ``dla_core`` or on the GPU.
    """
    from edgeres.bench.report import load_report
    from edgeres.bench.sweep import knee

    report = load_report(Path(report_path))
    measured = (report.get("target") or {}).get("name")
    if measured != target:
        raise ConfigError(f"--report {report_path} measured target {measured}, and this bundle is for {target}; bench "
                          f"on {target} with --sweep, or drop --report")
    suffix = "" if dla_core is None else f"-dla{dla_core}"
    rows = [r for r in report.get("results") or [] if r.get("sha256") == sha256 and r.get("precision") == precision
            and str(r.get("label", "")).endswith(suffix) and ("-dla" in str(r.get("label", ""))) == bool(suffix)]
    if not rows:
        raise ConfigError(f"--report {report_path} has no {precision} row of this model"
                          f"{' on DLA core ' + str(dla_core) if suffix else ''} (its sha256 {sha256[:12]}…); bench it "
                          f"with --sweep, or drop --report")
    row: dict[str, Any] = rows[0]
    points = row.get("sweep") or []
    try:
        got = knee(points)
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"--report {report_path}: row {row.get('label')} has a malformed sweep ({e}); bench again "
                            f"with --sweep") from None
    if got is None:
        raise ConfigError(f"--report {report_path}: row {row.get('label')} has no sweep; bench with --sweep 1,2,4,8,"
                          f"16,32 to find the batch, or drop --report")
    batch = min(int(got[1]["batch"]), max_batch)
    return batch, (f"Triton's preferred batch {batch}: the smallest within {100 - 100 * SWEEP_KNEE:.0f}% of the most "
                   f"images/s of row "
                   f"{row['label']} in {report_path} ({got[1]['throughput_ips']:,.0f} of "
                   f"{got[0]['throughput_ips']:,.0f}/s)" + (f", cut to the model's largest batch {max_batch}"
                                                          if batch < int(got[1]["batch"]) else ""))
