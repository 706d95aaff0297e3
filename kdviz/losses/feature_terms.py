"""The feature-based terms, FitNet, AT and CRD: their losses (`fitnet.py`, `attention.py`, `crd.py`)
adapted to a training step, as the logit terms are in `terms.py`.

Each reads the named stages of the student and the teacher (`StepOutputs.features`,
`teacher_features`); which ones is a parameter, and the defaults fit every pair of the CRD zoo,
of one family or two. Their trainable parts (FitNet's regressor, CRD's embeddings) are made by
`build` once the models' shapes are known, trained with the student and saved in `state_dict`.
The teacher's features are not cached, so these terms need the online teacher.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from .attention import at_loss
from .crd import ContrastMemory, Embed, nce_loss
from .features import FeatureContext, common_size, pool_to, stage_shape
from .fitnet import HintRegressor, hint_loss
from .terms import LossTerm, StepOutputs, _register_class


class _FeatureTerm(LossTerm):
    needs_teacher = True
    needs_features = True
    _ready = False  # set by build

    def build(self, context: FeatureContext) -> None:
        raise NotImplementedError

    def _built(self, name: str) -> None:
        if not self._ready:
            raise RuntimeError(f"loss term {name!r} reads features: build it first (Objective.build, which train() calls)")

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict()} if self.module is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.module is not None and "module" in state:
            self.module.load_state_dict(state["module"])


@_register_class("fitnet")
class FitNetTerm(_FeatureTerm):
    """FitNet's hint loss mean((r(F_s) - F_t)^2) between one student and one teacher stage (`fitnet.py`).

    r, a 1x1 conv + BN when the shapes differ, trains with the student. CRD's benchmark: the middle
    stage on both sides, {"ce": 1, "fitnet": 100}.
    """

    def __init__(self, student_stage: str = "stage2", teacher_stage: str = "stage2"):
        super().__init__(student_stage=student_stage, teacher_stage=teacher_stage)

    def build(self, context: FeatureContext) -> None:
        s = stage_shape(context.student_shapes, self.params["student_stage"], "student")
        t = stage_shape(context.teacher_shapes, self.params["teacher_stage"], "teacher")
        self.module = HintRegressor(s, t).to(context.device)
        self._ready = True

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        self._built("fitnet")
        regressed, hint = self.module(out.features[self.params["student_stage"]],
                                      out.teacher_features[self.params["teacher_stage"]])
        return hint_loss(regressed, hint)


@_register_class("at")
class AttentionTerm(_FeatureTerm):
    """Attention transfer, sum over stage pairs of mean((a(F_s) - a(F_t))^2) (`attention.py`), p = 2.

    `stages` are the student's; the teacher's are the same names unless `teacher_stages` says
    otherwise. CRD's benchmark: all three stages, {"ce": 1, "at": 1000}. No trainable part.
    """

    def __init__(self, stages: tuple[str, ...] = ("stage1", "stage2", "stage3"), teacher_stages: tuple[str, ...] | None = None,
                 p: float = 2.0):
        stages = tuple(stages)
        teacher_stages = stages if teacher_stages is None else tuple(teacher_stages)
        if not stages or len(stages) != len(teacher_stages):
            raise ValueError(f"AT pairs student stages {list(stages)} with teacher stages {list(teacher_stages)}: "
                             "give one teacher stage per student stage, and at least one")
        if not p > 0:
            raise ValueError(f"AT's power p must be > 0, got {p}")
        super().__init__(stages=stages, teacher_stages=teacher_stages, p=p)
        self.sizes: list[tuple[int, int]] = []

    def build(self, context: FeatureContext) -> None:
        self.sizes = [
            common_size(stage_shape(context.student_shapes, s, "student"), stage_shape(context.teacher_shapes, t, "teacher"),
                        f"AT (stages {s!r} -> {t!r})")
            for s, t in zip(self.params["stages"], self.params["teacher_stages"])
        ]
        self._ready = True

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        self._built("at")
        losses = [
            at_loss(pool_to(out.features[s], size), pool_to(out.teacher_features[t], size), self.params["p"])
            for s, t, size in zip(self.params["stages"], self.params["teacher_stages"], self.sizes)
        ]
        return torch.stack(losses).sum()


@_register_class("crd")
class CRDTerm(_FeatureTerm):
    """Contrastive representation distillation, NCE(h_s) + NCE(h_t) on the pooled features (`crd.py`).

    Linear embeddings to `dim`, a memory bank of both sides' embeddings over the training set
    (kept in the checkpoint), `negatives` uniform negatives, `temperature` and `momentum` as in CRD.
    CRD's benchmark: {"ce": 1, "crd": 0.8}. Needs the samples' training-set indices.
    """

    def __init__(self, student_stage: str = "pool", teacher_stage: str = "pool", dim: int = 128, negatives: int = 16384,
                 temperature: float = 0.07, momentum: float = 0.5):
        if not (isinstance(dim, int) and dim >= 1 and isinstance(negatives, int) and negatives >= 1):
            raise ValueError(f"CRD's dim and negatives must be integers >= 1, got dim={dim!r}, negatives={negatives!r}")
        if not temperature > 0 or not 0 <= momentum < 1:
            raise ValueError(f"CRD needs temperature > 0 and momentum in [0, 1), got {temperature} and {momentum}")
        super().__init__(student_stage=student_stage, teacher_stage=teacher_stage, dim=dim, negatives=negatives,
                         temperature=temperature, momentum=momentum)

    def build(self, context: FeatureContext) -> None:
        p = self.params
        s = stage_shape(context.student_shapes, p["student_stage"], "student")
        t = stage_shape(context.teacher_shapes, p["teacher_stage"], "teacher")
        if len(s) != 1 or len(t) != 1:
            raise ValueError(f"CRD embeds feature vectors [D]; got student {list(s)} and teacher {list(t)}: "
                             "use the 'pool' stages")
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        capacity = math.ceil((context.batch_size + 1) / world)  # the most samples one rank holds in a step
        self.module = nn.ModuleDict({
            "student_embed": Embed(s[0], p["dim"]),
            "teacher_embed": Embed(t[0], p["dim"]),
            "memory": ContrastMemory(context.n_train, p["dim"], p["negatives"], p["temperature"], p["momentum"], capacity),
        }).to(context.device)
        self._ready = True

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        self._built("crd")
        if out.indices is None:
            raise ValueError("loss term 'crd' needs the batch's training-set indices (StepOutputs.indices)")
        p, m = self.params, self.module
        s = m["student_embed"](out.features[p["student_stage"]])
        t = m["teacher_embed"](out.teacher_features[p["teacher_stage"]].detach())
        log_h_s, log_h_t = m["memory"].scores(s, t, out.indices)
        n = m["memory"].n_data
        return nce_loss(log_h_s, n) + nce_loss(log_h_t, n)

    def end_epoch(self) -> None:
        if self.module is not None:
            self.module["memory"].flush()

    def state_dict(self) -> dict:
        if self.module is None:
            return {}
        self.module["memory"].flush()
        return {**super().state_dict(), "z_ready": self.module["memory"].z_ready}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.module is not None and "z_ready" in state:
            self.module["memory"].z_ready = state["z_ready"]
