"""VGG8 and VGG13 with batch norm, as in the CRD benchmark (RepDistiller `models/vgg.py`, `vgg8_bn`, `vgg13_bn`).

Five blocks of 3x3 conv (with bias) + BN + ReLU; max-pools after the first three blocks (and after the fourth
for inputs of 64 px or more, which is what the reference does for 64 px Tiny ImageNet), global average pooling
over the last 512-channel map, and a single linear classifier (no VGG fully connected head).
"""
from __future__ import annotations

import torch
from torch import nn

from . import MODELS
from .resnet_cifar import init_conv_bn

CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}


def _block(c_in: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in widths:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        c_in = c
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, config: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int = 3):
        super().__init__()
        blocks, c_in = [], in_channels
        for widths in config:
            blocks.append(_block(c_in, widths))
            c_in = widths[-1]
        self.blocks = nn.ModuleList(blocks)
        self.maxpool = nn.MaxPool2d(2, 2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c_in, num_classes)
        self.feature_dim = c_in
        init_conv_bn(self)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """x [B, C_in, H, W] -> logits [B, num_classes] (and pooled features [B, 512] if asked)."""
        large = x.shape[-2] >= 64
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < 3 or (i == 3 and large):
                x = self.maxpool(x)
        features = self.pool(x)
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


def _register(name: str) -> None:
    def factory(num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        return VGG(CONFIGS[name], num_classes, in_channels=image_shape[0])

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"CRD's {name} (batch-norm variant): block widths {CONFIGS[name]}."
    MODELS.register(name)(factory)


for _name in CONFIGS:
    _register(_name)
