"""The published CIFAR-100 teachers of RepDistiller and mdistiller, loaded into kdviz's zoo models.

Every recent CIFAR-100 KD paper starts from the same teachers: CRD's (github.com/HobbitLong/RepDistiller,
`scripts/fetch_pretrained_teachers.sh`), which mdistiller re-hosts as `cifar_teachers.tar`
(github.com/megvii-research/mdistiller/releases/tag/checkpoints). Each is `<name>_vanilla/ckpt_epoch_240.pth`,
a torch.save'd dict whose "model" key holds the state_dict of the project's own model definition
(`models/resnet.py`, `wrn.py`, `vgg.py`; mdistiller's `mdistiller/models/cifar/` are the same classes
with the same names). Their networks compute what kdviz's do (kdviz/models/resnet_cifar.py, wrn.py,
vgg.py); only the parameter names differ, and `RENAMES` maps them:

    ResNet  conv1, bn1 (the stem)           -> stem.0, stem.1
            layerN.i.downsample.0 / .1      -> layerN.i.shortcut.0 / .1
            fc                              -> classifier
    WRN     blockN.layer.i                  -> blockN.i
            blockN.layer.i.convShortcut     -> blockN.i.shortcut
            bn1 (the final BN), fc          -> bn, classifier
    VGG     blockN.j (conv, BN of block N)  -> blocks.N.j          (classifier stays classifier)

A file whose names or shapes do not fit the model is refused with the first name that does not.
CRD's `ResNet50` (its `resnetv2.py`, a bottleneck ResNet) has no kdviz counterpart and is refused.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import build_model
from .resnet_cifar import CifarResNet
from .vgg import VGG
from .wrn import WideResNet

SOURCES = ("repdistiller", "mdistiller")

# The published teachers: kdviz name -> CIFAR-100 top-1 (%) of CRD's table (RepDistiller README, "Teacher"
# row), which the papers that start from these files cite; mdistiller's README prints no teacher accuracy.
PUBLISHED_TOP1 = {"resnet56": 72.34, "resnet110": 74.31, "resnet32x4": 79.42, "wrn_40_2": 75.61, "vgg13": 74.64}
CIFAR100 = {"dataset": "cifar100", "num_classes": 100, "image_shape": (3, 32, 32)}

# (published name pattern, kdviz name) per kdviz model class, applied in order to each name.
RENAMES: dict[type, list[tuple[str, str]]] = {
    CifarResNet: [
        (r"^conv1\.", "stem.0."),
        (r"^bn1\.", "stem.1."),
        (r"\.downsample\.", ".shortcut."),
        (r"^fc\.", "classifier."),
    ],
    WideResNet: [
        (r"^(block\d)\.layer\.", r"\1."),
        (r"\.convShortcut\.", ".shortcut."),
        (r"^bn1\.", "bn."),
        (r"^fc\.", "classifier."),
    ],
    VGG: [(r"^block(\d)\.", r"blocks.\1.")],
}


@dataclass
class PublishedTeacher:
    """A published teacher in a kdviz model: pass it as teacher= (kd.distill) like a TrainResult.

    model: the kdviz zoo model (eval mode) holding the file's weights; name: its kdviz name;
    published_top1: the CIFAR-100 test top-1 (%) the file should show, None for a model kdviz has no
    published number of; dataset and image_shape: what it was trained on (CIFAR-100, 3x32x32).
    """

    model: nn.Module
    name: str
    source: str
    path: str
    published_top1: float | None
    dataset: str = CIFAR100["dataset"]
    image_shape: tuple[int, int, int] = CIFAR100["image_shape"]


def load_teacher(model_name: str, path: str | os.PathLike, source: str = "repdistiller") -> PublishedTeacher:
    """Load a RepDistiller or mdistiller CIFAR-100 checkpoint (e.g. resnet32x4_vanilla/ckpt_epoch_240.pth)
    into kdviz's `model_name` (resnet56, resnet110, resnet32x4, wrn_40_2, vgg13, or another CRD zoo
    ResNet, WRN or VGG saved by those projects), checking every name and shape.

    source: "repdistiller" or "mdistiller" (whose teachers tarball holds the same files). Also read:
    a state_dict saved from nn.DataParallel ("module." names) and, for mdistiller, a whole distiller
    checkpoint (its `best`/`latest` files), whose student is taken.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown teacher format {source!r}; valid: {', '.join(SOURCES)}")
    if model_name == "ResNet50":
        raise ValueError(
            "kdviz has no ResNet50: CRD's ResNet50 teacher (RepDistiller models/resnetv2.py, a bottleneck ResNet "
            f"for 32 px images) has no counterpart in kdviz's zoo; the published teachers it loads: {', '.join(PUBLISHED_TOP1)}"
        )
    model = build_model(model_name, CIFAR100["num_classes"], CIFAR100["image_shape"])
    renames = RENAMES.get(type(model))
    if renames is None:
        raise ValueError(
            f"model {model_name!r} has no RepDistiller/mdistiller layout in kdviz; it loads their CIFAR ResNets "
            f"(resnet8 ... resnet110, resnet8x4, resnet32x4), WRNs (wrn_*) and VGGs (vgg8, vgg13)"
        )
    path = Path(path)
    published = _published_state(path, source)
    model.load_state_dict(_mapped(published, model.state_dict(), renames, model_name, path))
    return PublishedTeacher(model.eval(), model_name, source, str(path), PUBLISHED_TOP1.get(model_name))


def _published_state(path: Path, source: str) -> dict[str, torch.Tensor]:
    """The state_dict in a published checkpoint file: its "model" entry, without DataParallel's
    "module." (and, for an mdistiller distiller checkpoint, the student's)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no teacher checkpoint at {path}; get the CIFAR-100 teachers as docs/published_teachers.md says "
            "(e.g. cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth from mdistiller's cifar_teachers.tar)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError) as e:
        raise ValueError(
            f"{path} cannot be read as a {source} checkpoint of tensors ({str(e).splitlines()[0][:200]}); kdviz does "
            "not unpickle code, so files that hold Python objects (RepDistiller's <model>_last.pth keeps its "
            "argparse options) are refused: use the teacher's ckpt_epoch_240.pth or <model>_best.pth"
        ) from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"{path} is not a {source} checkpoint: it saves {{'model': state_dict, ...}}, this file holds {keys}; "
            "for a kdviz checkpoint pass --teacher (teacher=path) instead"
        )
    state = ckpt["model"]
    for prefix in ("module.", "student.") if source == "mdistiller" else ("module.",):
        if state and all(k.startswith(prefix) or k.startswith("teacher.") for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _mapped(published: dict, expected: dict, renames: list, model_name: str, path: Path) -> dict:
    """`published` under kdviz's names, checked name by name and shape by shape against `expected`
    (the kdviz model's state_dict): the first mismatch, in the model's order, is the error."""
    mapped = {}
    for name, tensor in published.items():
        ours = name
        for pattern, repl in renames:
            ours = re.sub(pattern, repl, ours)
        mapped[ours] = (name, tensor)
    hint = _folder_hint(path, model_name)
    for ours, want in expected.items():
        if ours not in mapped and ours.endswith("num_batches_tracked"):
            # PyTorch 0.4.0, which CRD used, saved no BN step counter; it is unused in eval and with a momentum.
            mapped[ours] = (ours, torch.zeros((), dtype=torch.long))
        if ours not in mapped:
            raise ValueError(
                f"{path} does not fit kdviz's {model_name}: it has no weights for {ours!r} (the first missing name); "
                f"is it a {model_name} checkpoint?{hint}"
            )
        name, tensor = mapped[ours]
        if tuple(tensor.shape) != tuple(want.shape):
            raise ValueError(
                f"{path} does not fit kdviz's {model_name}: {name!r} (kdviz {ours!r}) has shape {tuple(tensor.shape)}, "
                f"the model's is {tuple(want.shape)} (the first mismatch); is it a {model_name} checkpoint?{hint}"
            )
    extra = [name for ours, (name, _) in mapped.items() if ours not in expected]
    if extra:
        raise ValueError(
            f"{path} does not fit kdviz's {model_name}: it has weights {extra[0]!r} that the model lacks "
            f"(the first of {len(extra)}); is it a {model_name} checkpoint?{hint}"
        )
    return {ours: tensor for ours, (_, tensor) in mapped.items()}


def _folder_hint(path: Path, model_name: str) -> str:
    """The published files sit in <name>_vanilla/: name it when it is another model."""
    folder = path.parent.name
    if folder.endswith("_vanilla") and folder[: -len("_vanilla")] != model_name:
        return f" Its folder {folder!r} says {folder[: -len('_vanilla')]!r}."
    return ""
