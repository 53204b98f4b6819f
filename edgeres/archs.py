"""What defines a model of the ResNet family (ResNet, ResNeXt, DenseNet): plain data, stored in checkpoints."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from edgeres.errors import ConfigError

STEMS = ("imagenet", "small", "small-s2")


@dataclass(frozen=True)
class ModelConfig:
    """``block`` picks the family: basic/bottleneck (ResNet, ResNeXt) or dense (DenseNet)."""

    arch: str = "resnet18"
    in_channels: int = 3
    num_classes: int = 1000
    stem: str = "imagenet"
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage; DenseNet: layers per dense block
    widths: tuple[int, ...] = (64, 128, 256, 512)  # stage widths before expansion; DenseNet: (stem features,)
    block: str = "basic"
    groups: int = 1  # ResNeXt cardinality
    width_per_group: int = 64  # ResNeXt bottleneck width per group
    growth_rate: int = 32  # DenseNet
    bn_size: int = 4  # DenseNet bottleneck: bn_size × growth_rate channels
    residual: bool = True  # the CIFAR family: False makes the plain network of the same depth

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """From a checkpoint; fields added since it was written take their defaults."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        for k in ("layers", "widths"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


# The architectures as torchvision defines them (same parameter names and shapes, so its state dicts load).
ARCHS: dict[str, dict] = {
    "resnet18": {"block": "basic", "layers": (2, 2, 2, 2)},
    "resnet34": {"block": "basic", "layers": (3, 4, 6, 3)},
    "resnet50": {"block": "bottleneck", "layers": (3, 4, 6, 3)},
    "resnext50_32x4d": {"block": "bottleneck", "layers": (3, 4, 6, 3), "groups": 32, "width_per_group": 4},
    "resnext101_32x8d": {"block": "bottleneck", "layers": (3, 4, 23, 3), "groups": 32, "width_per_group": 8},
    "densenet121": {"block": "dense", "layers": (6, 12, 24, 16), "widths": (64,), "growth_rate": 32},
    "densenet169": {"block": "dense", "layers": (6, 12, 32, 32), "widths": (64,), "growth_rate": 32},
    # He et al.'s CIFAR family (6n + 2 layers), residual and plain: the seed's degradation experiment
    **{f"{kind}{6 * n + 2}": {"block": "cifar", "layers": (n, n, n), "widths": (16, 32, 64),
                              "residual": kind == "resnet"} for kind in ("resnet", "plain") for n in (3, 9)},
}


def config_for(arch: str, in_channels: int = 3, num_classes: int = 1000, stem: str = "imagenet") -> ModelConfig:
    """The configuration of a named architecture."""
    if arch not in ARCHS:
        raise ConfigError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    return ModelConfig(arch, in_channels, num_classes, stem, **ARCHS[arch])


def arch_named(cfg: ModelConfig) -> str | None:
    """The preset whose structure ``cfg`` has, whatever it is called."""
    for name, preset in ARCHS.items():
        ref = ModelConfig(name, cfg.in_channels, cfg.num_classes, cfg.stem, **preset)
        if {**ref.to_dict(), "arch": ""} == {**cfg.to_dict(), "arch": ""}:
            return name
    return None
