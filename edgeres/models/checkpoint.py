"""Model registry and checkpoints: safe loading only (``weights_only=True``)."""
from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeres.archs import ARCHS, ModelConfig, arch_named
from edgeres.artifacts import atomic_path
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ArtifactError, ConfigError
from edgeres.models.cifar import CifarNet
from edgeres.models.densenet import DenseNet
from edgeres.models.resnet import ResNet

REGISTRY: dict[str, Callable[[ModelConfig, bool], nn.Module]] = {"basic": ResNet, "bottleneck": ResNet,
                                                                 "dense": DenseNet, "cifar": CifarNet}
CHECKPOINT_FORMAT = "edgeres.checkpoint/1"


def build_model(cfg: ModelConfig, zero_init_residual: bool = False) -> nn.Module:
    if cfg.block not in REGISTRY:
        raise ConfigError(f"unknown block {cfg.block!r} in the configuration of {cfg.arch}; "
                          f"choose a model of {', '.join(ARCHS)}")
    return REGISTRY[cfg.block](cfg, zero_init_residual)


@dataclass
class Checkpoint:
    """A model's weights plus what is needed to rebuild and feed it."""

    model_cfg: ModelConfig
    state_dict: dict[str, torch.Tensor]
    preprocessing: Preprocessing | None
    classes: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def model(self) -> nn.Module:
        m = build_model(self.model_cfg)
        missing, unexpected = m.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            raise ArtifactError(f"checkpoint does not fit {self.model_cfg.arch}: missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]}; check --arch/--stem or re-train")
        return m.eval()


def save_checkpoint(path: Path, ckpt: Checkpoint) -> Path:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": ckpt.model_cfg.to_dict(),
        "state_dict": ckpt.state_dict,
        "preprocessing": ckpt.preprocessing.to_dict() if ckpt.preprocessing else None,
        "classes": list(ckpt.classes),
        "extra": ckpt.extra,
    }
    with atomic_path(Path(path)) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as e:  # torch reports a full disk as "enforce fail at inline_container.cc"
            import errno
            import shutil

            if shutil.disk_usage(tmp.parent).free < (1 << 20) * 64 or "inline_container" in str(e):
                raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
            raise
    return Path(path)


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    """How many distinct indices fill ``{}`` in ``pattern`` among the keys (blocks in a stage)."""
    rx = re.compile("^" + re.escape(pattern).replace(r"\{\}", r"(\d+)") + r"\.")
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def _infer_config(sd: dict[str, torch.Tensor]) -> ModelConfig:
    """The architecture of a bare (torchvision-format) state dict: ResNet, ResNeXt or DenseNet."""
    dense = "features.conv0.weight" in sd
    w = sd.get("features.conv0.weight" if dense else "conv1.weight")
    fc = sd.get("classifier.weight" if dense else "fc.weight")
    if w is None or fc is None or w.ndim != 4:
        raise ArtifactError("state dict has neither conv1.weight/fc.weight (ResNet) nor features.conv0.weight/"
                            "classifier.weight (DenseNet); it is not a checkpoint of a supported model")
    base: dict[str, Any] = {"in_channels": int(w.shape[1]), "num_classes": int(fc.shape[0]),
                            "stem": "imagenet" if w.shape[-1] == 7 else "small"}
    if dense:
        n = _count(sd, "features.denseblock{}")
        growth = int(sd["features.denseblock1.denselayer1.conv2.weight"].shape[0])
        cfg = ModelConfig("", **base, block="dense", widths=(int(w.shape[0]),), growth_rate=growth,
                          bn_size=int(sd["features.denseblock1.denselayer1.conv1.weight"].shape[0]) // growth,
                          layers=tuple(_count(sd, f"features.denseblock{i}.denselayer{{}}") for i in range(1, n + 1)))
    else:
        layers = tuple(_count(sd, f"layer{i}.{{}}") for i in range(1, 5))
        if "layer1.0.conv3.weight" in sd:
            c2 = sd["layer1.0.conv2.weight"]
            groups = int(c2.shape[0]) // int(c2.shape[1])
            cfg = ModelConfig("", **base, layers=layers, block="bottleneck", groups=groups,
                              width_per_group=int(c2.shape[0]) // groups)
        else:
            cfg = ModelConfig("", **base, layers=layers)
    name = arch_named(cfg)
    if name is None:
        raise ArtifactError(f"state dict is a {cfg.block} network with stages {cfg.layers}, which is none of "
                            f"{', '.join(ARCHS)}")
    return replace(cfg, arch=name)


def _torchvision_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old torchvision DenseNet files name ``denselayer1.norm.1.weight`` what is now ``denselayer1.norm1.weight``."""
    rx = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    return {(f"{m.group(1)}{m.group(2)}" if (m := rx.match(k)) else k): v for k, v in sd.items()}


def load_checkpoint(path: Path, preprocessing: Preprocessing | None = None) -> Checkpoint:
    """Load an edgeres or torchvision-format checkpoint; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint not found: {path}; train one with `edgeres train`")
    with open(path, "rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":
        raise ArtifactError(f"{path} is not a PyTorch checkpoint (neither torch.save's zip nor a pickle); pass the "
                            f".pt/.pth file that torch.save wrote")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{path} is not a readable checkpoint ({first}); it may be truncated: "
                            f"re-run `edgeres train` or copy it again") from None
    except Exception as e:  # pickle.UnpicklingError for objects weights_only refuses
        raise ArtifactError(f"{path} holds objects that weights_only loading refuses ({type(e).__name__}); "
                            f"save a plain state_dict instead") from None
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path} does not hold a state dict; save model.state_dict()")
    if obj.get("format") == CHECKPOINT_FORMAT:
        pre = obj.get("preprocessing")
        return Checkpoint(
            ModelConfig.from_dict(obj["model"]), obj["state_dict"],
            preprocessing or (Preprocessing.from_dict(pre) if pre else None),
            list(obj.get("classes") or []), dict(obj.get("extra") or {}),
        )
    sd = obj.get("state_dict", obj) if "state_dict" in obj else obj
    if not isinstance(sd, dict):
        raise ArtifactError(f"{path} does not hold a state dict; save model.state_dict()")
    sd = _torchvision_names({k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)})
    try:
        cfg = _infer_config(sd)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    classes = [str(i) for i in range(cfg.num_classes)]
    return Checkpoint(cfg, sd, preprocessing, classes, {"source": "state_dict"})
