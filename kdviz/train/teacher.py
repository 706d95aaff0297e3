"""The teacher as the training step sees it: a source of logits (and features) for each batch.

`resolve_teacher` turns what a user passes as teacher= (a TrainResult, a module, a checkpoint path,
a published teacher of `kdviz.models.published`) into a `Teacher`: the module in eval mode on the
device, checked against the student's data
(dataset, image shape where it is recorded, class count) and identified by its checkpoint path
and a SHA-256 of its weights, which config.json and last.pt record so that a resume with another
teacher is refused. `teacher_source` is kdviz's one decision of where the step's teacher logits
come from (cached or online, in memory or also on disk, which views, which temperature), and
the `TeacherSource` it returns gives the step its teacher, which it asks batch by batch:

- `Teacher` runs the module on the very batch the student sees (online);
- `CachedTeacher` (teacher_cache, by default where it is exact) looks the logits up in a cache computed once
  (kdviz.train.teacher_cache). When training augmentation is on, it also chooses each image's
  view for the epoch (`chooses_views`), so that the student sees the images the logits are of.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.base import DatasetSplits
from ..data.loader import iterate_batches
from ..losses import Objective
from ..models.published import PublishedTeacher
from .checkpoint import load_model
from .config import TrainConfig
from .result import TrainResult
from .teacher_cache import CacheOptions, load_or_build_teacher_cache, weights_sha256

TeacherLike = nn.Module | TrainResult | PublishedTeacher | str | Path | None
# Training splits of fewer images keep their teacher cache in memory only (their teacher pass takes
# seconds), unless train() is given a cache_dir; larger ones also store it on disk.
DISK_CACHE_IMAGES = 10_000


class Teacher:
    """An online teacher: `module` (eval mode, on the training device) runs on every batch.

    checkpoint: the file it was loaded from (None for a module passed in Python); label: how
    messages name it.
    """

    chooses_views = False  # the student's batches are augmented as usual, and the teacher sees them

    def __init__(self, module: nn.Module, checkpoint: str | None, label: str):
        self.module, self.checkpoint, self.label = module, checkpoint, label

    @functools.cached_property
    def sha256(self) -> str:
        return weights_sha256(self.module)

    @property
    def identity(self) -> dict:
        """What config.json and last.pt record: {"checkpoint": path or None, "sha256": hex digest of the weights}."""
        return {"checkpoint": self.checkpoint, "sha256": self.sha256}

    def start_epoch(self, n: int, generator: torch.Generator) -> None:
        """Called before each training epoch over n images; `generator` is the run's augmentation generator."""

    def __call__(self, x: torch.Tensor, idx: torch.Tensor, features: bool = False) -> tuple[torch.Tensor, dict | None]:
        """Teacher logits [B, C] of the normalised batch x [B, C_in, H, W] (of training images idx [B]),
        and when `features` its named stages {name: [B, ...]} (`kdviz/models/stages.py`; "pool" is
        the penultimate features [B, D_t]), else None."""
        with torch.inference_mode():
            logits, stages = self.module(x, return_stages=True) if features else (self.module(x), None)
        # Clones are ordinary tensors again, which autograd accepts beside the student's outputs.
        return logits.clone(), ({k: v.clone() for k, v in stages.items()} if stages is not None else None)


class CachedTeacher(Teacher):
    """A teacher whose logits come from a TeacherLogitCache: each epoch shows every image in one of
    its cached views, drawn at random, with that view's exact logits."""

    chooses_views = True

    def __init__(self, teacher: Teacher, cache):
        super().__init__(teacher.module, teacher.checkpoint, f"{teacher.label} (its cached logits)")
        self.cache = cache
        self._views: torch.Tensor | None = None  # [N] int64 on the device: this epoch's view of each image

    def start_epoch(self, n: int, generator: torch.Generator) -> None:
        views = self.cache.epoch_views(n, generator).to(self.cache.values.device)
        if self._views is None:
            self._views = views
        else:  # in place: a step captured as a graph (kdviz.train.step) reads the same tensor every epoch
            self._views.copy_(views)

    def images(self, images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """uint8 images [B, C, H, W] of training images idx [B], shown in this epoch's views."""
        return self.cache.images(images, idx, self._views[idx])

    def __call__(self, x, idx, features=False):
        return self.cache.logits(idx, self._views[idx]), None


@dataclass(frozen=True)
class TeacherSource:
    """Where a run's step gets the teacher's logits, decided once (`teacher_source`): from the
    online teacher (cached False), or from a cache of `options` that is read from `folder` (None:
    the default folder) when it holds one, else built and, when `keep`, stored there for the next
    student of the teacher. `cached` is also what config.json records as teacher_cache."""

    cached: bool
    options: CacheOptions | None = None
    folder: Path | None = None
    keep: bool = False

    def teacher(self, online: Teacher, data: DatasetSplits, device: torch.device, *, main: bool, progress: bool):
        """The Teacher the step reads: `online` itself, or its logits of every training view loaded
        or computed now (stored only by the `main` process)."""
        if not self.cached:
            return online
        cache = load_or_build_teacher_cache(
            online.module,
            data.train,
            data.info,
            device,
            self.options,
            cache_dir=self.folder,
            write=main and self.keep,
            progress=progress and main,
        )
        return CachedTeacher(online, cache)


def teacher_source(cfg: TrainConfig, objective: Objective, data: DatasetSplits, cache_dir) -> TeacherSource:
    """kdviz's one decision of where the teacher's logits come from, for training on `data` with
    `objective` and `cfg`: cached when cfg.teacher_cache is True, or when it is None (kdviz
    decides) exactly when the cache is exact: the training images are not augmented and no term
    reads the teacher's features; in memory, and also on disk (in `cache_dir`, default
    $KDVIZ_CACHE or ~/.cache/kdviz/teacher_logits) when a cache_dir is given or the training split
    has DISK_CACHE_IMAGES images or more; with K = cfg.cache_views fixed views per image when the
    images are augmented, the top cfg.cache_topk logits kept at the temperature of the
    distillation terms."""
    cached = cfg.teacher_cache
    if cached is None:
        cached = objective.needs_teacher and not objective.reads_teacher_features and not cfg.augmented(data.info)
    if not (cached and objective.needs_teacher):  # (an objective without a teacher has nothing to cache)
        return TeacherSource(cached)
    if objective.reads_teacher_features:
        raise ValueError(
            "the teacher cache holds logits only, and a term of the objective "
            f"{objective.describe()!r} reads the teacher's features, so it needs the online teacher; "
            "train with teacher_cache=False"
        )
    if cfg.cache_topk and any(t.params.get("logit_std") for t in objective.terms.values()):
        raise ValueError(
            f"cache_topk={cfg.cache_topk} keeps only the largest teacher logits, but logit_std standardizes "
            "with the mean and std of all of them; train with cache_topk=0 (the cache then holds every logit, "
            "exactly, and the term standardizes them as it reads them)"
        )
    augmented = cfg.augmented(data.info)
    # With top-k, the dropped classes' mass is kept at the temperature of the distillation terms.
    taus = [t.params["tau"] for t in objective.terms.values() if t.needs_teacher and "tau" in t.params]
    options = CacheOptions(
        views=cfg.cache_views if augmented else 1,
        padding=data.info.augment_padding if augmented else 0,
        seed=cfg.seed,
        topk=cfg.cache_topk,
        tau=taus[0] if taus else 4.0,
    )
    # A small split's teacher pass takes seconds: its logits stay in memory unless a folder is given.
    keep = cache_dir is not None or len(data.train) >= DISK_CACHE_IMAGES
    return TeacherSource(True, options, Path(cache_dir) if cache_dir is not None else None, keep)


def resolve_teacher(
    teacher: TeacherLike, objective: Objective, data: DatasetSplits, device: torch.device
) -> Teacher | None:
    """The online Teacher of `teacher` for training on `data` with `objective`, checked; None when the
    objective does not distill (a teacher is then refused, as it would go unused)."""
    if not objective.needs_teacher:
        if teacher is not None:
            raise ValueError(
                f"a teacher was given but the objective {objective.describe()!r} has no distillation term; add e.g. 'kd'"
            )
        return None
    if teacher is None:
        raise ValueError(
            f"the objective {objective.describe()!r} distills, so it needs teacher= (a TrainResult, a model, a checkpoint "
            "path or kd.load_teacher(...) of a published one)"
        )
    module, checkpoint, label, image_shape = _unpack(teacher, data, device)
    if image_shape is not None and tuple(image_shape) != tuple(data.info.image_shape):
        raise ValueError(
            f"the teacher {label} was trained on images of shape {tuple(image_shape)}, {data.info.name} has "
            f"{tuple(data.info.image_shape)}; use a teacher trained on these images"
        )
    module = module.to(device).eval()
    x, _ = next(iterate_batches(data.val, data.info, 2, device))
    with torch.no_grad():
        c = module(x).shape[1]
    if c != data.num_classes:
        raise ValueError(
            f"the teacher predicts {c} classes but {data.info.name} has {data.num_classes}; use a teacher trained on this dataset"
        )
    return Teacher(module, checkpoint, label)


def _unpack(teacher: TeacherLike, data: DatasetSplits, device) -> tuple[nn.Module, str | None, str, tuple | None]:
    """(module, checkpoint path or None, label, image shape it was trained on or None if unknown)."""
    if isinstance(teacher, TrainResult):
        if teacher.info.name != data.info.name:
            raise ValueError(
                f"teacher was trained on {teacher.info.name!r}, the student on {data.info.name!r}; use a teacher of the same dataset"
            )
        best = teacher.out_dir / "best.pt" if teacher.out_dir is not None else None
        checkpoint = str(best) if best is not None and best.is_file() else None
        return teacher.model, checkpoint, f"{teacher.name!r}", teacher.info.image_shape
    if isinstance(teacher, PublishedTeacher):
        if teacher.dataset != data.info.name:
            raise ValueError(
                f"the published teacher {teacher.path} was trained on {teacher.dataset!r}, the student trains on "
                f"{data.info.name!r}; distill on {teacher.dataset}"
            )
        return teacher.model, teacher.path, f"{teacher.path} ({teacher.source} {teacher.name})", teacher.image_shape
    if isinstance(teacher, (str, Path)):
        module, ckpt = load_model(teacher, device)
        if ckpt["dataset"] != data.info.name:
            raise ValueError(
                f"teacher checkpoint {teacher} is for dataset {ckpt['dataset']!r}, the student trains on {data.info.name!r}"
            )
        return module, str(teacher), str(teacher), ckpt["model"]["image_shape"]
    label = f"({type(teacher).__name__} module)"
    warnings.warn(
        f"the teacher is a bare {type(teacher).__name__} module, which records no dataset or image shape: kdviz "
        f"checks only that it predicts {data.num_classes} classes, not that it was trained on {data.info.name}'s "
        f"{'x'.join(map(str, data.info.image_shape))} images. Pass its TrainResult or checkpoint path to have that checked.",
        stacklevel=4,
    )
    return teacher, None, label, None


def check_same_teacher(last: dict, teacher: Teacher | None, where: Path) -> None:
    """Refuse to resume from `last` (the last.pt at `where`) with a teacher other than the one the run
    started with: the student would learn some epochs from one teacher and the rest from another."""
    if teacher is None:  # no teacher now, so none then either: the objectives, compared already, agree
        return
    if "teacher" not in last:
        warnings.warn(
            f"{where} records no teacher (an older kdviz wrote it), so kdviz cannot check that the run resumes "
            f"with the teacher it started with; it resumes with {_describe(teacher.identity)}",
            stacklevel=2,
        )
    elif last["teacher"] is None or last["teacher"]["sha256"] != teacher.sha256:
        raise ValueError(
            f"cannot resume {where.parent}: it was trained from teacher {_describe(last['teacher'])}, this run was given "
            f"{_describe(teacher.identity)}; resume with the teacher it started with, or choose another out_dir"
        )


def _describe(identity: dict | None) -> str:
    if identity is None:
        return "none"
    return f"{identity['checkpoint'] or 'a module passed in Python'} (weights sha256 {identity['sha256'][:12]})"
