"""Named loss terms: the pure functions of this package, adapted to one training step.

A term sees a `StepOutputs` (the trained model's logits, the labels and, when a term asks for
them, the teacher's logits, both models' features and the batch's sample indices) and returns a
scalar. The trainer sums a weighted dict of terms, so an ablation changes a dict, not code. A new
term is one function and one registry line here: what the function reads is what its parameters
are named (see `FunctionTerm`).
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..registry import Registry, check_keywords
from . import classic, icc, mimic
from .checks import check_tau
from .consensus import ClassConsensus

# The StepOutputs fields a term may read besides the trained model's logits, which every term gets.
STEP_INPUTS = ("targets", "teacher_logits", "features", "teacher_features", "indices", "stages", "teacher_stages")


@dataclass
class StepOutputs:
    """What one training step hands the loss terms (B samples, C classes).

    logits [B, C]: the trained model's. targets [B] int64: the labels.
    teacher_logits [B, C]: the teacher's, when the objective distills.
    features [B, D_s] and teacher_features [B, D_t]: the penultimate features of the trained model
    and of the teacher (what `model(x, return_features=True)` returns second; every kdviz model can).
    indices [B] int64: the batch's positions in the training split (for per-sample memories).
    stages and teacher_stages {name: [B, ...]}: both models' named stages (`kdviz/models/stages.py`,
    e.g. "stage2" [B, C, H, W]), which FitNet and AT read.
    The trainer fills a field only when some term reads it (`LossTerm.inputs`); the others are None.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    teacher_features: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    stages: dict[str, torch.Tensor] | None = None
    teacher_stages: dict[str, torch.Tensor] | None = None


class LossTerm:
    """One named term. `inputs` names the StepOutputs fields it reads besides `logits` (a subset of
    STEP_INPUTS); the trainer computes features only for the terms that list them. Stateful terms
    override `end_epoch`, `state_dict` and `load_state_dict`."""

    inputs: tuple[str, ...] = ()

    def __init__(self, **params):
        self.params = params

    @property
    def needs_teacher(self) -> bool:
        return any(field.startswith("teacher_") for field in self.inputs)

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Called once after every training epoch (and before the next one starts). A term's state
        changes in place here (kdviz.train.step): backpropagate a loss before its epoch ends."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ModuleTerm(nn.Module, LossTerm):
    """A term with trainable parameters (a FitNet regressor, CRD's embeddings). The trainer
    optimises its parameters with the model's and saves its state_dict (nn.Module's) in last.pt.

    Its layers usually depend on the models' feature sizes, so a subclass builds them in `setup`,
    which the trainer calls once, before the optimizer is made, with the StepOutputs of one batch
    (eval mode, no gradient) and the training split's labels, int64 [N] (their number sizes
    per-sample memories such as CRD's bank, which also draws its negatives from the other classes);
    it then moves the term to the training device. `forward(out)` returns
    the scalar loss.
    """

    def __init__(self, **params):
        nn.Module.__init__(self)
        self.params = params

    def setup(self, example: StepOutputs, train_labels: torch.Tensor) -> None:
        """Build the layers that depend on the shapes in `example` (default: none)."""

    def forward(self, out: StepOutputs) -> torch.Tensor:
        raise NotImplementedError


LOSS_TERMS: Registry[Callable[..., LossTerm]] = Registry("loss term")


class FunctionTerm(LossTerm):
    """A stateless term: a pure loss function with its keyword parameters bound.

    The function's parameters named after a StepOutputs field (STEP_INPUTS, or `logits`) receive
    that field; a first parameter with another name (`student_logits`) receives the logits; the
    remaining parameters are the term's own (tau, ...). E.g. `kd_loss(student_logits,
    teacher_logits, tau)` reads the teacher's logits; `fitnet(features, teacher_features)` would
    read both models' features and not the logits.
    """

    def __init__(self, fn: Callable, **params):
        super().__init__(**params)
        self.fn = fn
        self.inputs, self._logits_first = _step_parameters(fn)

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        args = (out.logits,) if self._logits_first else ()
        return self.fn(*args, **{field: getattr(out, field) for field in self.inputs}, **self.params)


def _step_parameters(fn: Callable) -> tuple[tuple[str, ...], bool]:
    """(the StepOutputs fields fn reads by name, whether its first parameter takes the logits)."""
    names = list(inspect.signature(fn).parameters)
    logits_first = names[0] not in STEP_INPUTS
    return tuple(n for n in names[1 if logits_first else 0 :] if n in STEP_INPUTS), logits_first


def _register_function(name: str, fn: Callable) -> None:
    valid = {k: p.default for k, p in list(inspect.signature(fn).parameters.items())[1:] if k not in STEP_INPUTS}

    def factory(**params) -> LossTerm:
        _check_params(name, valid, params)
        return FunctionTerm(fn, **params)

    factory.__doc__ = fn.__doc__
    LOSS_TERMS.register(name)(factory)


def register_term_class(name: str):
    """Register a stateful LossTerm subclass, with the same parameter checks as function terms."""

    def decorator(cls):
        valid = {k: p.default for k, p in list(inspect.signature(cls.__init__).parameters.items())[1:]}

        def factory(**params) -> LossTerm:
            _check_params(name, valid, params)
            return cls(**params)

        factory.__doc__ = cls.__doc__
        LOSS_TERMS.register(name)(factory)
        return cls

    return decorator


def _check_params(name: str, valid: dict, params: dict) -> None:
    """The one check of every term's parameters, naming the term: known names; a parameter whose
    default is a number must be a finite number (a string "nan" from a JSON file would otherwise
    fail mid-step with Python's own message); temperatures and powers > 0."""
    check_keywords(f"loss term {name!r}", params, list(valid))
    for key, value in params.items():
        numeric = isinstance(valid[key], numbers.Real) and not isinstance(valid[key], bool)
        if numeric and (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)):
            raise ValueError(f"loss term {name!r}: {key} must be a finite number, got {value!r}")
        if key == "tau" or key.startswith("tau_"):
            try:
                check_tau(value, key)
            except ValueError as e:
                raise ValueError(f"loss term {name!r}: {e}") from None
        if key == "power" and not value > 0:
            raise ValueError(f"loss term {name!r}: sharpening power must be > 0, got {value}")


_register_function("ce", classic.cross_entropy)
_register_function("label_smoothing", classic.label_smoothing)
_register_function("kd", classic.kd_loss)
_register_function("icc_mimic", mimic.icc_mimic_kl)
_register_function("icc_mimic_frobenius", mimic.icc_mimic_frobenius)
_register_function("icc_mimic_pearson", mimic.icc_mimic_pearson)
_register_function("icc_mimic_classwise", mimic.class_conditional_mimic)
_register_function("dist", mimic.dist_loss)
_register_function("kd_asymmetric", classic.asymmetric_kd_loss)
_register_function("secondary_entropy", icc.secondary_entropy)


class _ConsensusTerm(LossTerm):
    """Shared machinery of the terms whose target is a class consensus frozen at each epoch's end.

    A subclass says how the consensus matrix becomes target rows (`_rows`) and what it compares
    with them (`_loss`); the consensus is of the trained model's own logits unless the subclass
    picks others (`_consensus_logits`).

    The target [C, C] and its switch `active` (0 until an epoch has ended, then 1) are tensors on
    the step's device, made at the first step and then updated in place at each epoch's end, so
    that every step computes the same thing: active * loss(target). Before the first epoch ends the
    target is a placeholder with finite loss (the rows of a consensus that found no class), and the
    product is exactly 0, as are its gradients; a step captured as a graph (kdviz.train.step)
    never branches on whether a target exists.
    """

    inputs = ("targets",)

    def __init__(self, tau: float, ema: float, **params):
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        super().__init__(tau=tau, ema=ema, **params)
        self.consensus = ClassConsensus(tau)
        self.has_target = False  # whether an epoch has ended: `active`, on the host
        self.target: torch.Tensor | None = None  # [C, C] float32
        self.active: torch.Tensor | None = None  # 0-dim, on the step's device once a step has run

    def _consensus_logits(self, out: StepOutputs) -> torch.Tensor:
        return out.logits

    def _rows(self, icc_matrix: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _loss(self, out: StepOutputs, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _place(self, logits: torch.Tensor) -> None:
        """Put the target and its switch on the device of `logits` (once; and after a restore, whose
        target is on the CPU: copying it every step would block the host each time)."""
        c = logits.shape[1]
        if self.target is None:
            self.target = self._rows(torch.full((c, c), float("nan"), device=logits.device))
        self.target = self.target.to(logits.device)
        self.active = torch.tensor(float(self.has_target), device=logits.device)

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        if self.active is None or self.active.device != out.logits.device:
            self._place(out.logits)
        self.consensus.update(self._consensus_logits(out), out.targets)
        return self.active * self._loss(out, self.target.to(out.logits.dtype))

    def end_epoch(self) -> None:
        matrix = self.consensus.finish_epoch()
        if matrix is None:
            return
        rows = self._rows(matrix)
        ema = self.params["ema"]
        self.target.copy_(rows if not self.has_target or ema == 0 else ema * self.target + (1 - ema) * rows)
        self.active.fill_(1.0)
        self.has_target = True

    def state_dict(self) -> dict:
        return {"target": self.target.clone() if self.has_target else None}

    def load_state_dict(self, state: dict) -> None:
        self.target, self.active = state["target"], None  # placed on the device by the next step
        self.has_target = self.target is not None


@register_term_class("icc_teacher")
class TeacherICCTerm(_ConsensusTerm):
    """The expressive-teacher regulariser, tau^2 * mean_i KL(T[y_i] || q_i) (docs/method.md §2).

    T is last epoch's secondary ICC over correctly classified training samples, sharpened by
    `power` and optionally smoothed across epochs by `ema`. It is 0 until the first epoch ends.
    """

    def __init__(self, tau: float = 4.0, power: float = 1.0, ema: float = 0.0):
        super().__init__(tau=tau, ema=ema, power=power)

    def _rows(self, icc_matrix):
        return icc.sharpen_rows(icc.secondary_icc(icc_matrix), self.params["power"])

    def _loss(self, out, target):
        return icc.teacher_icc_regularizer(out.logits, out.targets, target, self.params["tau"])


@register_term_class("icc_consensus_ref")
class ReferenceICCTerm(TeacherICCTerm):
    """Like "icc_teacher", but its consensus T comes from a fixed reference model, passed as teacher=.

    T is the secondary ICC of the reference's predictions (softened at tau) over the training
    samples the reference classifies correctly, sharpened by `power` and rebuilt at each epoch's
    end; the trained model's own predictions never enter it, so it cannot run away with them.
    0 until the first epoch ends.
    """

    inputs = ("targets", "teacher_logits")

    def __init__(self, tau: float = 4.0, power: float = 1.0):
        super().__init__(tau=tau, power=power)

    def _consensus_logits(self, out):
        return out.teacher_logits


@register_term_class("online_label_smoothing")
class OnlineLabelSmoothingTerm(_ConsensusTerm):
    """Online Label Smoothing (Zhang et al. 2021): cross-entropy to last epoch's full class-mean
    prediction S[y_i] over correctly classified samples; 0 until the first epoch ends.

    Use it beside "ce" (the paper mixes the two half and half). Classes with no correct sample
    fall back to the one-hot label.
    """

    def __init__(self, tau: float = 1.0, ema: float = 0.0):
        super().__init__(tau=tau, ema=ema)

    def _rows(self, icc_matrix):
        eye = torch.eye(icc_matrix.shape[0], dtype=icc_matrix.dtype, device=icc_matrix.device)
        return torch.where(torch.isnan(icc_matrix), eye, icc_matrix)

    def _loss(self, out, target):
        return -(target[out.targets] * torch.log_softmax(out.logits, dim=1)).sum(1).mean()
