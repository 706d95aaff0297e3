"""Wide ResNets of the CRD benchmark: wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2 (WRN-depth-k).

As in the reference (RepDistiller `models/wrn.py`, after Zagoruyko & Komodakis): a 3x3 conv to 16 channels,
three stages of pre-activation blocks of width 16k, 32k, 64k (depth = 6n + 4, n blocks per stage), a final
BN-ReLU, global average pooling and a linear classifier. When a block changes width its shortcut is a 1x1
conv applied to the pre-activated input. Pooling is adaptive, so 32 px and 64 px inputs both work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import MODELS
from .resnet_cifar import init_conv_bn
from .stages import CONV_STAGES, model_outputs


class PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.drop_rate = drop_rate
        self.equal_in_out = c_in == c_out and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    """Stages at 32 px (`stages.py`): stage1 [16k, 32, 32], stage2 [32k, 16, 16] (the outputs of block1
    and block2), stage3 [64k, 8, 8] (block3's output after the final BN-ReLU, the map that is pooled),
    pool [64k]."""

    feature_stages = CONV_STAGES

    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int = 3, drop_rate: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n+4 (16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        stages, c_in = [], 16
        for c_out, stride in zip(widths, (1, 2, 2)):
            blocks = [
                PreActBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, drop_rate) for i in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[2])
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(widths[2], num_classes)
        self.feature_dim = widths[2]
        init_conv_bn(self)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        """x [B, C_in, H, W] -> logits [B, num_classes] (and pooled features [B, 64k], or all the named
        stages, if asked)."""
        stages = {}
        x = stages["stage1"] = self.block1(self.conv1(x))
        x = stages["stage2"] = self.block2(x)
        x = stages["stage3"] = self.relu(self.bn(self.block3(x)))
        features = stages["pool"] = self.pool(x)
        return model_outputs(self.classifier(features), stages, return_features, return_stages)


def _register(depth: int, k: int) -> None:
    name = f"wrn_{depth}_{k}"

    def factory(num_classes: int, image_shape: tuple[int, int, int], drop_rate: float = 0.0) -> nn.Module:
        return WideResNet(depth, k, num_classes, in_channels=image_shape[0], drop_rate=drop_rate)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"CRD's {name}: WRN of depth {depth}, widen factor {k}."
    MODELS.register(name)(factory)


for _depth, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _k)
