"""Loss functions (pure, on tensors) and the named terms the trainer combines."""

from . import consensus_terms, feature_terms  # noqa: F401  (register the consensus terms; fitnet, at and crd)
from .attention import at_loss, attention_map
from .classic import asymmetric_kd_loss, cross_entropy, kd_loss, kl_divergence, label_smoothing
from .consensus import ClassConsensus
from .crd import ContrastMemory, nce_loss
from .dkd import dkd_loss, nckd, tckd  # (and registers dkd)
from .fitnet import HintRegressor, hint_loss
from .icc import (
    class_conditional_icc,
    class_sums,
    icc_from_sums,
    nontarget_log_probs,
    secondary_entropy,
    secondary_icc,
    sharpen_rows,
    teacher_icc_regularizer,
)
from .mimic import (
    batch_class_gram,
    class_conditional_mimic,
    dist_loss,
    icc_mimic_frobenius,
    icc_mimic_kl,
    icc_mimic_pearson,
    pearson_columns,
)
from .objective import PRESETS, Objective
from .standardize import LogitStandardized, standardize_logits
from .terms import LOSS_TERMS, STEP_INPUTS, LossTerm, ModuleTerm, StepOutputs

__all__ = [name for name in dir() if not name.startswith("_")]
