"""Model registry: `build_model(name, num_classes, image_shape, **kwargs)`.

Each entry is a factory `(num_classes, image_shape, **kwargs) -> nn.Module`; the paper-scale
architectures register here the same way. The CRD benchmark's CIFAR model zoo (resnet8..resnet110, resnet8x4,
resnet32x4, wrn_*, vgg8/13, mobilenetv2, shufflenetv1, shufflenetv2_*) registers itself into `registry.MODELS`
when its modules are imported below. Every model's forward is
`forward(x, return_features=False, return_stages=False)`; `stages.py` describes the named stages.
"""

from __future__ import annotations

import inspect

from torch import nn

from ..data.planted import Planted, PlantedBayes
from ..registry import check_keywords
from . import mobilenetv2, resnet_cifar, shufflenet, vgg, wrn  # noqa: F401  (each registers its models)
from .registry import MODELS
from .small import MLP, SmallCNN
from .stages import stage_shapes


@MODELS.register("cnn")
def cnn(num_classes: int, image_shape: tuple[int, int, int], width: int = 16) -> nn.Module:
    return SmallCNN(num_classes, in_channels=image_shape[0], width=width)


@MODELS.register("mlp")
def mlp(num_classes: int, image_shape: tuple[int, int, int], hidden: int = 64, depth: int = 2) -> nn.Module:
    c, h, w = image_shape
    return MLP(num_classes, in_features=c * h * w, hidden=hidden, depth=depth)


@MODELS.register("planted_bayes")
def planted_bayes(
    num_classes: int,
    image_shape: tuple[int, int, int],
    groups: int = Planted.groups,
    similarity: float = Planted.similarity,
    noise: float = Planted.noise,
    label_noise: float = Planted.label_noise,
    data_seed: int = Planted.data_seed,
) -> nn.Module:
    """The Bayes posterior of the `planted` dataset with these options (Planted's fields; the classes
    and image size are the model's), as a model with no trainable parameters: a teacher, never trained."""
    return PlantedBayes(Planted(num_classes, groups, similarity, noise, label_noise, image_shape[-1], data_seed))


def build_model(name: str, num_classes: int, image_shape: tuple[int, int, int], **kwargs) -> nn.Module:
    """Build a registered model; kwargs are the architecture's own (e.g. width=32 for "cnn")."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    check_keywords(f"model {name!r}", kwargs, list(model_arguments(name)))
    return MODELS.get(name)(num_classes, tuple(image_shape), **kwargs)


def model_arguments(name: str) -> dict[str, object]:
    """A registered model's own keyword arguments (those after num_classes and image_shape) and
    their defaults, e.g. {"width": 16} for "cnn"."""
    parameters = list(inspect.signature(MODELS.get(name)).parameters.values())[2:]
    return {p.name: p.default for p in parameters}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "build_model", "count_parameters", "model_arguments", "stage_shapes", "SmallCNN", "MLP"]
