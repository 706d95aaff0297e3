"""An objective: a weighted dict of named loss terms, written the way a notebook cell writes it.

Objective({"ce": 0.1, "kd": 0.9, "icc_mimic": {"weight": 0.1, "tau": 4}})
Objective.parse("ce=0.1,kd=0.9,icc_mimic=0.1")     # the CLI's form
Objective.preset("kd+icc_mimic")                   # a named objective of docs/method.md
Objective.coerce(x)                                # any of the three, or an Objective
Objective.preset("kd").with_params({"kd": {"tau": 2.0}})
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from ..registry import did_you_mean, unknown_name
from .standardize import LABEL_SMOOTHING, PAPER, LogitStandardized, takes_logit_std
from .terms import LOSS_TERMS, LossTerm, StepOutputs

# Defaults from docs/method.md: alpha = 0.9, tau = 4, beta = 0.1, lambda_T = 0.1, p = 1.
PRESETS: dict[str, dict] = {
    "ce": {"ce": 1.0},
    "label_smoothing": {"label_smoothing": {"weight": 1.0, "eps": 0.1}},
    "icc_teacher": {"ce": 1.0, "icc_teacher": {"weight": 0.1, "tau": 4.0, "power": 1.0}},
    "online_label_smoothing": {"ce": 0.5, "online_label_smoothing": 0.5},
    "kd": {"ce": 0.1, "kd": {"weight": 0.9, "tau": 4.0}},
    "kd_asymmetric": {"ce": 0.1, "kd_asymmetric": {"weight": 0.9, "tau": 4.0, "tau_target": 4.0, "tau_nontarget": 2.0}},
    "kd+icc_mimic": {"ce": 0.1, "kd": {"weight": 0.9, "tau": 4.0}, "icc_mimic": {"weight": 0.1, "tau": 4.0}},
    "dist": {"ce": 1.0, "dist": {"weight": 1.0, "tau": 4.0}},
    # Zhao et al. 2022's CIFAR-100 setting (their code's defaults: CE 1, warm-up 20 epochs).
    "dkd": {"ce": 1.0, "dkd": {"weight": 1.0, "tau": 4.0, "alpha": 1.0, "beta": 8.0, "warmup": 20}},
    # Logit standardization (Sun et al. 2024, kdviz/losses/standardize.py) over KD and DKD, as its
    # authors' CIFAR-100 commands set them (--logit-stand --base-temp 2 --kd-weight 9).
    "kd+logit_std": {"ce": 0.1, "kd": {"weight": 9.0, "tau": 2.0, "logit_std": True}},
    "dkd+logit_std": {
        "ce": 1.0,
        "dkd": {"weight": 9.0, "tau": 2.0, "alpha": 1.0, "beta": 8.0, "warmup": 20, "logit_std": True},
    },
    # The feature baselines as CRD's benchmark weighs them beside CE (its code's -r 1 -a 0 -b ...).
    "fitnet": {"ce": 1.0, "fitnet": 100.0},
    "at": {"ce": 1.0, "at": 1000.0},
    "crd": {"ce": 1.0, "crd": 0.8},
}

TermSpec = float | Mapping[str, float]


class Objective:
    """Sum of weighted terms. Calling it returns (total loss, {name: unweighted detached value})."""

    def __init__(self, spec: Mapping[str, TermSpec]):
        if not spec:
            raise ValueError(f"an objective needs at least one loss term; valid terms: {', '.join(LOSS_TERMS.names())}")
        self.spec = {name: _normalise(name, s) for name, s in spec.items()}
        if not any(s["weight"] > 0 for s in self.spec.values()):
            raise ValueError(
                f"every weight of the objective {dict(spec)} is 0, so nothing would be learnt; give at least one term a weight > 0"
            )
        self.terms: dict[str, LossTerm] = {}
        self.weights: dict[str, float] = {}
        for name, s in self.spec.items():
            params = {k: v for k, v in s.items() if k not in ("weight", "logit_std")}
            self.terms[name] = _with_modifiers(name, LOSS_TERMS.get(name)(**params), s.get("logit_std", False))
            self.weights[name] = s["weight"]

    @classmethod
    def preset(cls, name: str, **overrides: TermSpec) -> Objective:
        if name not in PRESETS:
            raise unknown_name("objective preset", name, PRESETS)
        return cls({**PRESETS[name], **overrides})

    @classmethod
    def parse(cls, text: str) -> Objective:
        """'ce=0.1,kd=0.9' (name=weight pairs, default parameters) or a preset name."""
        text = text.strip()
        if text in PRESETS:
            return cls.preset(text)
        spec: dict[str, TermSpec] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, weight = part.partition("=")
            if not sep:
                raise ValueError(
                    f"cannot read loss {part!r}{did_you_mean(part, [*PRESETS, *LOSS_TERMS.names()])}: write name=weight "
                    f"pairs such as 'ce=0.1,kd=0.9', or a preset ({', '.join(PRESETS)})"
                )
            try:
                spec[name.strip()] = float(weight)
            except ValueError:
                raise ValueError(
                    f"cannot read loss {part!r}: the weight of {name.strip()!r} must be a number, got {weight.strip()!r}"
                ) from None
        return cls(spec)

    @classmethod
    def coerce(cls, objective: Objective | str | Mapping[str, TermSpec]) -> Objective:
        """Any form an objective is written in: an Objective (returned as is), a preset or
        'ce=0.1,kd=0.9' string, or a {term: weight or {weight, param: value}} mapping."""
        if isinstance(objective, Objective):
            return objective
        if isinstance(objective, str):
            return cls.parse(objective)
        if isinstance(objective, Mapping):
            return cls(objective)
        raise TypeError(
            f"an objective is a preset or 'ce=0.1,kd=0.9' string, a {{term: weight}} mapping or an Objective, "
            f"got {objective!r}"
        )

    def with_params(self, params: Mapping[str, Mapping[str, float]]) -> Objective:
        """A new Objective with term parameters laid over this one's, e.g. {"kd": {"tau": 2.0}}
        (a "weight" key sets the weight); every named term must be in the objective."""
        spec = {name: dict(s) for name, s in self.spec.items()}
        for name, extra in params.items():
            if name not in spec:
                raise ValueError(f"term parameters name {name!r}, which is not in the objective ({', '.join(spec)})")
            if not isinstance(extra, Mapping):
                raise TypeError(f'parameters of term {name!r} must be a mapping such as {{"tau": 2.0}}, got {extra!r}')
            spec[name].update(extra)
        return type(self)(spec)

    @property
    def needs_teacher(self) -> bool:
        return any(t.needs_teacher for t in self.terms.values())

    @property
    def trainable(self) -> bool:
        """Whether a term has parameters of its own (a ModuleTerm)."""
        return any(isinstance(t, nn.Module) for t in self.terms.values())

    def setup(self, example: StepOutputs, train_labels: torch.Tensor) -> None:
        """Build the trainable terms' layers for the shapes in `example` and a training split with
        these labels, int64 [N] (ModuleTerm.setup) and move them to its device; the trainer calls it once,
        before making the optimizer."""
        for term in self.terms.values():
            if isinstance(term, nn.Module):
                term.setup(example, train_labels)
                term.to(example.logits.device)

    def parameters(self) -> Iterator[nn.Parameter]:
        """The trainable terms' parameters, which the trainer optimises with the model's."""
        for term in self.terms.values():
            if isinstance(term, nn.Module):
                yield from term.parameters()

    @property
    def inputs(self) -> set[str]:
        """The StepOutputs fields some term reads besides the logits (see LossTerm.inputs)."""
        return set().union(*(t.inputs for t in self.terms.values()))

    @property
    def reads_teacher_features(self) -> bool:
        """Whether a term reads the teacher's features or stages (so the teacher must run online:
        a teacher cache holds logits only)."""
        return bool(self.inputs & {"teacher_features", "teacher_stages"})

    def __call__(self, out: StepOutputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = {name: term(out) for name, term in self.terms.items()}
        total = sum(self.weights[n] * v for n, v in values.items())
        return total, {n: v.detach() for n, v in values.items()}

    def end_epoch(self) -> None:
        for term in self.terms.values():
            term.end_epoch()

    def state_dict(self) -> dict:
        return {name: term.state_dict() for name, term in self.terms.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, term in self.terms.items():
            term.load_state_dict(state.get(name, {}))

    def describe(self) -> str:
        parts = []
        for name, s in self.spec.items():
            extra = ", ".join(f"{k}={v}" for k, v in s.items() if k != "weight")
            parts.append(f"{s['weight']:g}*{name}" + (f"({extra})" if extra else ""))
        return " + ".join(parts)


# Names people try for logit standardization, which is a parameter of the distillation terms.
_NOT_TERMS = ("ls", "logit_std", "logit_standardization", "logit_stand")


def _normalise(name: str, spec: TermSpec) -> dict:
    if name in _NOT_TERMS:
        raise ValueError(f"{name!r} is not a loss term: {LABEL_SMOOTHING}")
    LOSS_TERMS.get(name)  # fail early, listing the valid names
    spec = {"weight": float(spec)} if isinstance(spec, (int, float)) else dict(spec)
    weight = spec.setdefault("weight", 1.0)
    if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight of loss term {name!r} must be a finite number >= 0, got {weight!r}")
    return spec


def _with_modifiers(name: str, term: LossTerm, logit_std) -> LossTerm:
    """`term`, computed on standardized logits when logit_std is true (kdviz/losses/standardize.py)."""
    if not isinstance(logit_std, bool):
        raise ValueError(f"loss term {name!r}: logit_std must be true or false, got {logit_std!r}")
    if not logit_std:
        return term
    if not takes_logit_std(term):
        if name == "label_smoothing":
            raise ValueError(f"loss term 'label_smoothing' does not take logit_std: {LABEL_SMOOTHING}")
        takers = [n for n in LOSS_TERMS.names() if takes_logit_std(LOSS_TERMS.get(n)())]
        raise ValueError(
            f"loss term {name!r} does not take logit_std: {PAPER} z-scores both models' logits before a "
            f"distillation term's temperature softmax, so only these terms take it: {', '.join(takers)}"
        )
    return LogitStandardized(term)
