"""Where training starts: fresh weights, or a torchvision or edgeres checkpoint with its head replaced when the
classes differ; and the frozen-backbone phase of fine-tuning.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from edgeres.archs import ModelConfig, config_for
from edgeres.config import TrainConfig
from edgeres.data.datasets import imagenet_preprocessing
from edgeres.data.preprocess import Preprocessing
from edgeres.data.survey import default_preprocessing
from edgeres.errors import ConfigError
from edgeres.models import build_model, load_checkpoint

HEADS = ("fc.", "classifier.")  # torchvision's names of the last layer: ResNet/ResNeXt, DenseNet


@dataclass
class Start:
    model_cfg: ModelConfig
    model: nn.Module
    preprocessing: Preprocessing
    note: str  # what the run starts from, for the log and the manifest


def is_head(name: str) -> bool:
    return name.startswith(HEADS)


def start(cfg: TrainConfig, classes: list[str], preprocessing: Preprocessing | None = None) -> Start:
    """The model to train on ``classes`` and the preprocessing that feeds it."""
    if not cfg.weights:
        pre = preprocessing or default_preprocessing(cfg.data, cfg.size)
        mc = config_for(cfg.arch or "resnet18", pre.channels, len(classes), cfg.stem or "imagenet")
        return Start(mc, build_model(mc, cfg.zero_init_residual), pre, "random initialization")
    ck = load_checkpoint(Path(cfg.weights))
    got = ck.model_cfg
    if cfg.arch and got.arch != cfg.arch:
        raise ConfigError(f"--weights {cfg.weights} holds a {got.arch}, not a {cfg.arch}; pass --arch {got.arch} "
                          f"or drop --arch")
    if cfg.stem and got.stem != cfg.stem:
        raise ConfigError(f"--weights {cfg.weights} has the {got.stem} stem, not {cfg.stem}; drop --stem")
    if preprocessing is not None:
        pre = preprocessing
    elif ck.preprocessing is not None:  # the backbone learnt on these statistics: keep them, at --size if given
        pre = replace(ck.preprocessing, size=cfg.size or ck.preprocessing.size,
                      resize=None if cfg.size else ck.preprocessing.resize)
    elif got.in_channels == 3:  # a torchvision file: ImageNet's transform
        pre = imagenet_preprocessing(cfg.size or 224)
    else:
        pre = Preprocessing(cfg.size or 224, 1, (0.5,), (0.5,))
    if pre.channels != got.in_channels:
        raise ConfigError(f"--weights {cfg.weights} takes {got.in_channels}-channel images but the preprocessing has "
                          f"{pre.channels}; use weights of a {pre.channels}-channel model")
    keep_head = got.num_classes == len(classes) and list(ck.classes) == list(classes)
    mc = replace(got, num_classes=len(classes))
    model = build_model(mc)
    sd = {k: v for k, v in ck.state_dict.items() if keep_head or not is_head(k)}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any(not is_head(k) for k in missing):
        raise ConfigError(f"--weights {cfg.weights} does not fit {got.arch} (missing {missing[:2]}, unexpected "
                          f"{unexpected[:2]}); pass a checkpoint of a supported architecture")
    head = "its head" if keep_head else f"a new {len(classes)}-class head (it had {got.num_classes} outputs)"
    return Start(mc, model, pre, f"{cfg.weights} ({got.arch}) with {head}")


def freeze_backbone(model: nn.Module, frozen: bool) -> None:
    """While frozen, BatchNorm statistics of the backbone stay as loaded (eval mode); call after ``model.train()``."""
    if not frozen:
        return
    for name, m in model.named_modules():
        if name and not is_head(name + ".") and isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def drop_backbone_grads(model: nn.Module) -> None:
    """Only the head learns: the backbone's gradients are dropped before the step (so SGD leaves it, momentum and
    weight decay included). Gradients, not ``requires_grad``, so DDP's buckets stay as they were built.
    """
    for name, p in model.named_parameters():
        if not is_head(name.removeprefix("module.")):
            p.grad = None
