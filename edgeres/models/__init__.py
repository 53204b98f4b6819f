"""Model registry and checkpoints: safe loading only (``weights_only=True``)."""
from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeres.artifacts import atomic_path
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ArtifactError, ConfigError
from edgeres.models.resnet import ResNet, ResNetConfig

REGISTRY: dict[str, Callable[[ResNetConfig, bool], nn.Module]] = {"resnet18": ResNet}
CHECKPOINT_FORMAT = "edgeres.checkpoint/1"


def build_model(cfg: ResNetConfig, zero_init_residual: bool = False) -> nn.Module:
    if cfg.arch not in REGISTRY:
        raise ConfigError(f"unknown model {cfg.arch!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[cfg.arch](cfg, zero_init_residual)


@dataclass
class Checkpoint:
    """A model's weights plus what is needed to rebuild and feed it."""

    model_cfg: ResNetConfig
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
        torch.save(payload, tmp)
    return Path(path)


def _infer_config(sd: dict[str, torch.Tensor]) -> ResNetConfig:
    """Architecture of a bare (torchvision-format) ResNet-18 state dict."""
    w = sd.get("conv1.weight")
    fc = sd.get("fc.weight")
    if w is None or fc is None or w.ndim != 4:
        raise ArtifactError("state dict has no conv1.weight/fc.weight; it is not a ResNet-18 checkpoint")
    stem = "imagenet" if w.shape[-1] == 7 else "small"
    return ResNetConfig("resnet18", int(w.shape[1]), int(fc.shape[0]), stem)


def load_checkpoint(path: Path, preprocessing: Preprocessing | None = None) -> Checkpoint:
    """Load an edgeres or torchvision-format checkpoint; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint not found: {path}; train one with `edgeres train`")
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
            ResNetConfig.from_dict(obj["model"]), obj["state_dict"],
            preprocessing or (Preprocessing.from_dict(pre) if pre else None),
            list(obj.get("classes") or []), dict(obj.get("extra") or {}),
        )
    sd = obj.get("state_dict", obj) if "state_dict" in obj else obj
    sd = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    cfg = _infer_config(sd)
    classes = [str(i) for i in range(cfg.num_classes)]
    return Checkpoint(cfg, sd, preprocessing, classes, {"source": "state_dict"})
