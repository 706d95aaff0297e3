"""Small models for 8x8 and 28x28 inputs: a CNN with a width knob and an MLP.

Both take any number of channels and classes, and can return their penultimate features or their
named stages (`stages.py`) too.
"""

from __future__ import annotations

import torch
from torch import nn

from .stages import CONV_STAGES, model_outputs


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks of width w, 2w, 4w, two 2x max-pools, global average pooling.

    The global pooling adapts to any input size, so one class serves 8x8 digits and 28x28 MNIST.
    Stages on [H, W] inputs (`stages.py`): stage1 [w, H, W], stage2 [2w, H/2, W/2] and stage3
    [4w, H/4, W/4] (after each max-pool; sizes rounded up), pool [4w].
    """

    feature_stages = CONV_STAGES
    # Index in `features` of the layer ending each stage (its layer names, so checkpoints, stay as they were).
    _STAGE_AFTER = {0: "stage1", 2: "stage2", 4: "stage3", 6: "pool"}

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width),
            _conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2, ceil_mode=True),
            _conv_bn_relu(2 * width, 4 * width),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        """x [B, C_in, H, W] -> logits [B, num_classes] (and features [B, 4w], or all the named stages,
        if asked)."""
        stages = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._STAGE_AFTER:
                stages[self._STAGE_AFTER[i]] = x
        return model_outputs(self.classifier(x), stages, return_features, return_stages)


class MLP(nn.Module):
    """Flatten, `depth` hidden ReLU layers of size `hidden`, a linear classifier.

    Stages (`stages.py`): hidden1 .. hidden<depth> [hidden] (after each ReLU), and pool, the last of them.
    """

    def __init__(self, num_classes: int, in_features: int, hidden: int = 64, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        size = in_features
        for _ in range(depth):
            layers += [nn.Linear(size, hidden), nn.ReLU(inplace=True)]
            size = hidden
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(size, num_classes)
        self.feature_stages = (*(f"hidden{i + 1}" for i in range(depth)), "pool")

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        """x [B, C, H, W] -> logits [B, num_classes] (and features [B, hidden], or all the named stages,
        if asked)."""
        stages = {}
        x = self.features[0](x)
        for i, name in enumerate(self.feature_stages[:-1]):
            x = stages[name] = self.features[2 + 2 * i](self.features[1 + 2 * i](x))
        stages["pool"] = x
        return model_outputs(self.classifier(x), stages, return_features, return_stages)
