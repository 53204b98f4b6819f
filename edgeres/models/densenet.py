"""DenseNet (Huang et al., 2017), the seed's second variant: inside a dense block every layer receives the
concatenated maps of all layers before it; transitions (1×1 conv, 2×2 average pool) halve channels and size.

Parameter names and shapes match torchvision's ``densenet121/169`` so their state dicts load.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeres.archs import ModelConfig
from edgeres.models.resnet import init_weights, stem_conv


class DenseLayer(nn.Module):
    """BN-ReLU-1×1 conv (bn_size × growth) then BN-ReLU-3×3 conv (growth): the BC variant."""

    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, n: int, cin: int, growth: int, bn_size: int) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(cin + i * growth, growth, bn_size) for i in range(n)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, stride=2))


class DenseNet(nn.Module):
    """DenseNet-BC (compression 0.5); ``forward_features`` and ``forward_head`` split as in timm."""

    def __init__(self, cfg: ModelConfig, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.widths[0]
        conv0, pool0 = stem_conv(cfg, c)
        self.features = nn.Sequential()
        for name, m in (("conv0", conv0), ("norm0", nn.BatchNorm2d(c)), ("relu0", nn.ReLU(inplace=True)),
                        ("pool0", pool0)):
            self.features.add_module(name, m)
        for i, n in enumerate(cfg.layers):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(n, c, cfg.growth_rate, cfg.bn_size))
            c += n * cfg.growth_rate
            if i != len(cfg.layers) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, cfg.num_classes)
        init_weights(self, zero_linear_bias=True)  # DenseNet has no residual branch to zero-initialize

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
