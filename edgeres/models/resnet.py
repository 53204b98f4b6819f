"""ResNet as in He et al. (2015) and the seed: basic or bottleneck blocks, projection shortcuts; and ResNeXt
(Xie et al., 2017), whose bottleneck's 3×3 conv is split into ``groups`` parallel paths (the cardinality).

Parameter names and shapes match torchvision's ``resnet18/34/50`` and ``resnext50_32x4d`` so their state dicts load.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeres.archs import STEMS, ModelConfig

ResNetConfig = ModelConfig  # the name earlier checkpoints and code use


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def projection(cin: int, cout: int, stride: int) -> nn.Module | None:
    """The shortcut: identity where shapes match, else a 1×1 conv + BN projection."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3×3 convs with BN; the shortcut is identity or a 1×1 conv + BN projection."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("basic blocks have no groups; ResNeXt uses bottleneck blocks")
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = projection(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (grouped for ResNeXt, with the stride), 1×1 expand ×4; torchvision's ResNet v1.5."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def stem_conv(cfg: ModelConfig, cout: int) -> tuple[nn.Conv2d, nn.Module]:
    """The first conv and pool: ImageNet's 7×7/2 + max-pool, or a 3×3 (stride 1 or 2) for small images."""
    if cfg.stem == "imagenet":
        return (nn.Conv2d(cfg.in_channels, cout, 7, stride=2, padding=3, bias=False),
                nn.MaxPool2d(3, stride=2, padding=1))
    if cfg.stem in ("small", "small-s2"):
        stride = 2 if cfg.stem == "small-s2" else 1
        return nn.Conv2d(cfg.in_channels, cout, 3, stride=stride, padding=1, bias=False), nn.Identity()
    raise ValueError(f"unknown stem {cfg.stem!r}; choose one of {', '.join(STEMS)}")


def init_weights(model: nn.Module, zero_linear_bias: bool = False) -> None:
    """torchvision's initialization: Kaiming-normal convs (fan-out), BN weight 1 and bias 0; DenseNet also
    zeroes the classifier's bias.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and zero_linear_bias:
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """ResNet/ResNeXt; ``forward_features`` and ``forward_head`` split as in timm."""

    def __init__(self, cfg: ModelConfig, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        block = BLOCKS[cfg.block]
        w0 = cfg.widths[0]
        self.conv1, self.maxpool = stem_conv(cfg, w0)
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)
        cin = w0
        for i, (n, w) in enumerate(zip(cfg.layers, cfg.widths)):
            stride = 1 if i == 0 else 2
            extra = (cfg.groups, cfg.width_per_group)
            blocks = [block(cin, w, stride, *extra)] + [block(w * block.expansion, w, 1, *extra) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = w * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, cfg.num_classes)
        init_weights(self)
        if zero_init_residual:  # each block starts as the identity (Goyal et al.); torchvision's option
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.bn3.weight if isinstance(m, Bottleneck) else m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, len(self.cfg.layers) + 1):
            x = getattr(self, f"layer{i}")(x)  # set by name in __init__, as torchvision names them
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def resnet18(in_channels: int = 3, num_classes: int = 1000, stem: str = "imagenet") -> ResNet:
    """ResNet-18: four stages of two basic blocks, 64/128/256/512 channels."""
    return ResNet(ModelConfig("resnet18", in_channels, num_classes, stem))
