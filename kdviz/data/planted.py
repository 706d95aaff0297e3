"""`planted`: generated images whose class structure, Bayes posterior and true ICC are known.

C classes in G groups (super-classes). Class k has a pixel pattern u_k = sqrt(s) v_g(k) + sqrt(1 - s) w_k
made of its group's smooth random pattern v and its own w (each standardised), so classes of one group
look alike when the within-group similarity s is high. A pixel of an image of class k is
17 * Binomial(15, theta_kp), theta_kp = sigmoid(u_kp / noise): 16 grey levels, independent pixels.
The observed label is the class, or with probability label_noise another class of its group.

Because pixels are independent given the class, the posterior is exact (docs/method.md §8):
clean logits a_k(x) = sum_p c_p W_kp + b_k (c = x / 17 the counts, W = u / noise,
b_k = -15 sum_p softplus(W_kp)), p(k | x) = softmax(a)_k, and with the label noise matrix T
p(y = j | x) = sum_k p(k | x) T[k, j]. The true ICC and the Bayes error are Monte Carlo means over
MC_PER_CLASS generated images of each class, with their standard errors.
"""

from __future__ import annotations

import functools
import math
import string
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import DatasetInfo, Split
from .registry import DATASETS, SIZES, DatasetSize

TRIALS = 15  # a pixel is 17 * Binomial(15, theta): the grey levels 0, 17, ..., 255
LEVEL = 255 // TRIALS
SMOOTH = 2.5  # the patterns' blur, in pixels: smooth patterns are learnable from a few hundred images
MC_PER_CLASS = 4000  # Monte Carlo images per class behind the true ICC and the Bayes error


@dataclass(frozen=True)
class Planted:
    """The generative model of `planted` (every parameter is a load_dataset("planted", ...) option
    except the split sizes). Deterministic: the same parameters give the same patterns."""

    classes: int = 12
    groups: int = 4
    similarity: float = 0.9  # s: the share of a class's pattern that its group shares
    noise: float = 3.0  # pixel logits are u / noise: larger is harder
    label_noise: float = 0.1  # chance that a label is another class of the same group
    image_size: int = 16
    data_seed: int = 0  # the patterns and the images; load_dataset's seed picks validation and subsets

    def __post_init__(self):
        if not (isinstance(self.classes, int) and 2 <= self.classes):
            raise ValueError(f"classes must be a whole number >= 2, got {self.classes!r}")
        if not (isinstance(self.groups, int) and 1 <= self.groups <= min(self.classes, 26)):
            raise ValueError(f"groups must be a whole number in [1, min(classes, 26)], got {self.groups!r}")
        if not 0 <= self.similarity < 1:
            raise ValueError(
                f"similarity must be in [0, 1) (1 would make a group's classes identical), got {self.similarity!r}"
            )
        if not self.noise > 0:
            raise ValueError(f"noise must be > 0, got {self.noise!r}")
        if not 0 <= self.label_noise < 1:
            raise ValueError(f"label_noise must be in [0, 1), got {self.label_noise!r}")
        if self.image_size not in (16, 28):
            raise ValueError(f"image_size must be 16 or 28 (the small zoo's input sizes), got {self.image_size!r}")

    @functools.cached_property
    def class_to_group(self) -> torch.Tensor:
        """int64 [C]: consecutive classes share a group, groups differ in size by at most one."""
        return torch.arange(self.classes) * self.groups // self.classes

    @functools.cached_property
    def weights(self) -> torch.Tensor:
        """W = u / noise, float64 [C, D] with D = image_size^2: the pixel logits of each class."""
        g = torch.Generator().manual_seed(self.data_seed)
        shared, own = (
            _smooth_patterns(self.groups, self.image_size, g),
            _smooth_patterns(self.classes, self.image_size, g),
        )
        u = math.sqrt(self.similarity) * shared[self.class_to_group] + math.sqrt(1 - self.similarity) * own
        return u / self.noise

    @functools.cached_property
    def noise_matrix(self) -> torch.Tensor:
        """T[k, j] = P(label j | class k), float64 [C, C]: 1 - label_noise on the diagonal, the rest
        shared evenly by the other classes of k's group (a class alone in its group keeps its label)."""
        same = self.class_to_group[:, None] == self.class_to_group[None, :]
        eye = torch.eye(self.classes, dtype=torch.bool)
        others = (same.sum(1, keepdim=True) - 1).double()  # [C, 1]: the other classes of k's group
        t = torch.where(same & ~eye, self.label_noise / others.clamp_min(1), 0.0).double()
        return t + torch.diag(torch.where(others.squeeze(1) > 0, 1 - self.label_noise, 1.0))

    def info(self) -> DatasetInfo:
        theta = torch.sigmoid(self.weights)
        # Exact moments of x / 255 = c / 15 over classes (uniform prior) and pixels.
        mean = float(theta.mean())
        second = float((theta * (1 - theta) / TRIALS + theta**2).mean())
        letters = string.ascii_uppercase
        groups = {
            letters[g]: tuple((self.class_to_group == g).nonzero().squeeze(1).tolist()) for g in range(self.groups)
        }
        names = [""] * self.classes
        for g, members in groups.items():
            for i, k in enumerate(members):
                names[k] = f"{g}{i + 1}"
        return DatasetInfo(
            name="planted",
            class_names=tuple(names),
            image_shape=(1, self.image_size, self.image_size),
            mean=(round(mean, 6),),
            std=(round(math.sqrt(second - mean**2), 6),),
            groups=groups,
        )

    def sample_counts(self, classes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Pixel counts c ~ Binomial(15, theta_k), int64 [N, D], of images of classes int64 [N], by
        inverting each pixel's CDF with one uniform draw."""
        theta = torch.sigmoid(self.weights)  # [C, D]
        k = torch.arange(TRIALS + 1, dtype=torch.float64)
        log_choose = torch.lgamma(torch.tensor(TRIALS + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(TRIALS - k + 1)
        log_pmf = log_choose + k * torch.log(theta)[..., None] + (TRIALS - k) * torch.log1p(-theta)[..., None]
        cdf = log_pmf.exp().cumsum(-1)  # [C, D, 16]
        u = torch.rand(theta.shape[1], len(classes), generator=generator, dtype=torch.float64)  # [D, N]
        counts = torch.empty(len(classes), theta.shape[1], dtype=torch.long)
        for c in classes.unique().tolist():  # one class at a time: [D, 16] CDFs, not [N, D, 16]
            chosen = classes == c
            counts[chosen] = torch.searchsorted(cdf[c], u[:, chosen], right=True).T
        return counts.clamp_max(TRIALS)

    def sample(self, n: int, generator: torch.Generator) -> Split:
        """n images (uint8 [n, 1, S, S]) of classes drawn uniformly, with their noisy labels."""
        classes = torch.randint(self.classes, (n,), generator=generator)
        counts = self.sample_counts(classes, generator)
        labels = torch.multinomial(self.noise_matrix[classes], 1, generator=generator).squeeze(1)
        images = (counts * LEVEL).to(torch.uint8).view(n, 1, self.image_size, self.image_size)
        return Split(images, labels)

    def bayes_logits(self, counts: torch.Tensor) -> torch.Tensor:
        """log p(label | x), float64 [N, C], of pixel counts [N, D] (the Bayes posterior's logits)."""
        w = self.weights
        clean = counts.double() @ w.T - TRIALS * F.softplus(w).sum(1)
        return torch.logsumexp(F.log_softmax(clean, 1).unsqueeze(2) + self.noise_matrix.log().unsqueeze(0), dim=1)

    @functools.cache  # noqa: B019  (the instance is frozen, hashable and lives as long as its data)
    def true_icc(self, tau: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The true ICC at tau and its Monte Carlo standard error, float64 [C, C] each.

        M_tau[j, i] = E[softmax(l(x) / tau)_i | label j], l the Bayes logits: the ICC a model with
        the Bayes posterior's logits has on the whole population. By Bayes' rule on the labels,
        M[j] = sum_k T[k, j] E_k / sum_k T[k, j], E_k the mean over images of clean class k: the
        label noise is averaged exactly, only the images are sampled.
        """
        probs = F.softmax(_monte_carlo(self) / tau, dim=2)  # [C clean, n, C]
        mean, var = probs.mean(1), probs.var(1)
        weight = self.noise_matrix / self.noise_matrix.sum(0, keepdim=True)  # [k clean, j label]
        return weight.T @ mean, (weight.T**2 @ var / MC_PER_CLASS).sqrt()

    @property
    def bayes_error(self) -> tuple[float, float]:
        """(the Bayes error 1 - E[max_j p(label j | x)], its Monte Carlo standard error)."""
        miss = 1 - _monte_carlo(self).exp().amax(2)  # [C, n]: the Bayes classifier's chance of a wrong label
        return float(miss.mean()), float(miss.var(1).mean().div(MC_PER_CLASS * self.classes).sqrt())

    def bayes_model(self) -> PlantedBayes:
        """The Bayes posterior as a model (its logits are log p(label | x)): the perfect teacher."""
        return PlantedBayes(self)

    @property
    def bayes_spec(self) -> dict:
        """How kdviz.models rebuilds bayes_model() ("planted_bayes"), as a checkpoint records it."""
        kwargs = {k: v for k, v in asdict(self).items() if k not in ("classes", "image_size")}
        shape = [1, self.image_size, self.image_size]
        return {"name": "planted_bayes", "kwargs": kwargs, "num_classes": self.classes, "image_shape": shape}


class PlantedBayes(nn.Module):
    """Bayes logits [B, C] of normalised images [B, 1, S, S] of `planted` (kdviz.models: "planted_bayes")."""

    def __init__(self, planted: Planted):
        super().__init__()
        info = planted.info()
        self.planted = planted
        self.register_buffer("scale", torch.tensor([info.mean[0], info.std[0]], dtype=torch.float64))

    def forward(self, x: torch.Tensor, return_features: bool = False, return_stages: bool = False):
        if return_features or return_stages:
            raise ValueError("the Bayes posterior has no features; distil it with logit terms only (kd, dkd, ...)")
        mean, std = self.scale
        # Back to the counts the image was made of (normalisation undone, rounded to the 16 levels).
        counts = ((x.flatten(1).double() * std + mean) * TRIALS).round().clamp(0, TRIALS)
        w = self.planted.weights.to(x.device)
        clean = counts @ w.T - TRIALS * F.softplus(w).sum(1)
        log_t = self.planted.noise_matrix.log().to(x.device)
        return torch.logsumexp(F.log_softmax(clean, 1).unsqueeze(2) + log_t.unsqueeze(0), dim=1).to(x.dtype)


@functools.lru_cache(maxsize=4)
def _monte_carlo(planted: Planted) -> torch.Tensor:
    """Bayes logits [C, MC_PER_CLASS, C] of MC_PER_CLASS generated images of each (clean) class,
    computed once per process for equal models."""
    g = torch.Generator().manual_seed(10_000 + planted.data_seed)
    classes = torch.arange(planted.classes).repeat_interleave(MC_PER_CLASS)
    return planted.bayes_logits(planted.sample_counts(classes, g)).view(planted.classes, MC_PER_CLASS, planted.classes)


def _smooth_patterns(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """n smooth random images (white noise blurred by a Gaussian of std SMOOTH pixels, wrapping around
    the edges), each standardised to mean 0 and std 1 over its pixels: float64 [n, size^2]."""
    raw = torch.randn(n, 1, size, size, generator=generator, dtype=torch.float64)
    radius = round(3 * SMOOTH)
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(r**2) / (2 * SMOOTH**2))
    kernel = (kernel[:, None] * kernel[None, :]) / kernel.sum() ** 2
    blurred = F.conv2d(F.pad(raw, (radius,) * 4, mode="circular"), kernel.view(1, 1, *kernel.shape)).flatten(1)
    return (blurred - blurred.mean(1, keepdim=True)) / blurred.std(1, keepdim=True)


@DATASETS.register("planted")
def planted(
    root: Path | None = None,
    *,
    n_images: int = 2000,
    n_test: int = 2000,
    classes: int = Planted.classes,
    groups: int = Planted.groups,
    similarity: float = Planted.similarity,
    noise: float = Planted.noise,
    label_noise: float = Planted.label_noise,
    image_size: int = Planted.image_size,
    data_seed: int = Planted.data_seed,
) -> tuple[DatasetInfo, Split, Split, None, Planted]:
    """(info, full train split of n_images, test split of n_test, None (validation is carved from the
    training split), the generative model); `root` is unused. The other options are Planted's."""
    for what, n in (("n_images", n_images), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{what} must be a whole number >= 1, got {n!r}")
    model = Planted(classes, groups, similarity, noise, label_noise, image_size, data_seed)
    g = torch.Generator().manual_seed(model.data_seed)
    train, test = model.sample(n_images, g), model.sample(n_test, g)
    return model.info(), train, test, None, model


def planted_size(*, n_images: int = 2000, classes: int = Planted.classes, **_options) -> DatasetSize:
    """What `planted` with these options holds, for checking an experiment's n_train at load."""
    return DatasetSize(n_images, classes)


SIZES["planted"] = planted_size
