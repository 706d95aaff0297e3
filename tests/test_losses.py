"""Loss functions and terms of kdviz.losses against values worked out independently.

Every expected value here comes either from arithmetic written out in a comment, or from plain
numpy/python loops written from the formulas of docs/method.md (§1-3, "Scale convention"),
never from the library's own helpers.
"""

import math

import numpy as np
import pytest
import torch
from helpers import LOGIT_TERMS

from kdviz.losses import (
    LOSS_TERMS,
    Objective,
    StepOutputs,
    batch_class_gram,
    class_conditional_icc,
    class_conditional_mimic,
    cross_entropy,
    dist_loss,
    icc_mimic_frobenius,
    icc_mimic_kl,
    icc_mimic_pearson,
    kd_loss,
    label_smoothing,
    secondary_icc,
    sharpen_rows,
    teacher_icc_regularizer,
)

LN2 = math.log(2.0)


# ---------------------------------------------------------------- numpy references (from docs/method.md)
def np_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p, q):
    """sum_j p_j log(p_j / q_j) over the entries with p_j > 0 (0 log 0 = 0)."""
    total = 0.0
    for pj, qj in zip(np.ravel(p), np.ravel(q)):
        if pj > 0:
            total += pj * math.log(pj / qj)
    return total


def np_ce(logits, targets):
    p = np_softmax(logits)
    return float(np.mean([-math.log(p[i, y]) for i, y in enumerate(targets)]))


def np_kd(s, t, tau):
    ps, pt = np_softmax(np.asarray(s) / tau), np_softmax(np.asarray(t) / tau)
    return tau**2 * float(np.mean([np_kl(pt[i], ps[i]) for i in range(len(ps))]))


def np_gram(p):
    """G[j, k] = (1/B) sum_i P[i, j] P[i, k], by loops."""
    b, c = p.shape
    g = np.zeros((c, c))
    for i in range(b):
        for j in range(c):
            for k in range(c):
                g[j, k] += p[i, j] * p[i, k] / b
    return g


def np_target_rows(logits, targets, tau, power, c):
    """T of docs/method.md §2 from the correctly classified samples only, by loops."""
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    p = np_softmax(logits / tau)
    rows = np.zeros((c, c))
    for k in range(c):
        idx = [i for i in range(len(targets)) if targets[i] == k and logits[i].argmax() == k]
        if not idx:
            rows[k] = [0.0 if j == k else 1.0 / (c - 1) for j in range(c)]
            continue
        m = p[idx].mean(0)
        m2 = np.array([0.0 if j == k else m[j] / (1 - m[k]) for j in range(c)])
        t = m2**power
        rows[k] = t / t.sum()
    return rows


def np_teacher_reg(logits, targets, rows, tau):
    """tau^2 * mean_i sum_{j != y_i} T[y_i, j] log(T[y_i, j] / q_ij), q_i = softmax over non-targets."""
    logits = np.asarray(logits, dtype=np.float64)
    b, c = logits.shape
    total = 0.0
    for i in range(b):
        y = int(targets[i])
        others = [j for j in range(c) if j != y]
        e = [math.exp(logits[i, j] / tau) for j in others]
        q = {j: ej / sum(e) for j, ej in zip(others, e)}
        total += sum(rows[y, j] * math.log(rows[y, j] / q[j]) for j in others if rows[y, j] > 0)
    return tau**2 * total / b


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


def rand_logits(seed, b=6, c=4, scale=3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, generator=g) * scale).to(dtype)


# ---------------------------------------------------------------- 1. classic terms
# Hand example: softmax(log a) = a / sum(a), so these logits have probabilities
#   row 0: log[1, 2, 1] -> [0.25, 0.5, 0.25]     row 1: log[1, 1, 2] -> [0.25, 0.25, 0.5]
HAND_LOGITS = [[0.0, LN2, 0.0], [0.0, 0.0, LN2]]
HAND_TARGETS = [1, 0]


def test_cross_entropy_hand_example():
    # row 0: -log 0.5 = ln 2; row 1: -log 0.25 = 2 ln 2; mean = 1.5 ln 2
    got = cross_entropy(t64(HAND_LOGITS), torch.tensor(HAND_TARGETS))
    assert got.item() == pytest.approx(1.5 * LN2, rel=1e-12)


def test_label_smoothing_hand_example():
    # eps = 0.1, C = 3: target y gets 0.9 + 0.1/3 = 14/15, the others 1/30 each.
    # row 0 (y = 1, p = [1/4, 1/2, 1/4]): 2 * (1/30) * 2 ln2 + (14/15) * ln2 = (4/30 + 28/30) ln2 = 16/15 ln2
    # row 1 (y = 0, p = [1/4, 1/4, 1/2]): (14/15 + 1/30) * 2 ln2 + (1/30) * ln2 = 59/30 ln2
    # mean = (32/30 + 59/30) / 2 ln2 = 91/60 ln2
    got = label_smoothing(t64(HAND_LOGITS), torch.tensor(HAND_TARGETS), eps=0.1)
    assert got.item() == pytest.approx(91 / 60 * LN2, rel=1e-12)


def test_label_smoothing_matches_numpy_loop():
    z, y, eps = rand_logits(1, 5, 4), [0, 3, 1, 1, 2], 0.1
    p = np_softmax(z.numpy())
    expected = 0.0
    for i in range(5):
        soft = [(1 - eps) * (j == y[i]) + eps / 4 for j in range(4)]
        expected -= sum(soft[j] * math.log(p[i, j]) for j in range(4)) / 5
    assert label_smoothing(z, torch.tensor(y), eps).item() == pytest.approx(expected, rel=1e-10)
    assert label_smoothing(z, torch.tensor(y), 0.0).item() == pytest.approx(np_ce(z.numpy(), y), rel=1e-10)


def test_kd_loss_hand_example():
    # tau = 2, logits = 2 * log(a) so that softmax(logits / 2) = a / sum(a).
    # row 0: teacher [1/4, 1/2, 1/4], student [1/2, 1/4, 1/4]
    #        KL = 1/4 ln(1/2) + 1/2 ln 2 + 0 = 1/4 ln 2
    # row 1: teacher [1/2, 1/4, 1/4], student [1/4, 1/4, 1/2]
    #        KL = 1/2 ln 2 + 0 + 1/4 ln(1/2) = 1/4 ln 2
    # tau^2 * mean = 4 * 1/4 ln 2 = ln 2
    teacher = t64([[0.0, 2 * LN2, 0.0], [2 * LN2, 0.0, 0.0]])
    student = t64([[2 * LN2, 0.0, 0.0], [0.0, 0.0, 2 * LN2]])
    assert kd_loss(student, teacher, tau=2.0).item() == pytest.approx(LN2, rel=1e-12)


def test_kd_loss_matches_numpy_loop_and_is_zero_for_identical_logits():
    s, t = rand_logits(2, 2, 3), rand_logits(3, 2, 3)
    assert kd_loss(s, t, tau=3.0).item() == pytest.approx(np_kd(s.numpy(), t.numpy(), 3.0), rel=1e-10)
    assert kd_loss(t, t, tau=3.0).item() == pytest.approx(0.0, abs=1e-12)


def test_kd_loss_detaches_teacher():
    s, t = rand_logits(4).requires_grad_(), rand_logits(5).requires_grad_()
    kd_loss(s, t).backward()
    assert t.grad is None
    assert s.grad.abs().sum() > 0


# ---------------------------------------------------------------- 2. ICC matrices
def test_class_conditional_icc_one_hot_predictions_give_identity():
    y = torch.tensor([0, 1, 2, 3, 1, 2])
    probs = torch.nn.functional.one_hot(y, 4).double()
    assert torch.equal(class_conditional_icc(probs, y, 4), torch.eye(4, dtype=torch.float64))


def test_class_conditional_icc_uniform_predictions_give_one_over_c():
    y = torch.tensor([0, 1, 2, 3, 3])
    m = class_conditional_icc(torch.full((5, 4), 0.25, dtype=torch.float64), y, 4)
    assert torch.allclose(m, torch.full((4, 4), 0.25, dtype=torch.float64))


def test_class_conditional_icc_missing_class_is_nan_row_not_zero():
    y = torch.tensor([0, 0, 1, 3])  # class 2 has no sample
    m = class_conditional_icc(torch.full((4, 4), 0.25, dtype=torch.float64), y, 4)
    assert torch.isnan(m[2]).all()
    assert not torch.isnan(m[[0, 1, 3]]).any()


# 4 samples, 3 classes, class 2 absent:
#   class 0: [0.7, 0.2, 0.1], [0.5, 0.4, 0.1] -> mean [0.6, 0.3, 0.1]
#   class 1: [0.2, 0.6, 0.2], [0.1, 0.8, 0.1] -> mean [0.15, 0.7, 0.15]
HAND_PROBS = [[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]]
HAND_Y = [0, 1, 0, 1]
NAN = float("nan")
HAND_M = [[0.6, 0.3, 0.1], [0.15, 0.7, 0.15], [NAN, NAN, NAN]]
# M2 row 0: 1 - 0.6 = 0.4 -> [0, 0.3/0.4, 0.1/0.4] = [0, 0.75, 0.25]
# M2 row 1: 1 - 0.7 = 0.3 -> [0.15/0.3, 0, 0.15/0.3] = [0.5, 0, 0.5]
HAND_M2 = [[0.0, 0.75, 0.25], [0.5, 0.0, 0.5], [NAN, NAN, NAN]]


def test_class_conditional_icc_hand_example():
    m = class_conditional_icc(t64(HAND_PROBS), torch.tensor(HAND_Y), 3)
    assert torch.allclose(m, t64(HAND_M), equal_nan=True)


def test_secondary_icc_hand_example_nan_row_stays_nan():
    m2 = secondary_icc(t64(HAND_M))
    assert torch.allclose(m2, t64(HAND_M2), equal_nan=True)
    assert torch.isnan(m2[2]).all()


def test_secondary_icc_formula_on_random_rows():
    g = torch.Generator().manual_seed(7)
    m = torch.softmax(torch.randn(5, 5, generator=g, dtype=torch.float64), 1).numpy()
    expected = np.array([[0.0 if j == k else m[k, j] / (1 - m[k, k]) for j in range(5)] for k in range(5)])
    assert np.allclose(secondary_icc(torch.from_numpy(m)).numpy(), expected, rtol=1e-12, atol=0)


def test_sharpen_rows_power_one_renormalises():
    # row 0: [0, 2, 6] -> [0, 2/8, 6/8]; row 1: [1, 0, 1] -> [1/2, 0, 1/2]; row 2: [3, 1, 0] -> [3/4, 1/4, 0]
    got = sharpen_rows(t64([[0, 2, 6], [1, 0, 1], [3, 1, 0]]), 1.0)
    assert torch.allclose(got, t64([[0, 0.25, 0.75], [0.5, 0, 0.5], [0.75, 0.25, 0]]))


def test_sharpen_rows_power_two_squares_then_renormalises():
    # row 0: [0, .5, .3, .2]^2 = [0, .25, .09, .04], sum .38 -> [0, 25/38, 9/38, 4/38]
    # row 1: [.5, 0, .5, 0]^2 = [.25, 0, .25, 0] -> [.5, 0, .5, 0]
    # row 2: NaN -> uniform over j != 2; row 3: all zero -> uniform over j != 3
    m2 = t64([[0, 0.5, 0.3, 0.2], [0.5, 0, 0.5, 0], [NAN] * 4, [0, 0, 0, 0]])
    third = 1 / 3
    expected = t64(
        [
            [0, 25 / 38, 9 / 38, 4 / 38],
            [0.5, 0, 0.5, 0],
            [third, third, 0, third],
            [third, third, third, 0],
        ]
    )
    got = sharpen_rows(m2, 2.0)
    assert torch.allclose(got, expected)
    assert torch.equal(torch.diagonal(got), torch.zeros(4, dtype=torch.float64))


def test_sharpen_rows_of_hand_example():
    # HAND_M2 at power 2: row 0 [0, .5625, .0625] / .625 = [0, .9, .1]; row 1 [.5, 0, .5]; row 2 (NaN) [.5, .5, 0]
    got = sharpen_rows(secondary_icc(t64(HAND_M)), 2.0)
    assert torch.allclose(got, t64([[0, 0.9, 0.1], [0.5, 0, 0.5], [0.5, 0.5, 0]]))


def test_sharpen_rows_rejects_non_positive_power():
    with pytest.raises(ValueError, match="power"):
        sharpen_rows(t64(HAND_M2), 0.0)


def test_secondary_icc_of_near_certain_class_float32_rows_sum_to_one():
    """A class predicted with p_k = 1 - 2.25e-7 (margin 64 at tau 4) in float32.

    By hand: off-diagonals e^-16 / (1 + 2 e^-16) = 1.125e-7 each, so M2 row 0 = [0, 0.5, 0.5]
    (the two non-target probabilities are equal). 1 - M[k, k] cancels catastrophically in
    float32 (M[k, k] rounds to 1 - 1.19e-7), whereas sum_{j != k} M[k, j] does not.
    """
    probs = torch.softmax(torch.tensor([[64.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) / 4, 1)
    m2 = secondary_icc(class_conditional_icc(probs, torch.tensor([0, 1, 2]), 3))
    assert m2[0].tolist() == pytest.approx([0.0, 0.5, 0.5], abs=1e-3)


def test_sharpen_rows_of_certain_class_float32_is_finite():
    """Margin 100 at tau 4 in float32: p_0 rounds to exactly 1.0 but p_1 = p_2 = e^-25 = 1.4e-11 > 0.

    The secondary row is [0, 1/2, 1/2] by symmetry, so T[0] = [0, 1/2, 1/2] at any power; it must
    never be NaN (sharpen_rows promises rows summing to 1).
    """
    probs = torch.softmax(torch.tensor([[100.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) / 4, 1)
    rows = sharpen_rows(secondary_icc(class_conditional_icc(probs, torch.tensor([0, 1, 2]), 3)), 2.0)
    assert torch.isfinite(rows).all(), rows
    assert rows[0].tolist() == pytest.approx([0.0, 0.5, 0.5], abs=1e-6)


# ---------------------------------------------------------------- 3. teacher ICC regulariser
def test_teacher_icc_regularizer_hand_example():
    # tau = 1, one sample of class 0, logits [7, 0, ln 3]: q over {1, 2} = [1/4, 3/4] (the 7 is ignored)
    # T[0] = [0, 1/2, 1/2]: KL = 1/2 ln(0.5/0.25) + 1/2 ln(0.5/0.75) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3)
    rows = t64([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    got = teacher_icc_regularizer(t64([[7.0, 0.0, math.log(3)]]), torch.tensor([0]), rows, tau=1.0)
    assert got.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)


def test_teacher_icc_regularizer_matches_numpy_loop():
    c, tau = 4, 2.0
    z, y = rand_logits(11, 7, c), [0, 1, 2, 3, 1, 0, 2]
    g = torch.Generator().manual_seed(12)
    raw = torch.rand(c, c, generator=g, dtype=torch.float64) * (1 - torch.eye(c, dtype=torch.float64))
    raw[3, 0] = 0.0  # a zero entry: 0 log 0 = 0
    rows = raw / raw.sum(1, keepdim=True)
    expected = np_teacher_reg(z.numpy(), y, rows.numpy(), tau)
    assert teacher_icc_regularizer(z, torch.tensor(y), rows, tau).item() == pytest.approx(expected, rel=1e-10)


def test_teacher_icc_regularizer_gradient():
    c = 4
    z = rand_logits(13, 5, c).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 2])
    rows = ((1 - torch.eye(c, dtype=torch.float64)) / (c - 1)).requires_grad_()
    teacher_icc_regularizer(z, y, rows).backward()
    assert rows.grad is None  # the target rows are detached
    assert torch.all(z.grad[torch.arange(5), y] == 0)  # the target logit takes no part
    assert z.grad.abs().sum() > 0


# ---------------------------------------------------------------- 4. ICC mimic terms
def test_batch_class_gram_is_a_joint_distribution_matching_loops():
    p = torch.softmax(rand_logits(21, 5, 3), 1)
    g = batch_class_gram(p)
    assert g.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (g >= 0).all()
    assert np.allclose(g.numpy(), np_gram(p.numpy()), rtol=1e-12, atol=0)


def test_icc_mimic_kl_matches_numpy():
    s, t, tau = rand_logits(22, 6, 4), rand_logits(23, 6, 4), 2.0
    gs, gt = np_gram(np_softmax(s.numpy() / tau)), np_gram(np_softmax(t.numpy() / tau))
    expected = tau**2 * np_kl(gt, gs)
    assert icc_mimic_kl(s, t, tau).item() == pytest.approx(expected, rel=1e-10)


def test_icc_mimic_kl_is_zero_for_identical_logits():
    z = rand_logits(24, 6, 4, dtype=torch.float32)
    assert icc_mimic_kl(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_icc_mimic_kl_gradient_reaches_student_only():
    s = rand_logits(25, 6, 4).requires_grad_()
    t = rand_logits(26, 6, 4).requires_grad_()
    icc_mimic_kl(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None or torch.all(t.grad == 0)


def test_icc_mimic_frobenius_matches_numpy():
    s, t, tau = rand_logits(27, 6, 4), rand_logits(28, 6, 4), 3.0
    gs, gt = np_gram(np_softmax(s.numpy() / tau)), np_gram(np_softmax(t.numpy() / tau))
    expected = float(((gs - gt) ** 2).sum())
    assert icc_mimic_frobenius(s, t, tau).item() == pytest.approx(expected, rel=1e-10)


def test_icc_mimic_pearson_matches_numpy_corrcoef():
    s, t, tau = rand_logits(29, 8, 4), rand_logits(30, 8, 4), 2.0
    rs = np.corrcoef(np_softmax(s.numpy() / tau), rowvar=False)  # C x C, class columns across the batch
    rt = np.corrcoef(np_softmax(t.numpy() / tau), rowvar=False)
    expected = float(((rs - rt) ** 2).mean())
    assert icc_mimic_pearson(s, t, tau).item() == pytest.approx(expected, rel=1e-6)


def test_class_conditional_mimic_matches_numpy_loop():
    c, tau = 4, 2.0
    s, t = rand_logits(31, 7, c), rand_logits(32, 7, c)
    y = [0, 0, 1, 3, 3, 3, 1]  # class 2 absent
    ps, pt = np_softmax(s.numpy() / tau), np_softmax(t.numpy() / tau)
    expected = 0.0
    for k in range(c):
        idx = [i for i in range(7) if y[i] == k]
        if idx:
            expected += len(idx) / 7 * np_kl(pt[idx].mean(0), ps[idx].mean(0))
    expected *= tau**2
    assert class_conditional_mimic(s, t, torch.tensor(y), tau).item() == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- 5. DIST
def np_dist(s, t, tau, inter_w=1.0, intra_w=1.0):
    ps, pt = np_softmax(s / tau), np_softmax(t / tau)
    inter = 1 - np.mean([np.corrcoef(ps[i], pt[i])[0, 1] for i in range(ps.shape[0])])
    intra = 1 - np.mean([np.corrcoef(ps[:, j], pt[:, j])[0, 1] for j in range(ps.shape[1])])
    return tau**2 * (inter_w * inter + intra_w * intra)


def test_dist_loss_matches_numpy_corrcoef():
    s, t = rand_logits(33, 8, 5), rand_logits(34, 8, 5)
    assert dist_loss(s, t, 4.0).item() == pytest.approx(np_dist(s.numpy(), t.numpy(), 4.0), rel=1e-6)
    got = dist_loss(s, t, 2.0, inter_weight=2.0, intra_weight=0.5).item()
    assert got == pytest.approx(np_dist(s.numpy(), t.numpy(), 2.0, 2.0, 0.5), rel=1e-6)


def test_dist_loss_is_zero_for_identical_inputs():
    # Not exactly 0: the library's Pearson adds eps = 1e-8 to the product of norms, so r = |a|^2 / (|a|^2 + 1e-8)
    # (here about 6.5e-6 after the tau^2 = 16). Non-identical inputs give O(1) values (test above).
    z = rand_logits(35, 8, 5)
    assert dist_loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-4)


# ---------------------------------------------------------------- 6. batch-size invariance, every term
def _batch(seed, b=12, c=5, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(b, c, generator=g) * 4
    logits = teacher + torch.randn(b, c, generator=g) * 3
    targets = teacher.argmax(1)
    targets[::4] = torch.randint(0, c, (len(targets[::4]),), generator=g)  # some labels differ
    return logits.to(dtype), targets, teacher.to(dtype)


# The feature terms (FitNet, AT, CRD) read stages, not logits: tests/test_losses_baselines.py checks them.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", LOGIT_TERMS)
def test_every_term_is_invariant_to_repeating_the_batch(name, dtype):
    logits, targets, teacher = _batch(40, dtype=dtype)
    term = LOSS_TERMS.get(name)()
    term(StepOutputs(logits, targets, teacher))
    term.end_epoch()  # stateful terms get their target; a no-op for the others
    once = term(StepOutputs(logits, targets, teacher)).item()
    twice = term(
        StepOutputs(torch.cat([logits, logits]), torch.cat([targets, targets]), torch.cat([teacher, teacher]))
    ).item()
    assert math.isfinite(once) and once != 0.0
    assert twice == pytest.approx(once, rel=1e-5)


def test_batch_invariance_check_would_catch_an_unnormalised_gram():
    # The check above can fail: the first draft's G = P^T P (no / B) doubles on a repeated batch.
    p = torch.softmax(rand_logits(41, 6, 4), 1)
    pp = torch.cat([p, p])
    assert (pp.T @ pp).sum().item() == pytest.approx(2 * (p.T @ p).sum().item())
    assert batch_class_gram(pp).sum().item() == pytest.approx(batch_class_gram(p).sum().item())


# ---------------------------------------------------------------- 7. the icc_teacher term
def test_icc_teacher_is_zero_before_first_epoch_then_matches_numpy():
    c, tau = 4, 4.0
    z = rand_logits(50, 16, c, scale=4.0, dtype=torch.float32)
    y = z.argmax(1)
    y[:3] = (y[:3] + 1) % c  # three misclassified samples
    term = LOSS_TERMS.get("icc_teacher")()
    assert term(StepOutputs(z, y)).item() == 0.0
    term.end_epoch()
    rows = np_target_rows(z.numpy(), y.numpy(), tau, 1.0, c)
    assert np.allclose(term.target.numpy(), rows, atol=1e-6)
    got = term(StepOutputs(z, y)).item()
    assert got > 0
    assert got == pytest.approx(np_teacher_reg(z.numpy(), y.numpy(), rows, tau), rel=1e-4)


def test_icc_teacher_target_uses_only_correctly_classified_samples():
    z = torch.tensor(
        [
            [5.0, 1.0, 0.0],  # class 0, correct
            [1.0, 4.0, 0.0],  # class 0, misclassified as 1: must not enter row 0
            [0.0, 6.0, 2.0],  # class 1, correct
            [3.0, 0.0, 1.0],  # class 2, misclassified as 0
            [0.0, 2.0, 1.0],  # class 2, misclassified as 1
        ]
    )
    y = torch.tensor([0, 0, 1, 2, 2])
    term = LOSS_TERMS.get("icc_teacher")()
    term(StepOutputs(z, y))
    term.end_epoch()
    # row 0 from sample 0 alone: p_j / sum_{j != 0} p_j = e^{1/4} / (e^{1/4} + 1), 1 / (e^{1/4} + 1)
    e = math.exp(0.25)
    assert term.target[0].tolist() == pytest.approx([0.0, e / (e + 1), 1 / (e + 1)], abs=1e-6)
    # row 1 from sample 2: e^0 : e^{2/4} over {0, 2}
    h = math.exp(0.5)
    assert term.target[1].tolist() == pytest.approx([1 / (1 + h), 0.0, h / (1 + h)], abs=1e-6)
    # class 2 has no correct sample: uniform over j != 2
    assert term.target[2].tolist() == pytest.approx([0.5, 0.5, 0.0], abs=1e-7)


def test_icc_teacher_ema_half_averages_old_and_new_target():
    c, tau = 4, 4.0
    z1 = rand_logits(51, 16, c, scale=4.0, dtype=torch.float32)
    z2 = rand_logits(52, 16, c, scale=4.0, dtype=torch.float32)
    y1, y2 = z1.argmax(1), z2.argmax(1)
    y1[:4] = torch.arange(4)
    y2[:4] = torch.arange(4)
    term = LOSS_TERMS.get("icc_teacher")(ema=0.5)
    term(StepOutputs(z1, y1))
    term.end_epoch()
    term(StepOutputs(z2, y2))
    term.end_epoch()
    old = np_target_rows(z1.numpy(), y1.numpy(), tau, 1.0, c)
    new = np_target_rows(z2.numpy(), y2.numpy(), tau, 1.0, c)
    assert np.abs(old - new).max() > 1e-2  # the two epochs differ, so the check can fail
    assert np.allclose(term.target.numpy(), 0.5 * old + 0.5 * new, atol=1e-6)


def test_icc_teacher_certain_class_float32_gives_finite_gradient():
    """End to end: one epoch in which every correct class-0 sample has margin 100 (p_0 == 1.0f).

    Target row 0 should be [0, 1/2, 1/2] (symmetric non-targets); with power = 2 the term must
    still produce a finite loss and finite gradients on the next epoch.
    """
    term = LOSS_TERMS.get("icc_teacher")(power=2.0)
    y = torch.tensor([0, 1, 2])
    term(StepOutputs(torch.tensor([[100.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]]), y))
    term.end_epoch()
    z = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]], requires_grad=True)
    term(StepOutputs(z, y)).backward()
    assert torch.isfinite(z.grad).all(), (z.grad, term.target)
    assert term.target[0].tolist() == pytest.approx([0.0, 0.5, 0.5], abs=1e-6)


def test_online_label_smoothing_matches_numpy_after_one_epoch():
    c = 3
    z = torch.tensor([[3.0, 1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 2.0, 0.5], [2.0, 1.0, 0.0]])
    y = torch.tensor([0, 0, 1, 2])  # class 2 misclassified: falls back to one-hot
    term = LOSS_TERMS.get("online_label_smoothing")()
    assert term(StepOutputs(z, y)).item() == 0.0
    term.end_epoch()
    p = np_softmax(z.numpy())  # tau = 1
    soft = [p[[0, 1]].mean(0), p[2], np.array([0.0, 0.0, 1.0])]
    expected = -np.mean([sum(soft[y[i]][j] * math.log(p[i, j]) for j in range(c)) for i in range(4)])
    assert term(StepOutputs(z, y)).item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- 8. Objective
def _np_parts(logits, targets, teacher):
    z, t, y = logits.numpy(), teacher.numpy(), targets.numpy()
    ce = np_ce(z, y)
    kd = np_kd(z, t, 4.0)
    gs, gt = np_gram(np_softmax(z / 4)), np_gram(np_softmax(t / 4))
    return ce, kd, 16 * np_kl(gt, gs)


def test_objective_total_is_weighted_sum():
    logits, targets, teacher = _batch(60, b=6, c=4, dtype=torch.float64)
    ce, kd, _ = _np_parts(logits, targets, teacher)
    for obj in (Objective({"ce": 0.1, "kd": 0.9}), Objective.parse("ce=0.1,kd=0.9")):
        total, parts = obj(StepOutputs(logits, targets, teacher))
        assert total.item() == pytest.approx(0.1 * ce + 0.9 * kd, rel=1e-10)
        assert parts["ce"].item() == pytest.approx(ce, rel=1e-10)
        assert parts["kd"].item() == pytest.approx(kd, rel=1e-10)


def test_objective_preset_kd_icc_mimic():
    logits, targets, teacher = _batch(61, b=6, c=4, dtype=torch.float64)
    ce, kd, mimic = _np_parts(logits, targets, teacher)
    total, _ = Objective.preset("kd+icc_mimic")(StepOutputs(logits, targets, teacher))
    assert total.item() == pytest.approx(0.1 * ce + 0.9 * kd + 0.1 * mimic, rel=1e-10)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Objective({"ce": 0.1, "icc_mimc": 1.0}),
        lambda: Objective.parse("ce=0.1,kdd=0.9"),
    ],
)
def test_unknown_term_lists_valid_choices(build):
    with pytest.raises((KeyError, ValueError)) as info:
        build()
    assert "icc_mimic" in str(info.value) and "kd" in str(info.value)


def test_unknown_preset_lists_valid_choices():
    with pytest.raises(ValueError, match="kd\\+icc_mimic"):
        Objective.preset("kd+icc")


def test_negative_weight_raises():
    with pytest.raises(ValueError):
        Objective({"ce": -0.1, "kd": 0.9})
    with pytest.raises(ValueError):
        Objective.parse("ce=0.1,kd=-0.9")


@pytest.mark.parametrize(
    "name, valid",
    [
        ("kd", ["tau"]),
        ("dist", ["tau", "inter_weight", "intra_weight"]),
        ("icc_teacher", ["tau", "power", "ema"]),
        ("online_label_smoothing", ["tau", "ema"]),
    ],
)
def test_unknown_parameter_raises_type_error_listing_valid_ones(name, valid):
    with pytest.raises(TypeError) as info:
        Objective({name: {"weight": 1.0, "temperature": 4.0}})
    message = str(info.value)
    assert "temperature" in message
    for param in valid:
        assert param in message, f"{message!r} does not list {param!r}"


TAU_TERMS = [
    "kd",
    "icc_mimic",
    "icc_mimic_frobenius",
    "icc_mimic_pearson",
    "icc_mimic_classwise",
    "dist",
    "icc_teacher",
    "online_label_smoothing",
]


@pytest.mark.parametrize("tau", [0.0, -1.0])
@pytest.mark.parametrize("name", TAU_TERMS)
def test_non_positive_tau_raises_value_error_naming_tau(name, tau):
    logits, targets, teacher = _batch(62, b=4, c=3)
    with pytest.raises(ValueError, match="tau"):
        obj = Objective({name: {"weight": 1.0, "tau": tau}})  # at construction or at the first call
        obj(StepOutputs(logits, targets, teacher))
        obj.end_epoch()
        obj(StepOutputs(logits, targets, teacher))


@pytest.mark.parametrize(
    "written, kd",
    [
        ("kd", {"weight": 0.9, "tau": 4.0}),
        ("ce=0.1,kd=0.9", {"weight": 0.9}),
        ({"ce": 0.1, "kd": {"weight": 0.9, "tau": 2.0}}, {"weight": 0.9, "tau": 2.0}),
    ],
)
def test_coerce_reads_every_written_form(written, kd):
    assert Objective.coerce(written).spec == {"ce": {"weight": 0.1}, "kd": kd}
    objective = Objective({"ce": 1.0})
    assert Objective.coerce(objective) is objective
    with pytest.raises(TypeError, match="preset or 'ce=0.1,kd=0.9' string"):
        Objective.coerce(0.9)


def test_with_params_overlays_term_parameters_and_names_unknown_terms():
    base = Objective.preset("kd+icc_mimic")
    tuned = base.with_params({"kd": {"tau": 2.0}, "icc_mimic": {"weight": 0.3}})
    assert tuned.spec["kd"] == {"weight": 0.9, "tau": 2.0}
    assert tuned.weights["icc_mimic"] == 0.3
    assert base.spec["kd"]["tau"] == 4.0  # the original is unchanged
    with pytest.raises(ValueError, match=r"'dist', which is not in the objective \(ce, kd, icc_mimic\)"):
        base.with_params({"dist": {"tau": 2.0}})
    with pytest.raises(ValueError, match="tau must be > 0"):
        base.with_params({"kd": {"tau": 0.0}})


@pytest.mark.parametrize("power", [0.0, -1.0])
def test_non_positive_power_raises_at_construction(power):
    with pytest.raises(ValueError, match="power must be > 0"):
        Objective({"icc_teacher": {"weight": 1.0, "power": power}})


def test_needs_teacher():
    assert Objective({"kd": 1.0}).needs_teacher is True
    assert Objective({"ce": 1.0}).needs_teacher is False
    assert Objective({"ce": 0.1, "kd": 0.9}).needs_teacher is True
    assert LOSS_TERMS.get("icc_teacher")().needs_teacher is False
