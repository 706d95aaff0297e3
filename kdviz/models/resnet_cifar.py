"""CIFAR ResNets of the CRD benchmark (Tian et al., "Contrastive Representation Distillation", 2020).

Same layout as the reference implementation (RepDistiller `models/resnet.py`): a 3x3 stem, three stages of
post-activation basic blocks (the second and third downsample by 2), global average pooling and a linear
classifier. `resnetN` uses widths (16, 16, 32, 64) = (stem, stage1, stage2, stage3); `resnetNx4` uses
(32, 64, 128, 256). Depth is 6n + 2 with n blocks per stage.

Unlike the reference, pooling is adaptive (the reference's AvgPool2d(8) only fits 32 px inputs), so the
same network runs at 32 px (CIFAR) and 64 px (Tiny ImageNet).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS
from .stages import CONV_STAGES, model_outputs


def init_conv_bn(module: nn.Module) -> None:
    """He (fan-out) init for convolutions, unit scale and zero shift for batch norm, as in CRD."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the input (through a 1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth 6n+2 with widths (stem, stage1, stage2, stage3).

    Stages at 32 px (`stages.py`): stage1 [w1, 32, 32], stage2 [w2, 16, 16], stage3 [w3, 8, 8] (the
    outputs of layer1..3), pool [w3]; e.g. resnet32x4: 64, 128, 256 channels.
    """

    feature_stages = CONV_STAGES

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, c_in = [], widths[0]
        for c_out, stride in zip(widths[1:], (1, 2, 2)):
            blocks = [BasicBlock(c_in, c_out, stride)] + [BasicBlock(c_out, c_out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(widths[3], num_classes)
        self.feature_dim = widths[3]
        init_conv_bn(self)

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        """x [B, C_in, H, W] -> logits [B, num_classes] (and pooled features [B, widths[3]], or all
        the named stages, if asked)."""
        stages = {}
        x = self.stem(x)
        for name, layer in zip(CONV_STAGES, (self.layer1, self.layer2, self.layer3)):
            x = stages[name] = layer(x)
        features = stages["pool"] = self.pool(x)
        return model_outputs(self.classifier(features), stages, return_features, return_stages)


_NARROW = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    def factory(num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        return CifarResNet(depth, widths, num_classes, in_channels=image_shape[0])

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"CRD's {name}: depth {depth}, widths {widths}."
    MODELS.register(name)(factory)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, _NARROW)
_register("resnet8x4", 8, _WIDE)
_register("resnet32x4", 32, _WIDE)
