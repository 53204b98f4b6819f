"""The CIFAR family of He et al. (2015), section 4.2: the networks of the seed's central experiment.

A 3×3 conv of 16 filters, then three stages of ``n`` blocks (two 3×3 convs each) on 16, 32 and 64 filters, the
first conv of stages 2 and 3 with stride 2, global average pooling and the classifier: ``6n + 2`` layers (20 for
n = 3, 56 for n = 9). A residual block adds its input back (the paper's option A: identity, subsampled and padded
with zero channels where the shape changes, so the residual and plain networks have the same parameters); a plain
block does not. The ``stem`` of the configuration is not used: this family has its own.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeres.archs import ModelConfig


class CifarBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.reshape = stride != 1 or cin != cout

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not self.reshape:
            return x
        x = x[:, :, ::2, ::2]
        return torch.cat([x, torch.zeros_like(x)], 1)  # option A: the doubled channels are zeros

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + self.shortcut(x)
        return self.relu(out)


class CifarNet(nn.Module):
    def __init__(self, cfg: ModelConfig, zero_init_residual: bool = False) -> None:
        super().__init__()
        if len(cfg.layers) != 3 or len(cfg.widths) != 3 or any(2 * a != b for a, b in zip(cfg.widths, cfg.widths[1:])):
            raise ValueError("the CIFAR family has three stages whose widths double (16, 32, 64)")
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.widths[0])
        self.relu = nn.ReLU(inplace=True)
        cin = cfg.widths[0]
        stages = []
        for i, (n, w) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            stages.append(nn.Sequential(*[CifarBlock(cin if j == 0 else w, w, 2 if (i and j == 0) else 1, cfg.residual)
                                          for j in range(n)]))
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual and cfg.residual:
            for b in self.modules():
                if isinstance(b, CifarBlock):
                    nn.init.zeros_(b.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))
