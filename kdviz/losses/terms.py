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
