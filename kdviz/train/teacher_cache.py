"""Teacher logits computed once, and stored on disk for every later student of that teacher.

A distillation step pays for a teacher forward pass on top of the student's step. Tutorials and
ablation grids train many students from one teacher, so kdviz can run the teacher once per
(teacher weights, images, labels, normalisation, views) and keep its logits (kdviz.train.teacher decides
whether a run uses it, with which options, and whether it is kept on disk):

- exact, when training augmentation is off: one view, the plain image; a student then sees the
  very logits the online teacher would give it.
- K views, when training augmentation is on: K crops-and-flips per image, drawn once from a seed,
  with the teacher's logits of each; every epoch each image is shown in one of its K views,
  chosen at random, with that view's exact logits. The trade-off: the student sees K distinct
  augmentations per image instead of a fresh one every epoch (K = 8 is a common choice).
- top-k (optional, for large C): only the k largest logits per view are kept; the others are
  filled with one value that keeps the total probability of the dropped classes at the KD
  temperature, so the kept classes' probabilities are exact at that temperature.

Memory: K * N * C * 4 bytes (CIFAR-100, K = 8: 160 MB), or K * N * k * 12 bytes with top-k.
The file is keyed by a SHA-256 of the teacher's weights and of the data, and is never used
when either changed: a changed teacher or dataset gets a new key, hence a new file.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import astuple, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.augment import crop_flip, draw_crop_flip
from ..data.base import DatasetInfo, Split, normalize
from .checkpoint import atomic_save

FORMAT = "kdviz-teacher-logits-1"
BATCH_SIZE = 512  # images per teacher forward pass while the cache is built


def default_cache_dir() -> Path:
    """$KDVIZ_CACHE, else ~/.cache/kdviz/teacher_logits."""
    return Path(os.environ.get("KDVIZ_CACHE") or Path.home() / ".cache" / "kdviz" / "teacher_logits")


@dataclass(frozen=True)
class CacheOptions:
    """What a cache holds besides the teacher's weights and the images (kdviz.train.teacher chooses
    them for a run): `views` crop-and-flips of `padding` pixels per image, drawn once from `seed`
    (views=1, padding=0: the plain images, exact), and the `topk` largest logits per view, the
    others filled so that their total softmax mass at temperature `tau` is kept (topk=0: all C)."""

    views: int = 1
    padding: int = 0
    seed: int = 0
    topk: int = 0
    tau: float = 4.0

    @property
    def augmented(self) -> bool:
        return self.views > 1 or self.padding > 0


@dataclass
class TeacherLogitCache:
    """The teacher's logits of every image of a split in each of its views.

    values [K, N, k] float32 with indices [K, N, k] int64 and fill [K, N] (top-k), or values
    [K, N, C] with indices and fill None (all logits). offsets [K, N, 2] and flips [K, N] give
    the crop and flip of each view (None for the exact, unaugmented cache).
    """

    key: str
    num_classes: int
    values: torch.Tensor
    indices: torch.Tensor | None = None
    fill: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    flips: torch.Tensor | None = None
    padding: int = 0

    @property
    def num_views(self) -> int:
        return self.values.shape[0]

    def to(self, device) -> TeacherLogitCache:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return TeacherLogitCache(**moved)

    def logits(self, idx: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Teacher logits [B, C] of images idx [B] in views view [B] (both on the cache's device)."""
        values = self.values[view, idx]
        if self.indices is None:
            return values
        full = self.fill[view, idx].unsqueeze(1).expand(-1, self.num_classes).clone()
        return full.scatter_(1, self.indices[view, idx], values)

    def images(self, images: torch.Tensor, idx: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """uint8 images [B, C, H, W] (of split indices idx) shown in views view [B]."""
        if self.offsets is None:
            return images
        return crop_flip(images, self.offsets[view, idx], self.flips[view, idx], self.padding)

    def epoch_views(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """The view of each of n images for one epoch: int64 [n] uniform in [0, K), on the CPU."""
        if self.num_views == 1:
            return torch.zeros(n, dtype=torch.int64)
        return torch.randint(self.num_views, (n,), generator=generator)


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's state_dict: names, dtypes, shapes and values."""
    h = hashlib.sha256()
    _hash_weights(h, model)
    return h.hexdigest()


def _hash_weights(h, model: nn.Module) -> None:
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(repr((tensor.dtype, tuple(tensor.shape))).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())


def cache_key(teacher: nn.Module, split: Split, info: DatasetInfo, options: CacheOptions) -> str:
    """SHA-256 of everything the cached logits depend on."""
    h = hashlib.sha256()
    for part in (FORMAT, type(teacher).__name__, info.mean, info.std, info.image_shape, *astuple(options)):
        h.update(repr(part).encode())
    _hash_weights(h, teacher)
    for tensor in (split.images, split.labels):
        h.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def build_teacher_cache(
    teacher: nn.Module,
    split: Split,
    info: DatasetInfo,
    device: torch.device,
    options: CacheOptions = CacheOptions(),
    *,
    progress: bool = True,
    key: str | None = None,
) -> TeacherLogitCache:
    """Run `teacher` (in eval mode) over every view of every image of `split`, in batches of 512.

    options.views == 1 with options.padding == 0 is the exact cache of the plain images; otherwise
    each view is a crop-and-flip (padding pixels) drawn once from options.seed. options.topk > 0
    keeps the k largest logits, the rest filled so that their total softmax mass at temperature
    options.tau is kept.
    """
    views, padding, seed, topk, tau = astuple(options)
    was_training = teacher.training
    teacher.eval()
    offsets = flips = None
    if options.augmented:
        drawn = [
            draw_crop_flip(len(split), padding, generator=torch.Generator().manual_seed(seed * 7919 + v))
            for v in range(views)
        ]
        offsets = torch.stack([o for o, _ in drawn]).to(device)
        flips = torch.stack([f for _, f in drawn]).to(device)
    images = split.images.to(device)
    chunks: list[list[torch.Tensor]] = [[] for _ in range(views)]
    steps = [(v, s) for v in range(views) for s in range(0, len(split), BATCH_SIZE)]
    try:
        for v, start in tqdm(steps, desc="teacher logits", disable=not progress, leave=False):
            end = start + BATCH_SIZE
            batch = images[start:end]
            if options.augmented:
                batch = crop_flip(batch, offsets[v, start:end], flips[v, start:end], padding)
            chunks[v].append(teacher(normalize(batch, info)).float())
    finally:
        teacher.train(was_training)
    logits = torch.stack([torch.cat(c) for c in chunks])  # [K, N, C]
    key = key or cache_key(teacher, split, info, options)
    num_classes = logits.shape[-1]
    if not 0 < topk < num_classes:
        return TeacherLogitCache(key, num_classes, logits, offsets=offsets, flips=flips, padding=padding)
    values, indices = logits.topk(topk, dim=-1)
    rest = logits.scatter(-1, indices, float("-inf"))
    # exp(fill / tau) * (C - k) equals the dropped classes' total exp(z / tau).
    fill = tau * (torch.logsumexp(rest / tau, dim=-1) - math.log(num_classes - topk))
    return TeacherLogitCache(key, num_classes, values, indices, fill, offsets=offsets, flips=flips, padding=padding)


def load_or_build_teacher_cache(
    teacher: nn.Module,
    split: Split,
    info: DatasetInfo,
    device: torch.device,
    options: CacheOptions = CacheOptions(),
    *,
    cache_dir: str | os.PathLike | None = None,
    write: bool = True,
    progress: bool = True,
) -> TeacherLogitCache:
    """The cache for (teacher, split, options) from `cache_dir` (default: default_cache_dir()) if
    a file with its key is there, else built (and, when `write`, saved atomically there)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(teacher, split, info, options)
    path = folder / f"{key}.pt"
    if path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged file is only a cache miss: it is rebuilt and replaced
            stored = {}
        if stored.get("format") == FORMAT and stored.get("key") == key:
            return TeacherLogitCache(**{k: v for k, v in stored.items() if k != "format"}).to(device)
    cache = build_teacher_cache(teacher, split, info, device, options, key=key, progress=progress)
    if write:
        try:
            atomic_save({"format": FORMAT, **vars(cache.to("cpu"))}, path)
        except OSError as e:  # a folder that is a file, read-only or full: the cache only saves time
            warnings.warn(
                f"cannot keep the teacher's logits in the cache folder {folder} ({e.strerror or e}); training "
                "goes on from the logits in memory. Pass another cache_dir (--cache-dir) to keep them.",
                stacklevel=2,
            )
    return cache.to(device)
