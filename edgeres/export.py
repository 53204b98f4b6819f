"""checkpoint → float ONNX: dynamo export, metadata, onnx.checker and a parity check against PyTorch."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image

from edgeres.artifacts import atomic_path, check_against_manifest, refuse_overwriting_inputs, write_manifest
from edgeres.config import DEFAULT_OPSET, MAX_BATCH, ExportConfig
from edgeres.data.datasets import load_dataset
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ArtifactError, ConfigError
from edgeres.interrupts import stops_held
from edgeres.models import Checkpoint, load_checkpoint
from edgeres.onnx_limits import export_opset, model_opset, parser_problems, target_limits
from edgeres.onnx_model import (
    CLASSES_KEY,
    DATASET_KEY,
    METADATA_KEY,
    MODEL_KEY,
    PRECISION_KEY,
    load_onnx,
    set_metadata,
)
from edgeres.onnx_opset import downgrade_opset
from edgeres.progress import log
from edgeres.targets import TargetProfile, load_target

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class ExportResult:
    onnx: Path
    max_abs_diff: float
    agreement: float
    images: int
    opset: int = DEFAULT_OPSET


class ParityError(ArtifactError):
    """ONNX and PyTorch disagree past the tolerance."""


def resolve_opset(cfg: ExportConfig) -> tuple[int, TargetProfile | None]:
    """The opset to write and the target it must suit; an --opset above the target's parser is refused."""
    target = load_target(cfg.target) if cfg.target else None
    limit = export_opset(target) if target else DEFAULT_OPSET
    opset = cfg.opset or limit
    if target is not None and cfg.opset is not None:
        lim = target_limits(target)
        if lim is not None and not lim.min_opset <= opset <= lim.max_opset:
            raise ConfigError(f"--opset {opset} is outside what TensorRT {lim.tensorrt}'s parser reads for "
                              f"{target.name} ({lim.min_opset}–{lim.max_opset}); drop --opset")
    return opset, target


def _export(model: torch.nn.Module, shape: tuple[int, ...], dest: Path, opset: int) -> None:
    x = torch.zeros(2, *shape)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        # A Ctrl-C inside torch.export surfaces as a TorchExportError or a half-imported module: hold it until the
        # export returns (a few seconds), then raise it as the interrupt it is.
        with stops_held():
            prog = torch.onnx.export(model, (x,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                     dynamic_shapes={"x": {0: batch}}, opset_version=opset, dynamo=True,
                                     external_data=False, verbose=False)
        if prog is None:
            raise ArtifactError("torch.onnx.export returned no program; update torch (edgeres needs the dynamo exporter)")
        prog.save(str(dest), external_data=False)
    proto = onnx.load(str(dest))
    if model_opset(proto) > opset:  # the dynamo exporter writes 18 whatever lower opset it is asked for
        onnx.save(downgrade_opset(proto, opset), str(dest))
    elif model_opset(proto) != opset:
        raise ArtifactError(f"torch wrote opset {model_opset(proto)} where {opset} was asked; export at "
                            f"--opset {DEFAULT_OPSET} and report it")


def parity(onnx_path: Path, model: torch.nn.Module, x: np.ndarray) -> tuple[float, float, float]:
    """Max |Δlogit|, top-1 agreement (%) and the largest |logit| of PyTorch, between ONNX Runtime and PyTorch."""
    from edgeres.backends.onnxruntime import OrtSession

    sess = OrtSession(onnx_path)
    try:
        got = sess.infer_all(x, batch_size=250)
    finally:
        sess.close()
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(x[i:i + 250])).numpy() for i in range(0, len(x), 250)])
    return (float(np.abs(got - ref).max()), float(100.0 * (got.argmax(1) == ref.argmax(1)).mean()),
            float(np.abs(ref).max()))


def _with_labels(ck: Checkpoint, cfg: ExportConfig, path: Path) -> tuple[Checkpoint, Preprocessing]:
    """The checkpoint with the preprocessing and labels it records, or those the options give a foreign one."""
    pre = ck.preprocessing
    if cfg.gives_preprocessing:
        if pre is not None:
            raise ConfigError(f"{path} records its preprocessing; drop --size/--resize/--mean/--std")
        size, mean, std = cfg.given_preprocessing()
        pre = Preprocessing(size, len(mean), mean, std, resize=cfg.resize)
    elif pre is None:
        raise ConfigError(f"{path} records no preprocessing (a torchvision checkpoint); pass --size, --mean and --std "
                          f"(ImageNet: --size 224 --resize 256 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225)")
    if pre.channels != ck.model_cfg.in_channels:
        raise ConfigError(f"--mean/--std give {pre.channels} channel(s) but {path} takes {ck.model_cfg.in_channels}")
    classes = list(cfg.classes) if cfg.classes else list(ck.classes)
    if ck.extra.get("source") == "state_dict" and not cfg.classes:
        raise ConfigError(f"{path} has no class names; pass --classes labels.txt (one per line, "
                          f"{ck.model_cfg.num_classes} lines)")
    if len(classes) != ck.model_cfg.num_classes:
        raise ConfigError(f"--classes names {len(classes)} labels but {path}'s head has {ck.model_cfg.num_classes} "
                          f"outputs; give one label per output")
    return replace(ck, preprocessing=pre, classes=classes), pre


def _parity_inputs(data: str | None, pre: Preprocessing, n: int) -> tuple[np.ndarray, int]:
    """Test images of ``data``, or seeded random images when the checkpoint names no data set and --data is absent."""
    if data is None:
        log("parity on random images: the checkpoint names no data set (pass --data for real ones)")
        rng = np.random.default_rng(0)
        imgs = [Image.fromarray(rng.integers(0, 256, (pre.size, pre.size, 3), np.uint8)) for _ in range(min(n, 64))]
        return np.stack([pre(im) for im in imgs]), len(imgs)
    test = load_dataset(data, "test")
    n = min(n, len(test))
    return test.subset(np.linspace(0, len(test) - 1, n).astype(int)).tensors(pre, "parity images"), n


def onnx_from_checkpoint(checkpoint: Path, out: Path, cfg: ExportConfig = ExportConfig()) -> ExportResult:
    """Export ``checkpoint`` to ``out`` (dynamic batch; for ``cfg.target``'s parser) and check parity on real images."""
    cfg.validate()
    opset, target = resolve_opset(cfg)
    refuse_overwriting_inputs(Path(out), {"checkpoint": Path(checkpoint)})
    check_against_manifest(Path(checkpoint), "checkpoint", "re-train it, or restore it from a backup")
    ck, pre = _with_labels(load_checkpoint(checkpoint), cfg, Path(checkpoint))
    data = cfg.data or ck.extra.get("train_config", {}).get("data")
    model = ck.model()
    x, n = _parity_inputs(data, pre, cfg.parity_images)
    with atomic_path(Path(out)) as tmp:
        _export(model, pre.input_shape, tmp, opset)
        proto = load_onnx(tmp)
        lim = target_limits(target) if target is not None else None
        problems = parser_problems(proto, lim) if lim is not None else []
        if problems:
            raise ArtifactError(f"the export for {cfg.target} is not what its parser reads: {problems[0]}; "
                                f"report it; nothing was written")
        set_metadata(proto, {
            METADATA_KEY: pre.to_json(),
            CLASSES_KEY: json.dumps(ck.classes),
            **({DATASET_KEY: data} if data else {}),
            MODEL_KEY: json.dumps(ck.model_cfg.to_dict()),
            PRECISION_KEY: "fp32",
        })
        proto.producer_name = "edgeres"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        diff, agree, scale = parity(tmp, model, x)
        limit = cfg.max_abs_diff * max(1.0, scale)  # float32 error grows with the logits' magnitude
        if diff > limit or agree < cfg.min_agreement:
            raise ParityError(f"ONNX differs from PyTorch: max |Δlogit| {diff:.2e} (limit {limit:.1e}: "
                              f"{cfg.max_abs_diff:.0e} × max(1, largest |logit| {scale:.3g})), "
                              f"top-1 agreement {agree:.2f}% (limit {cfg.min_agreement}%); try another --opset "
                              f"and report it; nothing was written")
        write_manifest(Path(out), "onnx-fp32", {"checkpoint": checkpoint}, asdict(cfg), pre.to_dict(),
                       {"max_abs_diff": diff, "max_abs_logit": scale, "agreement": agree, "parity_images": n,
                        "parity_inputs": f"{data} test split" if data else "random images (no --data)",
                        "data": data, "opset": opset, "classes": ck.classes,
                        "parser": None if lim is None else {"tensorrt": str(lim.tensorrt),
                                                            "max_opset": lim.max_opset}}, content=tmp)
    return ExportResult(Path(out), diff, agree, n, opset)
