"""VGG8 and VGG13 with batch norm, as in the CRD benchmark (RepDistiller `models/vgg.py`, `vgg8_bn`, `vgg13_bn`).

Five blocks of 3x3 conv (with bias) + BN + ReLU; max-pools after the first three blocks (and after the fourth
for inputs of 64 px or more, which is what the reference does for 64 px Tiny ImageNet), global average pooling
over the last 512-channel map, and a single linear classifier (no VGG fully connected head).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS
from .resnet_cifar import init_conv_bn
from .stages import CONV_STAGES, model_outputs

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
    """Stages at 32 px (`stages.py`): stage1 [128, 16, 16] and stage2 [256, 8, 8] (the second and third
    blocks, before their max-pool), stage3 [512, 4, 4] (the last block's map, the one that is pooled),
    pool [512]. At 64 px and above the extra max-pool keeps stage3 at a sixteenth of the input."""

    feature_stages = CONV_STAGES
    _STAGE_AFTER = {1: "stage1", 2: "stage2", 4: "stage3"}  # block index -> the stage it ends

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

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        """x [B, C_in, H, W] -> logits [B, num_classes] (and pooled features [B, 512], or all the named
        stages, if asked)."""
        large = x.shape[-2] >= 64
        stages = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._STAGE_AFTER:
                stages[self._STAGE_AFTER[i]] = x
            if i < 3 or (i == 3 and large):
                x = self.maxpool(x)
        features = stages["pool"] = self.pool(x)
        return model_outputs(self.classifier(features), stages, return_features, return_stages)


def _register(name: str) -> None:
    def factory(num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        return VGG(CONFIGS[name], num_classes, in_channels=image_shape[0])

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"CRD's {name} (batch-norm variant): block widths {CONFIGS[name]}."
    MODELS.register(name)(factory)


for _name in CONFIGS:
    _register(_name)
