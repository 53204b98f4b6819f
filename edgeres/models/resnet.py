"""ResNet-18 as in He et al. (2015) and the seed: basic blocks, projection shortcuts.

Parameter names and shapes match torchvision's ``resnet18`` so that its state dicts load.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

STEMS = ("imagenet", "small", "small-s2")


@dataclass(frozen=True)
class ResNetConfig:
    """What defines a ResNet of this family; stored in checkpoints."""

    arch: str = "resnet18"
    in_channels: int = 3
    num_classes: int = 1000
    stem: str = "imagenet"
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ResNetConfig":
        d = dict(d)
        d["layers"] = tuple(d.get("layers", cls.layers))
        d["widths"] = tuple(d.get("widths", cls.widths))
        return cls(**d)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with BN; the shortcut is identity or a 1×1 conv + BN projection."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with basic blocks; ``forward_features`` and ``forward_head`` split as in timm."""

    def __init__(self, cfg: ResNetConfig, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        w0 = cfg.widths[0]
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(cfg.in_channels, w0, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        elif cfg.stem in ("small", "small-s2"):
            stride = 2 if cfg.stem == "small-s2" else 1
            self.conv1 = nn.Conv2d(cfg.in_channels, w0, 3, stride=stride, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"unknown stem {cfg.stem!r}; choose one of {', '.join(STEMS)}")
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)
        cin = w0
        for i, (n, w) in enumerate(zip(cfg.layers, cfg.widths)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin, w, stride)] + [BasicBlock(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each block starts as the identity (Goyal et al.); torchvision's option
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def resnet18(in_channels: int = 3, num_classes: int = 1000, stem: str = "imagenet") -> ResNet:
    """ResNet-18: four stages of two basic blocks, 64/128/256/512 channels."""
    return ResNet(ResNetConfig("resnet18", in_channels, num_classes, stem))
