"""Training hyper-parameters in one validated dataclass, and the learning-rate schedules."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch

from ..data.base import DatasetInfo
from ..registry import Registry, check_keywords

SCHEDULES: Registry = Registry("schedule")
LAST_BATCH = ("keep", "drop")


@dataclass
class TrainConfig:
    """Defaults run in seconds on a laptop CPU on digits."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True  # the CRD benchmark uses plain momentum: its recipes set this to false
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()  # epochs at which "multistep" multiplies the lr by gamma
    gamma: float = 0.1
    warmup_epochs: int = 0
    seed: int = 0
    icc_tau: float = 4.0  # temperature of the per-epoch ICC snapshot and secondary std in the history
    augment: bool = True  # the dataset's training augmentation (crop + flip for CIFAR-like data), if it has one
    # amp and compile act on CUDA only (elsewhere they are ignored, so CPU results never depend on
    # them). channels_last (NHWC memory) acts on every device; None (the default) turns it on for
    # convolutional models on CPUs, where oneDNN's NHWC convolutions measured faster for every model
    # measured (NHWC/NCHW step 0.70-0.94: benchmarks/bench_channels_last.py), and off elsewhere.
    # Its float results differ from NCHW's in the last digits only.
    amp: bool = False  # bf16 autocast of forward passes and losses
    channels_last: bool | None = None  # NHWC memory layout for convolutions
    compile: bool = False  # torch.compile the trained model
    # Under torchrun, BatchNorm statistics of the global batch instead of each process's slice
    # (kdviz.train.distributed.SyncBatchNorm): for BatchNorm models with small per-process batches.
    sync_bn: bool = False
    # Teacher logits computed once (kdviz.train.teacher_cache) instead of a teacher forward pass
    # every step. None (the default) caches exactly when the cache is exact: the training images
    # are not augmented and no term reads the teacher's features. True with augmentation caches
    # `cache_views` fixed augmented views per image (a different training: see docs/performance.md); False
    # never caches. kdviz.train.teacher.teacher_source decides, and where the logits are kept.
    teacher_cache: bool | None = None
    cache_views: int = 8
    cache_topk: int = 0  # keep only the top-k teacher logits per image (0: all C), for large C
    # Evaluation, most of a small run's time. Validation every epoch (it chooses the epoch), on a
    # fixed random subset of val_subset images when > 0 (drawn from the seed); the test split every
    # epoch only with eval_test (test curves), else once, on the weights chosen on validation.
    eval_test: bool = False
    val_subset: int = 0
    # The trailing batch of fewer than batch_size images: "keep" trains on it (a batch of 1 joins the
    # one before), "drop" leaves it out, so that every step has the same shapes, as a step captured
    # as one graph needs (kdviz.train.step); with shuffling the images left out differ every epoch.
    last_batch: str = "keep"

    def __post_init__(self):
        self.milestones = tuple(int(m) for m in self.milestones)
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (0 <= self.weight_decay < math.inf, f"weight_decay must be finite and >= 0, got {self.weight_decay}"),
            (
                0 <= self.warmup_epochs < self.epochs,
                f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}",
            ),
            (0 < self.icc_tau < math.inf, f"icc_tau must be finite and > 0, got {self.icc_tau}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.cache_views >= 1, f"cache_views must be >= 1, got {self.cache_views}"),
            (self.cache_topk >= 0, f"cache_topk must be >= 0 (0 keeps all logits), got {self.cache_topk}"),
            (
                self.last_batch in LAST_BATCH,
                f"last_batch must be one of {', '.join(map(repr, LAST_BATCH))}, got {self.last_batch!r}",
            ),
            (
                self.val_subset >= 0,
                f"val_subset must be >= 0 (0 evaluates every validation image), got {self.val_subset}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        SCHEDULES.get(self.schedule)

    @classmethod
    def from_kwargs(cls, **kwargs) -> TrainConfig:
        check_keywords("training settings", kwargs, [f.name for f in fields(cls)])
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return asdict(self)

    def augmented(self, info: DatasetInfo) -> bool:
        """Whether the training images are augmented: augment on and the dataset has an augmentation."""
        return self.augment and info.augment == "crop_flip"

    def resolved(self, model: torch.nn.Module, device: torch.device) -> TrainConfig:
        """A copy with channels_last decided, if left to kdviz (None), for training `model` on
        `device`, as config.json records it: on for a convolutional model on a CPU. (teacher_cache,
        the other setting left to kdviz, is decided by kdviz.train.teacher.teacher_source.)"""
        channels_last = self.channels_last
        if channels_last is None:
            convolutional = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
            channels_last = device.type == "cpu" and convolutional
        return replace(self, channels_last=channels_last)


@SCHEDULES.register("cosine")
def _cosine(cfg: TrainConfig, epoch: int) -> float:
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))


@SCHEDULES.register("multistep")
def _multistep(cfg: TrainConfig, epoch: int) -> float:
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@SCHEDULES.register("constant")
def _constant(cfg: TrainConfig, epoch: int) -> float:
    return 1.0


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Multiplier of cfg.lr during `epoch` (0-based): linear warm-up, then the named schedule."""
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    return SCHEDULES.get(cfg.schedule)(cfg, epoch)


def make_optimizer(params, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD over `params` (the model's, then the objective's trainable terms') and its lr schedule."""
    opt = torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(cfg, epoch))
    return opt, sched
