"""ShuffleNetV1 and ShuffleNetV2 as in the CRD benchmark (RepDistiller `models/ShuffleNetv1.py`, `ShuffleNetv2.py`).

Both CIFAR variants start with a 1x1 conv to 24 channels at full resolution (no stride, no max-pool), then three
stages that each halve the resolution, then global average pooling (adaptive here; the reference's fixed
avg_pool2d(4) only fits 32 px) and a linear classifier.

ShuffleNetV1 (CRD's `ShuffleV1`): groups 3, stage widths 240/480/960, 4/8/4 blocks. A stride-2 block
concatenates a 3x3 average-pooled shortcut to its branch (branch width = stage width - input width); the first
1x1 conv of the whole network is ungrouped (its input is the 24-channel stem).

ShuffleNetV2: stage widths and final 1x1 conv width per size, 3/7/3 basic blocks per stage after a
downsampling block; channel table from CRD's `configs` (CRD's `ShuffleV2` is size 1.0). Note CRD's size 2.0
uses 224 channels in stage 1 where the ShuffleNetV2 paper has 244; we follow CRD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import MODELS
from .resnet_cifar import init_conv_bn
from .stages import CONV_STAGES, run_stages


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, g*c, H, W] -> interleave the g groups' channels."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


# ----------------------------------------------------------------------------------------- ShuffleNetV1
class ShuffleV1Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, first_groups: int):
        super().__init__()
        self.stride = stride
        branch = c_out - c_in if stride == 2 else c_out  # stride 2: the shortcut is concatenated
        mid = branch // 4
        self.first_groups = first_groups
        self.conv1 = nn.Conv2d(c_in, mid, 1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, branch, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        return F.relu(torch.cat([out, res], 1) if self.stride == 2 else out + res)


class ShuffleNetV1(nn.Module):
    """Stages at 32 px (`stages.py`): stage1 [240, 16, 16], stage2 [480, 8, 8], stage3 [960, 4, 4] (the
    outputs of the three stages), pool [960]."""

    feature_stages = CONV_STAGES

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (240, 480, 960),
        num_blocks: tuple[int, int, int] = (4, 8, 4),
        groups: int = 3,
    ):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        c = 24
        self._stage_after = {}
        for stage, (width, n) in enumerate(zip(widths, num_blocks)):
            for i in range(n):
                first_groups = 1 if stage == 0 and i == 0 else groups
                blocks.append(ShuffleV1Block(c, width, 2 if i == 0 else 1, groups, first_groups))
                c = width
            self._stage_after[len(blocks) - 1] = CONV_STAGES[stage]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Identity()  # no final 1x1 conv in V1
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)
        self.feature_dim = c
        init_conv_bn(self)

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        """x [B, C_in, H, W] -> logits [B, num_classes] (and pooled features [B, 960], or all the named
        stages, if asked)."""
        return run_stages(self, x, return_features, return_stages)


@MODELS.register("shufflenetv1")
def shufflenetv1(num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
    """CRD's ShuffleV1: groups 3, widths 240/480/960, 4/8/4 blocks."""
    return ShuffleNetV1(num_classes, in_channels=image_shape[0])


# ----------------------------------------------------------------------------------------- ShuffleNetV2
# size -> (stage widths, final 1x1 conv width); 3, 7, 3 basic blocks per stage (CRD's `configs`).
V2_CONFIGS: dict[str, tuple[tuple[int, int, int], int]] = {
    "0_5": ((48, 96, 192), 1024),
    "1_0": ((116, 232, 464), 1024),
    "1_5": ((176, 352, 704), 1024),
    "2_0": ((224, 488, 976), 2048),
}
V2_BLOCKS = (3, 7, 3)


def _cbr(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ShuffleV2Block(nn.Module):
    """Split channels in half; transform one half (1x1, depthwise 3x3, 1x1); concatenate; shuffle."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            _cbr(half, half, 1), _cbr(half, half, 3, groups=half, relu=False), _cbr(half, half, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, transform = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([keep, self.branch(transform)], 1), 2)


class ShuffleV2Down(nn.Module):
    """Two stride-2 branches on the full input, each giving half the output channels; concatenate; shuffle."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        mid = c_out // 2
        self.left = nn.Sequential(_cbr(c_in, c_in, 3, 2, groups=c_in, relu=False), _cbr(c_in, mid, 1))
        self.right = nn.Sequential(_cbr(c_in, mid, 1), _cbr(mid, mid, 3, 2, groups=mid, relu=False), _cbr(mid, mid, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(nn.Module):
    """Stages at 32 px (`stages.py`): stage1 [w1, 16, 16], stage2 [w2, 8, 8], stage3 [w3, 4, 4] (the
    outputs of the three stages, before the final 1x1 conv), pool [1024 or 2048]; size 1.0 has
    w = 116, 232, 464."""

    feature_stages = CONV_STAGES

    def __init__(self, num_classes: int, in_channels: int = 3, size: str = "1_0"):
        super().__init__()
        widths, last = V2_CONFIGS[size]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        c = 24
        self._stage_after = {}
        for stage, (width, n) in enumerate(zip(widths, V2_BLOCKS)):
            blocks.append(ShuffleV2Down(c, width))
            blocks += [ShuffleV2Block(width) for _ in range(n)]
            c = width
            self._stage_after[len(blocks) - 1] = CONV_STAGES[stage]
        self.blocks = nn.Sequential(*blocks)
        self.head = _cbr(c, last, 1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(last, num_classes)
        self.feature_dim = last
        init_conv_bn(self)

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        """x [B, C_in, H, W] -> logits [B, num_classes] (and pooled features [B, 1024 or 2048], or all the
        named stages, if asked)."""
        return run_stages(self, x, return_features, return_stages)


def _register_v2(size: str) -> None:
    name = f"shufflenetv2_{size}"

    def factory(num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        return ShuffleNetV2(num_classes, in_channels=image_shape[0], size=size)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"ShuffleNetV2 {size.replace('_', '.')}x, CIFAR variant of CRD (stage widths {V2_CONFIGS[size][0]})."
    )
    MODELS.register(name)(factory)


for _size in V2_CONFIGS:
    _register_v2(_size)
