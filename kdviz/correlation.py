"""ICC matrices and expressiveness measures of a model over a whole split (docs/method.md §1 and §4).

Everything is accumulated as sums and counts and divided once, so the numbers do not depend
on the batch size and stay right when processes all-reduce their sums before dividing.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .data.base import DatasetInfo, DatasetSplits
from .deprecations import renamed, warn_renamed
from .device import resolve_device
from .inference import predict_logits
from .losses.checks import check_tau
from .losses.icc import class_sums, icc_from_sums, nontarget_log_probs, secondary_icc


def secondary_probs(logits: torch.Tensor, targets: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """s_ij = p_ij / (1 - p_iy) for j != y_i, 0 at the target: logits [B, C] -> [B, C].

    Computed as the softmax of the non-target logits, which equals the ratio but stays defined
    when p_iy rounds to 1.
    """
    return nontarget_log_probs(logits, targets, tau).exp()


def secondary_std_per_sample(logits: torch.Tensor, targets: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """Standard deviation of each sample's C - 1 secondary probabilities: [B, C] -> [B].

    sqrt(1/(C-1) * sum_{j != y} (s_ij - 1/(C-1))^2): 0 when the doubt is spread evenly over the other
    classes, larger when it singles out a few (docs/method.md §4)."""
    c = logits.shape[1]
    s = secondary_probs(logits, targets, tau)
    mean = 1.0 / (c - 1)  # the secondary probabilities of a sample sum to 1
    off_target = ~F.one_hot(targets, c).bool()
    return (((s - mean) ** 2) * off_target).sum(1).div(c - 1).sqrt()


sigma2_per_sample = renamed("sigma2_per_sample", secondary_std_per_sample)


def group_mass_per_sample(
    logits: torch.Tensor, targets: torch.Tensor, class_to_group: torch.Tensor, tau: float = 4.0
) -> torch.Tensor:
    """Share of each sample's secondary mass on classes of its true class's group: [B, C] -> [B]."""
    same_group = class_to_group.unsqueeze(0) == class_to_group[targets].unsqueeze(1)
    return (secondary_probs(logits, targets, tau) * same_group).sum(1)


class ICCAccumulator:
    """Sums of Y^T P, class counts, secondary std and group mass over batches; `report()` divides once.
    truth: the dataset's true ICC at tau ([C, C], see true_icc), which the report is scored against."""

    def __init__(
        self, info: DatasetInfo, tau: float = 4.0, device: torch.device | str = "cpu", truth: torch.Tensor | None = None
    ):
        check_tau(tau)
        self.info, self.tau, self.truth = info, tau, truth
        c = info.num_classes
        groups = info.class_to_group()
        self.class_to_group = None if groups is None else torch.tensor(groups, device=device)
        self.sums = torch.zeros(c, c, device=device, dtype=torch.float64)
        self.counts = torch.zeros(c, device=device, dtype=torch.float64)
        # n, sum secondary std, sum group mass (over samples with finite logits), samples left out
        self.stats = torch.zeros(4, device=device, dtype=torch.float64)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: logits [B, C], targets [B]. Samples whose logits are not all finite are
        left out of every number and counted; `report` warns about them."""
        logits = logits.double()
        finite = torch.isfinite(logits).all(1)
        sums, counts = class_sums(F.softmax(logits / self.tau, dim=1), targets, self.info.num_classes)
        self.sums += sums
        self.counts += counts
        self.stats[0] += finite.sum()
        self.stats[1] += torch.where(finite, secondary_std_per_sample(logits, targets, self.tau), 0.0).sum()
        if self.class_to_group is not None:
            self.stats[2] += torch.where(
                finite, group_mass_per_sample(logits, targets, self.class_to_group, self.tau), 0.0
            ).sum()
        self.stats[3] += (~finite).sum()

    def report(self) -> ICCReport:
        left_out = int(self.stats[3])
        if left_out:
            warnings.warn(
                f"{left_out} of {left_out + int(self.stats[0])} samples have non-finite logits (NaN or inf) and are "
                "left out of the ICC matrix, secondary std and group mass; the model's weights may hold NaN",
                stacklevel=2,
            )
        n = self.stats[0].clamp_min(1)
        return ICCReport(
            info=self.info,
            tau=self.tau,
            sums=self.sums.cpu(),
            counts=self.counts.cpu(),
            secondary_std=float(self.stats[1] / n),
            group_mass=None if self.class_to_group is None else float(self.stats[2] / n),
            n=int(self.stats[0]),
            truth=self.truth,
        )


REPORT_FORMAT = "kdviz-icc-report-1"


@dataclass
class ICCReport:
    """The ICC of one model on one split. Matrices are [C, C]; empty classes give NaN rows.
    truth: the true ICC at the same tau, for a dataset whose Bayes posterior is known (`planted`),
    else None; truth_distance and truth_rank score the model's ICC against it.

    Saved with `save` (or torch.save of `to_dict()`), it is a dict of tensors and builtins that
    `ICCReport.load` reads with weights_only=True, with its DatasetInfo: nothing else is needed.
    """

    info: DatasetInfo
    tau: float
    sums: torch.Tensor
    counts: torch.Tensor
    secondary_std: float
    group_mass: float | None
    n: int
    truth: torch.Tensor | None = None

    @property
    def sigma2(self) -> float:
        """Deprecated: the old name of `secondary_std` (kdviz 0.2 removes it)."""
        warn_renamed("ICCReport.sigma2", "ICCReport.secondary_std")
        return self.secondary_std

    @property
    def matrix(self) -> torch.Tensor:
        return icc_from_sums(self.sums, self.counts)

    @property
    def truth_distance(self) -> float | None:
        """||M_true - M||_F / C (icc_distance to the true ICC), or None without a truth."""
        return None if self.truth is None else icc_distance(self.truth, self.matrix)["icc_distance"]

    @property
    def truth_rank(self) -> float | None:
        """Spearman rank correlation of the off-diagonal entries of M and of the true ICC (None without
        a truth): whether the model orders the class-to-class similarities as the truth does."""
        return None if self.truth is None else offdiagonal_spearman(self.truth, self.matrix)

    @property
    def secondary(self) -> torch.Tensor:
        return secondary_icc(self.matrix)

    def to_frame(self, secondary: bool = False) -> pd.DataFrame:
        """The matrix as a DataFrame, rows = true class, columns = predicted class, by name."""
        m = self.secondary if secondary else self.matrix
        names = list(self.info.class_names)
        frame = pd.DataFrame(
            m.numpy(), index=pd.Index(names, name="true class"), columns=pd.Index(names, name="predicted")
        )
        return frame

    def top_confusions(self, class_name: str, k: int = 3) -> pd.Series:
        """The k classes that images of `class_name` give most of their non-target probability:
        the largest entries of its row of the secondary ICC, by class name, largest first."""
        frame = self.to_frame(secondary=True)
        if class_name not in frame.index:
            raise KeyError(f"no class {class_name!r} in {self.info.name}; classes: {list(frame.index)}")
        return frame.loc[class_name].drop(class_name).dropna().nlargest(k)

    def to_dict(self) -> dict:
        return {
            "format": REPORT_FORMAT,
            "info": dataclasses.asdict(self.info),
            "tau": self.tau,
            "sums": self.sums.cpu(),
            "counts": self.counts.cpu(),
            "secondary_std": self.secondary_std,
            "group_mass": self.group_mass,
            "n": self.n,
            "truth": self.truth,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ICCReport:
        if not isinstance(d, dict) or d.get("format") != REPORT_FORMAT:
            raise ValueError(f"not an ICC report in format {REPORT_FORMAT!r}; write one with ICCReport.save")
        info = dict(d["info"])
        for key in ("class_names", "image_shape", "mean", "std"):
            info[key] = tuple(info[key])
        info["groups"] = {name: tuple(members) for name, members in info["groups"].items()}
        return cls(
            info=DatasetInfo(**info),
            tau=d["tau"],
            sums=d["sums"],
            counts=d["counts"],
            secondary_std=d["secondary_std"] if "secondary_std" in d else d["sigma2"],  # written before 0.1.1
            group_mass=d["group_mass"],
            n=d["n"],
            truth=d.get("truth"),  # reports saved before truths existed have none
        )

    def save(self, path: str | os.PathLike) -> None:
        torch.save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ICCReport:
        """Read a report written by `save` (weights_only: a pickle that runs code is refused)."""
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError) as e:
            raise ValueError(
                f"{path} is not a readable ICC report (truncated or not written by ICCReport.save): "
                f"{str(e).splitlines()[0]}"
            ) from e
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path} is {e}") from None


def icc_of_logits(
    logits: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, tau: float = 4.0, truth: torch.Tensor | None = None
) -> ICCReport:
    """ICCReport from precomputed logits [N, C] and labels [N] (scored against `truth`, the true ICC
    at tau, when given)."""
    acc = ICCAccumulator(info, tau, device=logits.device, truth=truth)
    acc.update(logits, labels.to(logits.device))
    report = acc.report()
    warn_if_tau_degenerate(report, logits)
    return report


def warn_if_tau_degenerate(report: ICCReport, logits: torch.Tensor, uniform: float = 1e-6) -> None:
    """Warn when the temperature leaves no secondary structure to read. At a tiny tau softmax(z / tau)
    is one-hot (its second-largest probability underflows to 0): images predicted right put no
    probability outside their target, and a class whose images are all right gets an all-0
    secondary ICC row, which does not mean it confuses nothing. At a huge tau it is uniform: every
    secondary ICC entry is 1 / (C - 1) to within `uniform` (relative). logits: [N, C]."""
    advice = "a tau of about 1 to 20 keeps it (kdviz's default is 4)"
    finite = logits[torch.isfinite(logits).all(1)].double()
    one_hot = int((torch.softmax(finite / report.tau, dim=1).topk(2, dim=1).values[:, 1] == 0).sum())
    if one_hot:
        present = report.counts > 0
        off = report.matrix.masked_fill(torch.eye(len(present), dtype=torch.bool), 0.0).sum(1)
        empty = [n for n, p, mass in zip(report.info.class_names, present, off) if p and mass == 0]
        rows = f"; the secondary ICC rows of {', '.join(map(repr, empty[:5]))}{', ...' * (len(empty) > 5)} are all 0"
        warnings.warn(
            f"tau = {report.tau:g} makes the secondary probabilities vanish: softmax(z / tau) is one-hot for "
            f"{one_hot} of {len(finite)} images{rows if empty else ''}, which does not mean they confuse nothing; "
            f"{advice}",
            stacklevel=3,
        )
    present = report.counts > 0
    c = report.matrix.shape[1]
    off = ~torch.eye(c, dtype=torch.bool)[present]
    spread = (secondary_icc(report.matrix)[present][off] - 1 / (c - 1)).abs()
    if spread.numel() and c > 2 and float(spread.max()) <= uniform / (c - 1):
        warnings.warn(
            f"tau = {report.tau:g} makes the secondary probabilities uniform: every secondary ICC entry is "
            f"1/{c - 1} to within {float(spread.max()) * (c - 1):.1e} (relative), so no class structure is left; {advice}",
            stacklevel=3,
        )


def extract_icc(
    model: nn.Module,
    data: DatasetSplits,
    split: str = "test",
    *,
    tau: float = 4.0,
    device: str | torch.device | None = None,
) -> ICCReport:
    """The ICC matrix, secondary ICC, secondary std and group mass of `model` on a split of `data`,
    and on a dataset with a known truth (`planted`) its truth_distance and truth_rank."""
    dev = resolve_device(device)
    part = data.split(split)
    logits = predict_logits(model.to(dev), part, data.info, dev)
    return icc_of_logits(logits, part.labels, data.info, tau, true_icc(data, tau))


def true_icc(data: DatasetSplits, tau: float = 4.0) -> torch.Tensor | None:
    """The dataset's true ICC at tau (float64 [C, C], kdviz.data.Planted.true_icc), or None for a
    dataset whose Bayes posterior is unknown."""
    return None if data.truth is None else data.truth.true_icc(float(tau))[0]


def offdiagonal_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation (ties get their mean rank) of the off-diagonal entries of two [C, C]
    matrices, over the rows that are finite in both; NaN when either has no spread."""
    c = a.shape[0]
    rows = ~(torch.isnan(a).any(1) | torch.isnan(b).any(1))
    off = rows.unsqueeze(1) & ~torch.eye(c, dtype=torch.bool)
    x, y = (pd.Series(m[off].double().cpu().numpy()).rank() for m in (a, b))
    return float(x.corr(y))


def icc_distance(teacher: ICCReport | torch.Tensor, student: ICCReport | torch.Tensor) -> dict[str, float]:
    """||M_t - M_s||_F / C and the Pearson correlation of the off-diagonal entries.

    Classes missing from either matrix (NaN rows) are left out of both numbers.
    """
    m_t = teacher.matrix if isinstance(teacher, ICCReport) else teacher
    m_s = student.matrix if isinstance(student, ICCReport) else student
    if m_t.shape != m_s.shape:
        raise ValueError(f"ICC matrices differ in shape: {tuple(m_t.shape)} vs {tuple(m_s.shape)}")
    c = m_t.shape[0]
    rows = ~(torch.isnan(m_t).any(1) | torch.isnan(m_s).any(1))
    diff = (m_t - m_s)[rows]
    off = rows.unsqueeze(1) & ~torch.eye(c, dtype=torch.bool)
    a, b = m_t[off].double(), m_s[off].double()
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    pearson = float((a * b).sum() / denom) if denom > 0 else float("nan")
    return {"icc_distance": float(diff.norm() / c), "icc_pearson": pearson}
