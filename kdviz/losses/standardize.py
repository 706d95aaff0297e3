"""Logit standardization (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024).

A modifier of the distillation terms, not a term of its own: with `logit_std=True` a term sees both
models' logits z-scored per sample,

    Z(z) = (z - mean_k z_k) / (std_k z_k + 1e-7)        (std over the C classes, unbiased: / (C - 1))

before its temperature softmax, softmax(Z(z) / tau). The softmax of sample i then runs at the
effective temperature std(z_i) * tau: `tau` becomes the paper's base temperature, and the student
only has to match the teacher's logits up to a shift and a scale of its own. Everything else of the
term is unchanged, its tau^2 factor included (the authors' code keeps it).

The standardization follows the authors' code (github.com/sunshangquan/logit-standardization-KD,
`normalize` in mdistiller/distillers/KD.py): torch's unbiased std and 1e-7 added to it. The paper
writes the population std (/ C); the two differ by sqrt(C / (C - 1)), 0.5 % of the temperature at
C = 100. Their CIFAR-100 commands use base temperature 2 and weight 9 (KD: CE 0.1 + 9 KD; DKD: CE 1 +
DKD with alpha 9, beta 72, i.e. weight 9 on alpha 1, beta 8): the presets "kd+logit_std" and
"dkd+logit_std".

Not to be confused with the term `label_smoothing`, which is label smoothing (Szegedy et al. 2016),
a loss on the labels that recent papers also abbreviate "LS".
"""

from __future__ import annotations

import inspect
from dataclasses import replace

import torch

from .icc import at_least_float32
from .terms import LossTerm, StepOutputs

EPS = 1e-7  # added to the std, as the authors' code does: a sample with equal logits stays finite

PAPER = "logit standardization (Sun et al., CVPR 2024)"
LABEL_SMOOTHING = (
    "the term 'label_smoothing' is label smoothing (Szegedy et al. 2016), a different method that papers "
    f"also call LS; {PAPER} is the parameter logit_std=True of a distillation term, e.g. "
    '{"kd": {"weight": 9, "tau": 2, "logit_std": true}} or the presets kd+logit_std and dkd+logit_std'
)


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """(z - mean(z)) / (std(z) + 1e-7) along the last dimension: [B, C] -> [B, C], in float32 at least.

    std is the unbiased one (/ (C - 1)). Invariant to adding a constant to a row and to multiplying
    it by a positive number (up to the 1e-7).
    """
    z = at_least_float32(logits)
    return (z - z.mean(dim=-1, keepdim=True)) / (z.std(dim=-1, keepdim=True) + EPS)


def takes_logit_std(term: LossTerm) -> bool:
    """Whether `term` compares the teacher's logits with the student's at a temperature: those are
    the terms logit standardization applies to (kd, kd_asymmetric, dkd, dist, the icc_mimic terms,
    icc_consensus_ref)."""
    own = getattr(term, "fn", type(term).__init__)  # a function term's function, else the class's parameters
    return "teacher_logits" in term.inputs and "tau" in inspect.signature(own).parameters


class LogitStandardized(LossTerm):
    """`term` computed on both models' standardized logits (`standardize_logits`); the rest of the
    step's outputs, and the term's state, are the term's own."""

    def __init__(self, term: LossTerm):
        super().__init__(**term.params, logit_std=True)
        self.term = term
        self.inputs = term.inputs

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        # Standardized when read, every step: a teacher cache keeps the teacher's exact logits.
        return self.term(
            replace(out, logits=standardize_logits(out.logits), teacher_logits=standardize_logits(out.teacher_logits))
        )

    def end_epoch(self) -> None:
        self.term.end_epoch()

    def state_dict(self) -> dict:
        return self.term.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.term.load_state_dict(state)
