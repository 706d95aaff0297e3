"""The baseline methods' losses (DKD, FitNet, AT, CRD) against their papers' formulas.

Every expected value is computed here, in numpy or plain python loops written from the papers'
equations, never with the library's helpers.
"""
import math

import numpy as np
import pytest
import torch

import kdviz
from kdviz.losses import LOSS_TERMS, PRESETS, StepOutputs, dkd_loss, kd_loss, nckd, tckd


def np_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p, q):
    return sum(pj * math.log(pj / qj) for pj, qj in zip(p, q) if pj > 0)


# ---------------------------------------------------------------- DKD (Zhao et al. 2022, eqs. 1-7)
# 3 samples, 4 classes; the second teacher row is confident, the third student row is wrong.
S = [[1.0, 0.5, -0.5, 0.0], [0.2, 2.0, 0.1, -1.0], [3.0, 0.0, 0.5, 1.0]]
T = [[2.0, 1.0, -1.0, 0.5], [-1.0, 6.0, 0.0, 1.0], [0.0, 0.5, 2.5, 1.5]]
Y = [0, 1, 2]


def np_dkd_parts(s, t, y, tau):
    """Per sample: (TCKD, NCKD, KD, teacher's p_t), all without tau^2."""
    out = []
    for si, ti, yi in zip(s, t, y):
        ps, pt = np_softmax(np.asarray(si) / tau), np_softmax(np.asarray(ti) / tau)
        b_s, b_t = [ps[yi], 1 - ps[yi]], [pt[yi], 1 - pt[yi]]
        others = [j for j in range(len(si)) if j != yi]
        hat_s = np_softmax([si[j] / tau for j in others])  # softmax over the non-target logits
        hat_t = np_softmax([ti[j] / tau for j in others])
        out.append((np_kl(b_t, b_s), np_kl(hat_t, hat_s), np_kl(pt, ps), pt[yi]))
    return np.array(out)


def _tensors(dtype=torch.float64):
    return torch.tensor(S, dtype=dtype), torch.tensor(T, dtype=dtype), torch.tensor(Y)


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_tckd_and_nckd_match_the_formulas(tau):
    s, t, y = _tensors()
    ref = np_dkd_parts(S, T, Y, tau)
    np.testing.assert_allclose(tckd(s, t, y, tau).numpy(), ref[:, 0], rtol=1e-10)
    np.testing.assert_allclose(nckd(s, t, y, tau).numpy(), ref[:, 1], rtol=1e-10)


@pytest.mark.parametrize("alpha, beta", [(1.0, 8.0), (0.5, 2.0), (0.0, 1.0)])
def test_dkd_loss_is_the_weighted_mean_times_tau_squared(alpha, beta):
    s, t, y = _tensors()
    ref = np_dkd_parts(S, T, Y, 4.0)
    expected = 16 * np.mean(alpha * ref[:, 0] + beta * ref[:, 1])
    assert dkd_loss(s, t, y, tau=4.0, alpha=alpha, beta=beta).item() == pytest.approx(expected, rel=1e-10)


def test_kd_is_tckd_plus_teacher_nontarget_mass_times_nckd_per_sample():
    # The decomposition of the paper's eq. 7: KD = TCKD + (1 - p_t^T) NCKD, sample by sample.
    s, t, y = _tensors()
    tau = 4.0
    p_t = torch.softmax(t / tau, 1)[torch.arange(3), y]
    decomposed = tckd(s, t, y, tau) + (1 - p_t) * nckd(s, t, y, tau)
    ref = np_dkd_parts(S, T, Y, tau)
    np.testing.assert_allclose(decomposed.numpy(), ref[:, 2], rtol=1e-10)  # the per-sample KL of KD
    assert (tau**2 * decomposed.mean()).item() == pytest.approx(kd_loss(s, t, tau).item(), rel=1e-10)
    # With alpha = beta = 1, DKD drops exactly the (1 - p_t^T) weight: it exceeds KD by the NCKD it frees.
    extra = tau**2 * (p_t * nckd(s, t, y, tau)).mean()
    assert dkd_loss(s, t, y, tau, 1.0, 1.0).item() == pytest.approx((kd_loss(s, t, tau) + extra).item(), rel=1e-10)


def test_dkd_is_zero_for_identical_logits_and_has_finite_gradients_when_confident():
    s, t, y = _tensors()
    assert dkd_loss(t.clone(), t, y).item() == pytest.approx(0.0, abs=1e-12)
    confident = torch.tensor([[60.0, 0.0, -5.0, 1.0]], dtype=torch.float32, requires_grad=True)
    loss = dkd_loss(confident, torch.tensor([[50.0, 1.0, 0.0, 2.0]]), torch.tensor([0]), tau=1.0)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(confident.grad).all()


def test_dkd_term_ramps_up_over_the_warmup_and_keeps_its_epoch_in_the_state():
    s, t, y = _tensors()
    full = dkd_loss(s, t, y, tau=4.0, alpha=1.0, beta=8.0).item()
    term = LOSS_TERMS.get("dkd")(warmup=4)
    seen = []
    for _ in range(6):
        seen.append(term(StepOutputs(s, y, t)).item() / full)
        term.end_epoch()
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])  # (epoch + 1) / 4, capped at 1
    restored = LOSS_TERMS.get("dkd")(warmup=4)
    restored.load_state_dict({"epoch": 1})
    assert restored(StepOutputs(s, y, t)).item() == pytest.approx(0.5 * full)
    assert term.state_dict() == {"epoch": 6}
    assert LOSS_TERMS.get("dkd")(warmup=0)(StepOutputs(s, y, t)).item() == pytest.approx(full)


@pytest.mark.parametrize("params, match", [
    ({"alpha": -1.0}, "alpha"), ({"warmup": -2}, "warmup"), ({"tau": 0.0}, "tau"), ({"gamma": 1.0}, "gamma"),
])
def test_dkd_refuses_bad_parameters(params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        LOSS_TERMS.get("dkd")(**params)


def test_dkd_preset_is_the_authors_setting():
    assert PRESETS["dkd"] == {"ce": 1.0, "dkd": {"weight": 1.0, "tau": 4.0, "alpha": 1.0, "beta": 8.0, "warmup": 20}}
    objective = kdviz.Objective({"ce": 1, "dkd": {"alpha": 1, "beta": 8}})
    assert objective.needs_teacher


@pytest.fixture(scope="module")
def digits():
    return kdviz.load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def digits_teacher(digits):
    return kdviz.train_teacher(digits, "cnn", "ce", model_kwargs={"width": 8}, epochs=4, progress=False)


def test_dkd_student_learns_on_digits(digits, digits_teacher):
    result = kdviz.distill(digits, digits_teacher, "cnn", {"ce": 1, "dkd": {"beta": 8, "warmup": 2}},
                           model_kwargs={"width": 4}, epochs=3, progress=False)
    h = result.history
    assert h["val_top1_err"].min() < 0.3  # chance is 0.9
    assert h["train_dkd"].iloc[0] > 0
