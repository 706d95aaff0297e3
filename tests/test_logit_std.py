"""Logit standardization (Sun et al., CVPR 2024) as the logit_std modifier of the distillation terms.

Expected values come from the paper's formula written out here with numpy, never from kdviz's helpers:
Z(z) = (z - mean(z)) / (std(z) + 1e-7), the unbiased std of the authors' code, then the term's own
temperature softmax at the base temperature tau, with the term's tau^2 kept.
"""

import math

import numpy as np
import pytest
import torch
from helpers import no_host_sync

from kdviz.losses import LOSS_TERMS, PRESETS, Objective, StepOutputs, dkd_loss
from kdviz.models import build_model
from kdviz.train import train

STANDARDIZED = [
    "kd",
    "kd_asymmetric",
    "dkd",
    "dist",
    "icc_mimic",
    "icc_mimic_frobenius",
    "icc_mimic_pearson",
    "icc_mimic_classwise",
    "icc_consensus_ref",
]


def np_standardize(z):
    z = np.asarray(z, dtype=np.float64)
    mean = z.mean(axis=1, keepdims=True)
    std = np.sqrt(((z - mean) ** 2).sum(axis=1, keepdims=True) / (z.shape[1] - 1))
    return (z - mean) / (std + 1e-7)


def np_softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _batch(seed, b=12, c=7):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(b, c, generator=g, dtype=torch.float64) * 4
    logits = teacher + torch.randn(b, c, generator=g, dtype=torch.float64) * 3
    targets = teacher.argmax(1)
    targets[::4] = torch.randint(0, c, (len(targets[::4]),), generator=g)
    return logits, targets, teacher


def _term_value(name, out, **params):
    """The unweighted value of term `name` with `params` in an objective (its first epoch ended)."""
    objective = Objective({name: {"weight": 1.0, **params}})
    objective(out)
    objective.end_epoch()  # the consensus terms get their target; a no-op for the others
    return objective(out)[1][name]


def test_kd_with_logit_std_is_the_papers_formula():
    s, y, t = _batch(0)
    tau = 2.0
    p_t = np_softmax_rows(np_standardize(t.numpy()) / tau)
    p_s = np_softmax_rows(np_standardize(s.numpy()) / tau)
    expected = tau**2 * np.mean(np.sum(p_t * np.log(p_t / p_s), axis=1))  # tau^2 kept, as the authors' code
    got = _term_value("kd", StepOutputs(s, y, t), tau=tau, logit_std=True)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    plain = _term_value("kd", StepOutputs(s, y, t), tau=tau)
    assert abs(plain.item() - expected) > 1e-2  # the modifier changes the value: the check can fail


def test_the_effective_temperature_is_the_std_times_the_base():
    """softmax(Z(z) / tau) = softmax((z - mean) / (std * tau)): the sample's own temperature std * tau."""
    s, y, t = _batch(1)
    tau = 2.0
    z = t.numpy()
    std = z.std(axis=1, ddof=1, keepdims=True)
    expected = np_softmax_rows(z / (std * tau))  # the mean cancels in a softmax
    p = np_softmax_rows(np_standardize(z) / tau)
    np.testing.assert_allclose(p, expected, rtol=1e-5)
    # And kd with logit_std equals plain KD on the logits divided by their std, at the base tau.
    scaled = StepOutputs(s / s.std(1, keepdim=True), y, t / t.std(1, keepdim=True))
    got = _term_value("kd", StepOutputs(s, y, t), tau=tau, logit_std=True)
    assert got.item() == pytest.approx(_term_value("kd", scaled, tau=tau).item(), rel=1e-5)


def test_dkd_reads_the_standardized_logits():
    s, y, t = _batch(2)
    zs, zt = (torch.from_numpy(np_standardize(x.numpy())) for x in (s, t))
    expected = dkd_loss(zs, zt, y, tau=2.0, alpha=1.0, beta=8.0)
    got = _term_value("dkd", StepOutputs(s, y, t), tau=2.0, warmup=0, logit_std=True)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("name", STANDARDIZED)
def test_every_standardized_term_ignores_shifts_and_positive_scales(name):
    s, y, t = _batch(3)
    g = torch.Generator().manual_seed(4)
    shift_s, shift_t = (
        torch.randn(12, 1, generator=g, dtype=torch.float64) * 50,
        torch.randn(12, 1, dtype=torch.float64),
    )
    scale_s = torch.rand(12, 1, generator=g, dtype=torch.float64) * 5 + 0.2
    scale_t = torch.rand(12, 1, generator=g, dtype=torch.float64) * 5 + 0.2
    moved = StepOutputs(s * scale_s + shift_s, y, t * scale_t + shift_t)
    before = _term_value(name, StepOutputs(s, y, t), logit_std=True)
    after = _term_value(name, moved, logit_std=True)
    assert after.item() == pytest.approx(before.item(), rel=1e-6, abs=1e-9)
    # Without the modifier a scale changes every one of these terms: the invariance is the modifier's.
    plain_before = _term_value(name, StepOutputs(s, y, t))
    plain_after = _term_value(name, moved)
    assert abs(plain_after.item() - plain_before.item()) > 1e-4 * max(abs(plain_before.item()), 1e-3)


def test_the_student_gets_a_gradient_through_the_standardization():
    s, y, t = _batch(5)
    s = s.clone().requires_grad_()
    Objective({"kd": {"weight": 1.0, "tau": 2.0, "logit_std": True}})(StepOutputs(s, y, t))[0].backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    # Standardization removes each row's mean and scale, so the gradient has no part along them
    # (along the scale up to the 1e-7 added to the std: grad . s ~ 1e-9 here, for |grad| ~ 1e-2, |s| ~ 10).
    assert torch.allclose(s.grad.sum(1), torch.zeros(12, dtype=s.dtype), atol=1e-12)
    assert torch.allclose((s.grad * s.detach()).sum(1), torch.zeros(12, dtype=s.dtype), atol=1e-7)


def test_presets_follow_the_authors_commands():
    """--logit-stand --base-temp 2 --kd-weight 9 of their tools/train.py: KD weight 9 at temperature 2
    beside the config's CE 0.1; DKD alpha 1 * 9, beta 8 * 9 at temperature 2 beside CE 1."""
    assert PRESETS["kd+logit_std"] == {"ce": 0.1, "kd": {"weight": 9.0, "tau": 2.0, "logit_std": True}}
    dkd = PRESETS["dkd+logit_std"]["dkd"]
    assert PRESETS["dkd+logit_std"]["ce"] == 1.0
    assert dkd["weight"] * dkd["alpha"] == 9.0 and dkd["weight"] * dkd["beta"] == 72.0 and dkd["tau"] == 2.0
    assert dkd["logit_std"] is True and dkd["warmup"] == 20
    assert "logit_std=True" in Objective.preset("kd+logit_std").describe()


def test_label_smoothing_is_not_logit_standardization():
    with pytest.raises(ValueError, match="label smoothing.*logit_std=True"):
        Objective({"label_smoothing": {"weight": 1.0, "logit_std": True}})
    with pytest.raises(ValueError, match="'ls' is not a loss term.*label smoothing.*kd\\+logit_std"):
        Objective({"ce": 1.0, "ls": 1.0})
    with pytest.raises(ValueError, match="'ce' does not take logit_std.*kd"):
        Objective({"ce": {"weight": 1.0, "logit_std": True}})
    with pytest.raises(ValueError, match="logit_std must be true or false"):
        Objective({"kd": {"weight": 1.0, "logit_std": "yes"}})
    assert "label smoothing" in LOSS_TERMS.get("label_smoothing").__doc__


@pytest.mark.parametrize("name", STANDARDIZED)
def test_no_standardized_term_syncs_with_the_host(name):
    s, y, t = _batch(6)
    cpu = StepOutputs(s.float(), y, t.float())
    meta = StepOutputs(s.float().to("meta").requires_grad_(), y.to("meta"), t.float().to("meta"))
    objective = Objective({name: {"weight": 1.0, "logit_std": True}})
    objective(cpu)
    objective.end_epoch()  # once an epoch, allowed to sync
    with no_host_sync():
        for _ in range(2):
            objective(meta)[0].backward()


@pytest.fixture
def teacher(tiny_info):
    torch.manual_seed(0)
    return build_model("cnn", len(tiny_info.class_names), tiny_info.image_shape, width=4).eval()


@pytest.mark.filterwarnings("ignore:the teacher is a bare")
def test_the_cache_keeps_exact_logits_and_the_term_standardizes_them(tiny_data, teacher, tmp_path):
    """The cache holds the teacher's raw logits; the term standardizes them when it reads them, so a
    student of the cached teacher trains as one of the online teacher."""
    objective = {"ce": 0.1, "kd": {"weight": 9.0, "tau": 2.0, "logit_std": True}}
    settings = dict(model_kwargs={"width": 4}, epochs=2, seed=1, progress=False, augment=False)
    online = train(tiny_data, "cnn", objective, teacher=teacher, teacher_cache=False, **settings)
    cached = train(tiny_data, "cnn", objective, teacher=teacher, teacher_cache=True, cache_dir=tmp_path, **settings)
    cols = ["train_kd", "val_loss", "val_top1_err"]
    torch.testing.assert_close(
        torch.tensor(online.history[cols].values), torch.tensor(cached.history[cols].values), rtol=1e-4, atol=1e-5
    )
    assert math.isfinite(online.history["train_kd"].iloc[-1])
    with pytest.raises(ValueError, match="cache_topk=2.*logit_std.*cache_topk=0"):
        train(tiny_data, "cnn", objective, teacher=teacher, teacher_cache=True, cache_topk=2, **settings)
