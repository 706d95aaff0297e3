"""Named stages: the feature maps inside a model that feature-based loss terms read.

Every model of the zoo lists its stages in `model.feature_stages` and returns them, as a dict
{name: tensor}, from `model(x, return_stages=True)` -> (logits, stages). The convolutional models
all name the same four, so that a term's default stages fit any pair, of one family or two:

- "stage1", "stage2", "stage3": [B, C_k, H_k, W_k], the outputs of the model's three resolution
  stages, from the highest resolution to the lowest (the layers CRD's code feeds to FitNet and AT);
- "pool": [B, D], the pooled penultimate features the classifier reads (what CRD contrasts).

Each model's docstring gives their shapes at 32 px. The MLP has no maps: its stages are the
hidden layers "hidden1", ..., "hidden<depth>" [B, hidden], and "pool", the last of them.
`stage_shapes` measures them for any model and input shape.
"""

from __future__ import annotations

import torch
from torch import nn

CONV_STAGES = ("stage1", "stage2", "stage3", "pool")


def model_outputs(logits: torch.Tensor, stages: dict[str, torch.Tensor], return_features: bool, return_stages: bool):
    """What a zoo model's forward returns: logits, (logits, stages) or (logits, stages["pool"])."""
    if return_stages:
        return logits, stages
    return (logits, stages["pool"]) if return_features else logits


def run_stages(model: nn.Module, x: torch.Tensor, return_features: bool, return_stages: bool):
    """The forward of a model built as stem, blocks, head, pool and classifier, whose
    `_stage_after` maps a block's index to the stage name it ends (the ShuffleNets, MobileNetV2):
    the blocks are run in turn, recording the named stages, then the head, pooling and classifier."""
    stages = {}
    x = model.stem(x)
    for i, block in enumerate(model.blocks):
        x = block(x)
        if i in model._stage_after:
            stages[model._stage_after[i]] = x
    features = stages["pool"] = model.pool(model.head(x))
    return model_outputs(model.classifier(features), stages, return_features, return_stages)


@torch.no_grad()
def stage_shapes(model: nn.Module, image_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """{stage name: shape without the batch dimension} of `model` on [2, *image_shape] inputs.

    Runs one forward pass on zeros in eval mode (so batch-norm statistics are untouched) on the
    model's own device, and restores the model's mode.
    """
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()
        _, stages = model(torch.zeros(2, *image_shape, device=param.device, dtype=param.dtype), return_stages=True)
    finally:
        model.train(was_training)
    return {name: tuple(t.shape[1:]) for name, t in stages.items()}
