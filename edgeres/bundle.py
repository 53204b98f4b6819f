"""model → deployable bundle: labels, the model with its manifest, a DeepStream ``nvinfer`` config, a Triton model
repository and ``infer.py``, a standalone script (numpy, Pillow, onnxruntime or tensorrt; no edgeres).

DeepStream computes ``net-scale-factor × (pixel − offsets)`` with one scale for all channels. Where the model's std
differs per channel, the bundle's DeepStream ONNX folds ``1/std`` into the graph (a per-channel ``Mul`` on the input)
and the config's scale is ``1/255``: the network still sees exactly what edgeres feeds it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from packaging.version import Version

from edgeres.artifacts import (
    check_out,
    manifest_path,
    read_manifest,
    remove_stale_temporaries,
    sha256_file,
    versions,
    write_json_atomic,
    write_manifest,
)
from edgeres.backends.tensorrt import standalone
from edgeres.data import pixels
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ArtifactError, ConfigError
from edgeres.onnx_limits import require_parsable
from edgeres.onnx_model import OUTPUT_KEY, RECIPE_KEY, load_onnx, metadata, onnx_info, set_metadata
from edgeres.paths import RESOURCES
from edgeres.predict import ENGINE_SUFFIXES
from edgeres.quantize.recipes import recipe_for
from edgeres.targets import TargetProfile, load_target, target_names
from edgeres.triton_config import preferred_batch, triton_config

FORMAT = "edgeres.bundle/1"
RUNNER = "tensorrt_runner"  # the module an engine bundle ships beside infer.py (edgeres/backends/tensorrt/standalone.py)
TRITON_NAME = "classifier"


@dataclass
class BundleResult:
    out: Path
    files: list[str]
    runtime: str  # what infer.py and Triton run: onnxruntime or tensorrt
    notes: list[str] = field(default_factory=list)


def deepstream_scaling(pre: Preprocessing) -> tuple[float, list[float], np.ndarray | None]:
    """(net-scale-factor, offsets, per-channel factor to fold into the graph or None) so that
    ``fold × scale × (pixel − offsets)`` equals ``(pixel/255 − mean) / std`` for pixels in 0…255.
    """
    offsets = [255.0 * m for m in pre.mean]
    if len(set(pre.std)) == 1:
        return 1.0 / (255.0 * pre.std[0]), offsets, None
    return 1.0 / 255.0, offsets, np.asarray([1.0 / s for s in pre.std], np.float32)


def with_input_scale(model: onnx.ModelProto, factor: np.ndarray) -> onnx.ModelProto:
    """A copy whose input is multiplied by ``factor`` per channel before the original graph."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    name = m.graph.input[0].name
    scaled = f"{name}__per_channel_std"
    for node in m.graph.node:
        node.input[:] = [scaled if i == name else i for i in node.input]
    const = numpy_helper.from_array(factor.reshape(1, -1, 1, 1), f"{name}__inv_std")
    m.graph.initializer.append(const)
    m.graph.node.insert(0, helper.make_node("Mul", [name, const.name], [scaled], name="edgeres_inv_std"))
    return m


def with_softmax(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose output is the softmax of the logits, named ``probabilities``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    out = m.graph.output[0]
    logits = out.name
    m.graph.node.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1, name="edgeres_softmax"))
    out.name = "probabilities"
    set_metadata(m, {OUTPUT_KEY: "probabilities"})
    return m


def deepstream_config(pre: Preprocessing, n_classes: int, model_line: str, precision: str, output: str,
                      batch: int, folded: bool, calib: str | None = None, dla_core: int | None = None) -> str:
    """nvinfer's ``[property]`` group. ``calib``: an ``int8-calib-file``, which an int8 (Q/DQ) ONNX needs: nvinfer
    sets TensorRT's INT8 flag only when that file exists, and otherwise builds in FP16 ("INT8 calibration file not
    specified. Trying FP16 mode."), where TensorRT refuses a network with Q/DQ layers. TensorRT then takes the scales
    from the Q/DQ nodes, not from the file.
    """
    scale, offsets, _ = deepstream_scaling(pre)
    mode = {"fp32": 0, "int8": 1, "fp16": 2}.get(precision, 0)
    mode = 2 if dla_core is not None and mode == 0 else mode  # a DLA takes no fp32: every layer would leave it
    s = pre.size
    crop = (f"edgeres resizes the shorter side to {pre.short_side} and crops the centre {s}x{s}; nvinfer scales the "
            f"whole frame or object to {s}x{s}.\n# Give it square ROIs (or an nvdspreprocess crop) to feed the same pixels.")
    lines = [
        "# DeepStream nvinfer config written by `edgeres bundle`: a primary classifier.",
        f"# Normalization: net-scale-factor x (pixel - offsets) = (pixel/255 - mean) / std for mean {list(pre.mean)},",
        f"# std {list(pre.std)}" + (" (per-channel 1/std folded into the ONNX's first node)." if folded else "."),
        f"# {crop}",
        "[property]",
        "gpu-id=0",
        f"net-scale-factor={scale!r}",
        f"offsets={';'.join(repr(o) for o in offsets)}",
        f"model-color-format={0 if pre.channels == 3 else 2}",
        model_line,
        *([f"int8-calib-file={calib}"] if calib else []),
        *(["enable-dla=1", f"use-dla-core={dla_core}"] if dla_core is not None else []),
        "labelfile-path=labels.txt",
        f"batch-size={batch}",
        f"network-mode={mode}",
        f"num-detected-classes={n_classes}",
        f"infer-dims={pre.channels};{pre.size};{pre.size}",
        f"output-blob-names={output}",
        "network-type=1",
        "process-mode=1",
        "gie-unique-id=1",
        "classifier-threshold=0.0",
        "maintain-aspect-ratio=0",
        "",
    ]
    return "\n".join(lines)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the bundle")
    if out.is_dir() and any(out.iterdir()):
        try:
            made = json.loads((out / "bundle.json").read_text()).get("format") == FORMAT
        except (OSError, ValueError):
            made = False
        if not made:
            raise ConfigError(f"--out {out} is a folder with files edgeres did not make; give a new or empty folder "
                              f"(nothing was changed)")


@dataclass
class _Source:
    """What is bundled: an ONNX (with its graph) or an engine (and the ONNX it came from, when still there)."""

    path: Path
    pre: Preprocessing
    classes: list[str]
    precision: str
    proto: onnx.ModelProto | None  # the ONNX (for an engine: its source ONNX if present)
    engine_runtime: str | None = None  # tensorrt / onnxruntime for an engine; None for an ONNX
    max_batch: int = 32
    fake_quant: bool = False
    built_for: str | None = None  # an engine's target, from its manifest
    fixed_batch: int | None = None  # the one batch it takes: a graph of fixed batch, or a static engine (DLA)
    dla_core: int | None = None  # an engine built for this DLA core: its runtime must be set to it (else core 0)
    measured_sha256: str = ""  # the file a bench measured for it: the ONNX itself, or an engine's source ONNX


def _source(model: Path) -> _Source:
    if model.suffix.lower() in ENGINE_SUFFIXES:
        man = read_manifest(model)
        if man is None or not man.get("preprocessing") or not man.get("results", {}).get("classes"):
            raise ArtifactError(f"{model} has no manifest with its preprocessing and classes ({manifest_path(model)}); "
                                f"rebuild it with `edgeres build`")
        onnx_in = Path(man.get("inputs", {}).get("onnx", {}).get("path", ""))
        spec = man.get("config", {}).get("spec", {})
        return _Source(model, Preprocessing.from_dict(man["preprocessing"]), list(man["results"]["classes"]),
                       str(spec.get("precision") or man.get("config", {}).get("precision") or "fp32"),
                       load_onnx(onnx_in) if onnx_in.is_file() else None,
                       "tensorrt" if man.get("kind") == "engine-tensorrt" else "onnxruntime",
                       int(spec.get("max_batch") or 1), built_for=_built_for(man),
                       fixed_batch=spec.get("max_batch") if spec.get("min_batch") == spec.get("max_batch") else None,
                       dla_core=man.get("config", {}).get("dla_core"),
                       measured_sha256=str(man.get("inputs", {}).get("onnx", {}).get("sha256", "")))
    proto = load_onnx(model)
    info = onnx_info(model, proto)
    if not info.classes:
        raise ArtifactError(f"{model} records no class labels; re-export it, or `edgeres import` it with --labels")
    meta = metadata(proto)
    rec = json.loads(meta[RECIPE_KEY]) if RECIPE_KEY in meta else None
    fixed = info.input_shape[0] if info.input_shape and isinstance(info.input_shape[0], int) else None
    return _Source(model, info.preprocessing, info.classes, info.precision, proto, None, fixed or 32,
                   bool(rec and recipe_for(rec["recipe"]).accuracy_mode == "simulate"), fixed_batch=fixed,
                   measured_sha256=sha256_file(model))


def _built_for(man: dict) -> str | None:
    """The target an engine was built for: its manifest's resolved name, else the name it was asked for when that is
    a profile's (not ``jetson``, detected on the device, nor a .toml path); None when it cannot be known here.
    """
    named = man.get("results", {}).get("target") or man.get("config", {}).get("target")
    return named if named in target_names() else None


def bundle(model: Path, target: str, out: Path, softmax: bool = False, report: Path | None = None,
           dla_core: int | None = None) -> BundleResult:
    """Write the deployment bundle of ``model`` (an edgeres or imported ONNX, or an engine) for ``target`` to ``out``;
    with ``report`` (a bench's report.json with ``--sweep``), Triton's dynamic batcher prefers the batch it found; with
    ``dla_core``, nvinfer builds the ONNX for that DLA core.
    """
    model, out = Path(model), Path(out)
    t = load_target(target)
    check_out(out, folder=True)
    _check_out(out)
    src = _source(model)
    if src.built_for and src.built_for != t.name:
        raise ConfigError(f"{model} is an engine built for {src.built_for}; an engine runs only on the GPU and TensorRT "
                          f"it was built for: bundle it with --target {src.built_for}, or build one for {t.name} "
                          f"from its ONNX")
    if src.engine_runtime is None:  # an ONNX: the target's own runtime parses it (nvinfer, Triton, infer.py)
        t.check_precision(src.precision)
        if t.runtime == "tensorrt" and src.proto is not None:
            require_parsable(model, src.proto, t)
    if softmax and src.engine_runtime:
        raise ConfigError("--softmax changes the graph; bundle the ONNX with --softmax, then build its engine")
    if any(";" in c for c in src.classes) and t.runtime == "tensorrt":
        raise ConfigError("a class label contains ';', which DeepStream's classifier label file uses as separator; "
                          "rename the class")
    if dla_core is not None:
        if t.runtime != "tensorrt":
            raise ConfigError(f"--dla-core places nvinfer's engine on a Jetson's DLA, and {t.name} runs ONNX Runtime; "
                              f"drop --dla-core")
        t.check_dla(dla_core)
        if src.engine_runtime and src.dla_core != dla_core:
            where = "the GPU" if src.dla_core is None else f"DLA core {src.dla_core}"
            raise ConfigError(f"{model} is an engine built for {where}, and an engine's placement is fixed when it is "
                              f"built; drop --dla-core, or bundle its ONNX with --dla-core {dla_core}")
    preferred = None
    if report is not None:
        if src.fixed_batch is not None:
            raise ConfigError(f"{model} takes batch {src.fixed_batch} only, so Triton batches nothing; drop --report")
        preferred = preferred_batch(Path(report), src.measured_sha256, src.precision, src.dla_core, t.name,
                                    src.max_batch)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent, f".{out.name}.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    try:
        res = _write(tmp, src, t, softmax, out, preferred, dla_core)
        if out.exists():
            shutil.rmtree(out)  # empty, or a bundle edgeres made (checked above)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res.out = out
    return res


def _write(d: Path, src: _Source, t: TargetProfile, softmax: bool, final: Path,
           preferred: tuple[int, str] | None = None, dla_core: int | None = None) -> BundleResult:
    notes: list[str] = [] if preferred is None else [preferred[1]]
    (d / "labels.txt").write_text("\n".join(src.classes) + "\n", encoding="utf-8")
    proto = with_softmax(src.proto) if (softmax and src.proto is not None) else src.proto
    output = "probabilities" if softmax else (proto.graph.output[0].name if proto is not None else "logits")
    if src.engine_runtime:
        name = "model.plan" if src.engine_runtime == "tensorrt" else "model.onnx"
        shutil.copyfile(src.path, d / name)
        runtime = src.engine_runtime
    else:
        name, runtime = "model.onnx", "onnxruntime"
        onnx.save(proto if proto is not None else load_onnx(src.path), str(d / name))
    if proto is not None:
        input_name = proto.graph.input[0].name
    else:
        input_name = "input"
        notes.append("the engine's source ONNX is gone: input and output are named as edgeres exports them")
    files = ["labels.txt", name, f"{name}.json", "bundle.json", "infer.py", "pixels.py", "README.md"]
    _manifest(d / name, final / name, src, t, softmax)
    if t.runtime == "tensorrt":
        files += _deepstream(d, src, proto, name, output, t, notes, dla_core)
    else:
        notes.append(f"no DeepStream config: {t.name} runs ONNX Runtime, and DeepStream runs TensorRT")
    files += _triton(d, src, t, name, runtime, input_name, output, None if preferred is None else preferred[0])
    settings = {"format": FORMAT, "model": name, "runtime": runtime, "preprocessing": src.pre.to_dict(),
                "outputs": "probabilities" if softmax else "logits", "fake_quant": src.fake_quant,
                "runner": RUNNER if runtime == "tensorrt" else None,
                "max_batch": src.max_batch, "dla_core": src.dla_core, "classes": len(src.classes), "target": t.name,
                "precision": src.precision,
                "source": {"path": str(src.path), "sha256": sha256_file(src.path)}, "versions": versions()}
    write_json_atomic(d / "bundle.json", settings)
    shutil.copyfile(RESOURCES / "infer.py", d / "infer.py")
    shutil.copyfile(Path(pixels.__file__), d / "pixels.py")  # the preprocessing edgeres runs, verbatim
    if runtime == "tensorrt":
        shutil.copyfile(Path(standalone.__file__), d / f"{RUNNER}.py")
        files.append(f"{RUNNER}.py")
    (d / "README.md").write_text(_readme(src, t, name, runtime, files, notes), encoding="utf-8")
    return BundleResult(d, sorted(files), runtime, notes)


def _manifest(artifact: Path, final: Path, src: _Source, t: TargetProfile, softmax: bool) -> None:
    """The bundled model's own manifest: its sha256, and the model it came from (path and sha256) as its input."""
    write_manifest(artifact, "bundle-model", {"model": src.path}, {"target": t.name, "softmax": softmax},
                   src.pre.to_dict(), {"classes": src.classes, "precision": src.precision})
    doc = json.loads(manifest_path(artifact).read_text())
    doc["artifact"]["path"] = str(final)  # where it lies once the bundle is in place
    write_json_atomic(manifest_path(artifact), doc)


def _deepstream(d: Path, src: _Source, proto: onnx.ModelProto | None, name: str, output: str,
                t: TargetProfile, notes: list[str], dla_core: int | None = None) -> list[str]:
    """nvinfer's config and, where nvinfer needs another graph than the bundle's, its own model.onnx. nvinfer's
    default classifier parser (``parseAttributesFromSoftmaxLayers``, DeepStream's nvdsinfer) reads probabilities: it
    starts its best score at 0, so on logits an object whose logits are all negative gets no label, and the
    confidence it reports is a logit. DeepStream's copy of a logits model therefore ends in a softmax.
    """
    ds = d / "deepstream"
    ds.mkdir()
    (ds / "labels.txt").write_text(";".join(src.classes) + "\n", encoding="utf-8")  # a classifier's: one line
    _, _, fold = deepstream_scaling(src.pre)
    files = ["deepstream/config_infer_primary.txt", "deepstream/labels.txt"]
    logits = output != "probabilities"
    if fold is not None and proto is None:
        raise ArtifactError(f"the std {list(src.pre.std)} differs per channel, so DeepStream needs the ONNX with "
                            f"1/std folded in, but the engine's source ONNX is gone; bundle the ONNX instead")
    if proto is not None and (fold is not None or (logits and name != "model.plan")):
        own = with_softmax(proto) if logits else proto
        onnx.save(with_input_scale(own, fold) if fold is not None else own, str(ds / "model.onnx"))
        line, files, output = "onnx-file=model.onnx", files + ["deepstream/model.onnx"], own.graph.output[0].name
    elif name == "model.plan":
        line = "model-engine-file=../model.plan"
        if logits:
            notes.append("DeepStream: this engine outputs logits, and nvinfer's default classifier parser reads "
                         "probabilities (an object whose logits are all negative gets no label); bundle the ONNX, "
                         "whose DeepStream copy ends in a softmax, or build the engine from `edgeres bundle --softmax`'s "
                         "model.onnx")
    else:
        line = "onnx-file=../model.onnx"  # it outputs probabilities already (--softmax)
    calib = None
    oldest = t.oldest_tensorrt
    builds = line.startswith("onnx-file")  # nvinfer builds the engine itself, so it needs the INT8 switch
    if src.precision == "int8" and proto is not None and builds and oldest and oldest < Version("11"):
        from edgeres.quantize.trt_cache import activation_amax, write_calibration_cache

        write_calibration_cache(ds / "calib.table", activation_amax(proto), str(oldest), "minmax")
        calib, files = "calib.table", files + ["deepstream/calib.table"]
    dla = src.dla_core if line.startswith("model-engine-file") else dla_core
    if dla is not None and src.precision == "fp32" and builds:
        notes.append(f"DeepStream: the DLA runs fp16 or int8, so nvinfer builds this fp32 model in fp16 for DLA core "
                     f"{dla} (network-mode=2); layers the DLA cannot take run on the GPU")
    text = deepstream_config(src.pre, len(src.classes), line, src.precision, output, src.fixed_batch or 1,
                             fold is not None, calib, dla)
    (ds / "config_infer_primary.txt").write_text(text, encoding="utf-8")
    return files


def _triton(d: Path, src: _Source, t: TargetProfile, name: str, runtime: str, input_name: str,
            output: str, preferred: int | None) -> list[str]:
    repo = d / "triton" / TRITON_NAME
    (repo / "1").mkdir(parents=True)
    plan = runtime == "tensorrt"
    shutil.copyfile(d / name, repo / "1" / ("model.plan" if plan else "model.onnx"))
    shutil.copyfile(d / "labels.txt", repo / "labels.txt")
    gpu = t.runtime == "tensorrt"
    trt = ("INT8" if src.precision == "int8" else "FP32") if gpu and not plan else None
    text = triton_config(TRITON_NAME, "tensorrt_plan" if plan else "onnxruntime_onnx", input_name, output, src.pre,
                         len(src.classes), src.max_batch, gpu, trt, src.fixed_batch, src.dla_core if plan else None,
                         preferred)
    (repo / "config.pbtxt").write_text(text, encoding="utf-8")
    return [f"triton/{TRITON_NAME}/config.pbtxt", f"triton/{TRITON_NAME}/labels.txt",
            f"triton/{TRITON_NAME}/1/{'model.plan' if plan else 'model.onnx'}"]


def _readme(src: _Source, t: TargetProfile, name: str, runtime: str, files: list[str], notes: list[str]) -> str:
    lines = [f"# {src.path.name} for {t.name}", "",
             f"Written by `edgeres bundle` from {src.path} ({src.precision}, {len(src.classes)} classes, input "
             f"{src.pre.channels}x{src.pre.size}x{src.pre.size}).", "",
             "- `python3 infer.py IMAGE_OR_FOLDER` classifies images with numpy, Pillow and "
             f"{'tensorrt' if runtime == 'tensorrt' else 'onnxruntime'} only (no edgeres), as `edgeres predict` does.",
             "- `triton/` is a Triton model repository: `tritonserver --model-repository triton`."]
    if t.runtime == "tensorrt":
        lines.append("- `deepstream/config_infer_primary.txt` is an nvinfer config for a primary classifier.")
    if "deepstream/calib.table" in files:
        lines.append("- `deepstream/calib.table` makes nvinfer turn TensorRT's INT8 on (without an int8-calib-file it "
                     "builds FP16, which a Q/DQ model cannot take); TensorRT takes the scales from the Q/DQ nodes.")
    lines += ["", "Files: " + ", ".join(f"`{f}`" for f in sorted(files)), ""]
    lines += [f"Note: {n}." for n in notes]
    return "\n".join(lines) + "\n"
