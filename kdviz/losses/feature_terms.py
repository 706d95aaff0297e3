"""The feature-based terms, FitNet, AT and CRD: their losses (`fitnet.py`, `attention.py`, `crd.py`)
adapted to a training step, as the logit terms are in `terms.py`.

FitNet and AT read named stages of the student and the teacher (`StepOutputs.stages`,
`teacher_stages`); which ones is a parameter, and the defaults fit every pair of the CRD zoo, of
one family or two. CRD reads the penultimate features (`features`, `teacher_features`). Each is a
`ModuleTerm`: `setup` builds its parts for the models' shapes (FitNet's regressor, CRD's
embeddings and memory bank) before training; the trainer trains their parameters with the
student and saves their state in last.pt. The teacher's features are not cached, so these terms
need the online teacher.
"""

from __future__ import annotations

import torch

from .attention import at_loss
from .crd import ContrastMemory, Embed, nce_loss
from .features import common_size, pool_to, stage_shape
from .fitnet import HintRegressor, hint_loss
from .terms import ModuleTerm, StepOutputs, register_term_class


def _shapes(stages: dict[str, torch.Tensor] | None) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape[1:]) for name, t in (stages or {}).items()}


class _FeatureTerm(ModuleTerm):
    _ready = False  # set by setup

    def _check_ready(self, name: str) -> None:
        if not self._ready:
            raise RuntimeError(
                f"loss term {name!r} reads features: set it up first (Objective.setup, which train() calls)"
            )


@register_term_class("fitnet")
class FitNetTerm(_FeatureTerm):
    """FitNet's hint loss mean((r(F_s) - F_t)^2) between one student and one teacher stage (`fitnet.py`).

    r, a 1x1 conv + BN when the shapes differ, trains with the student. CRD's benchmark: the middle
    stage on both sides, {"ce": 1, "fitnet": 100}.
    """

    inputs = ("stages", "teacher_stages")

    def __init__(self, student_stage: str = "stage2", teacher_stage: str = "stage2"):
        super().__init__(student_stage=student_stage, teacher_stage=teacher_stage)

    def setup(self, example: StepOutputs, train_labels: torch.Tensor) -> None:
        s = stage_shape(_shapes(example.stages), self.params["student_stage"], "student")
        t = stage_shape(_shapes(example.teacher_stages), self.params["teacher_stage"], "teacher")
        self.regressor = HintRegressor(s, t)
        self._ready = True

    def forward(self, out: StepOutputs) -> torch.Tensor:
        self._check_ready("fitnet")
        regressed, hint = self.regressor(
            out.stages[self.params["student_stage"]], out.teacher_stages[self.params["teacher_stage"]]
        )
        return hint_loss(regressed, hint)


@register_term_class("at")
class AttentionTerm(_FeatureTerm):
    """Attention transfer, sum over stage pairs of mean((a(F_s) - a(F_t))^2) (`attention.py`), p = 2.

    `stages` are the student's; the teacher's are the same names unless `teacher_stages` says
    otherwise. CRD's benchmark: all three stages, {"ce": 1, "at": 1000}. No trainable part.
    """

    inputs = ("stages", "teacher_stages")

    def __init__(
        self,
        stages: tuple[str, ...] = ("stage1", "stage2", "stage3"),
        teacher_stages: tuple[str, ...] | None = None,
        p: float = 2.0,
    ):
        stages = tuple(stages)
        teacher_stages = stages if teacher_stages is None else tuple(teacher_stages)
        if not stages or len(stages) != len(teacher_stages):
            raise ValueError(
                f"AT pairs student stages {list(stages)} with teacher stages {list(teacher_stages)}: "
                "give one teacher stage per student stage, and at least one"
            )
        if not p > 0:
            raise ValueError(f"AT's power p must be > 0, got {p}")
        super().__init__(stages=stages, teacher_stages=teacher_stages, p=p)
        self.sizes: list[tuple[int, int]] = []

    def setup(self, example: StepOutputs, train_labels: torch.Tensor) -> None:
        student, teacher = _shapes(example.stages), _shapes(example.teacher_stages)
        self.sizes = [
            common_size(
                stage_shape(student, s, "student"), stage_shape(teacher, t, "teacher"), f"AT (stages {s!r} -> {t!r})"
            )
            for s, t in zip(self.params["stages"], self.params["teacher_stages"])
        ]
        self._ready = True

    def forward(self, out: StepOutputs) -> torch.Tensor:
        self._check_ready("at")
        losses = [
            at_loss(pool_to(out.stages[s], size), pool_to(out.teacher_stages[t], size), self.params["p"])
            for s, t, size in zip(self.params["stages"], self.params["teacher_stages"], self.sizes)
        ]
        return torch.stack(losses).sum()


@register_term_class("crd")
class CRDTerm(_FeatureTerm):
    """Contrastive representation distillation, NCE(h_s) + NCE(h_t) on the penultimate features (`crd.py`).

    Linear embeddings to `dim`, a memory bank of both sides' embeddings over the training set
    (kept in the checkpoint), `negatives` negatives drawn from the other classes, `temperature` and
    `momentum` as in CRD.
    CRD's benchmark: {"ce": 1, "crd": 0.8}.
    """

    inputs = ("features", "teacher_features", "indices")

    def __init__(self, dim: int = 128, negatives: int = 16384, temperature: float = 0.07, momentum: float = 0.5):
        if not (isinstance(dim, int) and dim >= 1 and isinstance(negatives, int) and negatives >= 1):
            raise ValueError(f"CRD's dim and negatives must be integers >= 1, got dim={dim!r}, negatives={negatives!r}")
        if not temperature > 0 or not 0 <= momentum < 1:
            raise ValueError(f"CRD needs temperature > 0 and momentum in [0, 1), got {temperature} and {momentum}")
        super().__init__(dim=dim, negatives=negatives, temperature=temperature, momentum=momentum)

    def setup(self, example: StepOutputs, train_labels: torch.Tensor) -> None:
        p = self.params
        s, t = tuple(example.features.shape[1:]), tuple(example.teacher_features.shape[1:])
        if len(s) != 1 or len(t) != 1:
            raise ValueError(f"CRD embeds feature vectors [D]; got student {list(s)} and teacher {list(t)}")
        self.student_embed, self.teacher_embed = Embed(s[0], p["dim"]), Embed(t[0], p["dim"])
        self.memory = ContrastMemory(train_labels, p["dim"], p["negatives"], p["temperature"], p["momentum"])
        self._ready = True

    def forward(self, out: StepOutputs) -> torch.Tensor:
        self._check_ready("crd")
        if out.indices is None:
            raise ValueError("loss term 'crd' needs the batch's training-set indices (StepOutputs.indices)")
        s = self.student_embed(out.features)
        t = self.teacher_embed(out.teacher_features.detach())
        (x_s, positive_s), (x_t, positive_t), counts = self.memory.scores(s, t, out.indices)
        return nce_loss(x_s, positive_s, counts) + nce_loss(x_t, positive_t, counts)
