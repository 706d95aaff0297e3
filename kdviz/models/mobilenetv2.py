"""MobileNetV2 as used in the CRD benchmark (`mobile_half` in RepDistiller `models/mobilenetv2.py`).

Expansion ratio 6 and width multiplier 0.5 (stem 16 channels, stage widths 8, 12, 16, 32, 48, 80, 160), a
1x1 conv to 1280 channels (the reference keeps 1280 for multipliers <= 1), global average pooling and a linear
classifier. The CIFAR stem has stride 2 and the stage strides are 1, 1, 2, 2, 1, 2, 1, so 32 px inputs end at
2x2. Like the reference, every inverted residual block has its 1x1 expansion conv, including the t=1 one.
Pooling is adaptive (the reference's pool is sized from a fixed input_size).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS
from .resnet_cifar import init_conv_bn
from .stages import CONV_STAGES, run_stages

# (expansion t, channels c, repeats n, first stride s); t=None means "the model's expansion ratio".
_SETTING = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        self.use_residual = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            *_conv_bn(c_in, hidden, 1),
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden),
            *_conv_bn(hidden, c_out, 1, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """Stages at 32 px (`stages.py`), as CRD's code splits `mobile_half`: stage1 [12, 16, 16] (after the
    24-channel setting), stage2 [16, 8, 8] (after the 32-channel one), stage3 [48, 4, 4] (after the
    96-channel one), pool [1280] (channel counts for width 0.5)."""

    feature_stages = CONV_STAGES

    def __init__(self, num_classes: int, in_channels: int = 3, expand_ratio: int = 6, width_mult: float = 0.5):
        super().__init__()
        c = int(32 * width_mult)
        self.stem = nn.Sequential(*_conv_bn(in_channels, c, 3, stride=2))
        blocks: list[nn.Module] = []
        ends = []  # index of the last block of each setting
        for t, width, n, s in _SETTING:
            c_out = int(width * width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(c, c_out, s if i == 0 else 1, expand_ratio if t is None else t))
                c = c_out
            ends.append(len(blocks) - 1)
        self._stage_after = {ends[1]: "stage1", ends[2]: "stage2", ends[4]: "stage3"}
        self.blocks = nn.Sequential(*blocks)
        last = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.head = nn.Sequential(*_conv_bn(c, last, 1))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(last, num_classes)
        self.feature_dim = last
        init_conv_bn(self)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        """x [B, C_in, H, W] -> logits [B, num_classes] (and pooled features [B, 1280], or all the named
        stages, if asked)."""
        return run_stages(self, x, return_features, return_stages)


@MODELS.register("mobilenetv2")
def mobilenetv2(
    num_classes: int, image_shape: tuple[int, int, int], expand_ratio: int = 6, width_mult: float = 0.5
) -> nn.Module:
    """CRD's MobileNetV2 (`mobile_half`: expansion 6, width 0.5)."""
    return MobileNetV2(num_classes, in_channels=image_shape[0], expand_ratio=expand_ratio, width_mult=width_mult)
