"""The baseline methods' losses (DKD, FitNet, AT, CRD) against their papers' formulas.

Every expected value is computed here, in numpy or plain python loops written from the papers'
equations, never with the library's helpers.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import kdviz
from kdviz.losses import LOSS_TERMS, PRESETS, StepOutputs, dkd_loss, kd_loss, nckd, tckd

pytestmark = pytest.mark.filterwarnings("ignore:the teacher is a bare")  # the tests' teachers are plain modules


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


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"warmup": -2}, "warmup"),
        ({"tau": 0.0}, "tau"),
        ({"gamma": 1.0}, "gamma"),
    ],
)
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


# Weights for 8 px digits: FitNet's and AT's losses are means over positions, so maps of 8, 4 and 2 px
# (CIFAR's: 32, 16 and 8) make CIFAR's weights (100, 1000) 16 to 64 times stronger; at those the
# 2x2 attention maps of the last stage hold a small student back for many epochs.
@pytest.mark.parametrize(
    "objective",
    [
        {"ce": 1, "fitnet": 10},
        {"ce": 1, "at": 10},
        {"ce": 1, "crd": {"weight": 0.8, "negatives": 512}},
        {"ce": 1, "fitnet": 10, "at": 10},  # two feature terms at once
    ],
    ids=["fitnet", "at", "crd", "fitnet+at"],
)
def test_feature_term_students_learn_on_digits(digits, digits_teacher, objective):
    # A cnn of width 4 from a teacher of width 8: every stage differs in channels, so FitNet regresses.
    result = kdviz.distill(
        digits, digits_teacher, "cnn", objective, model_kwargs={"width": 4}, epochs=4, progress=False
    )
    h = result.history
    assert h["val_top1_err"].min() < 0.25  # chance is 0.9
    for name in objective:
        assert h[f"train_{name}"].notna().all() and h[f"train_{name}"].iloc[0] > 0


def test_dkd_student_learns_on_digits(digits, digits_teacher):
    result = kdviz.distill(
        digits,
        digits_teacher,
        "cnn",
        {"ce": 1, "dkd": {"beta": 8, "warmup": 2}},
        model_kwargs={"width": 4},
        epochs=3,
        progress=False,
    )
    h = result.history
    assert h["val_top1_err"].min() < 0.3  # chance is 0.9
    assert h["train_dkd"].iloc[0] > 0


# ---------------------------------------------------------------- FitNet (Romero et al. 2015)
from kdviz.losses import Objective, at_loss, hint_loss, nce_loss  # noqa: E402
from kdviz.losses.crd import ContrastMemory  # noqa: E402

CPU = torch.device("cpu")


def _example(student, teacher, b=2):
    """StepOutputs of one batch whose stages have these shapes (their "pool" is the features)."""
    s, t = ({k: torch.zeros(b, *v) for k, v in shapes.items()} for shapes in (student, teacher))
    return StepOutputs(
        torch.zeros(b, 3),
        torch.zeros(b, dtype=torch.long),
        torch.zeros(b, 3),
        s.get("pool"),
        t.get("pool"),
        torch.arange(b),
        s,
        t,
    )


def _setup(term, student, teacher, n_train=10):
    term.setup(_example(student, teacher), torch.arange(n_train) % 3)  # training labels of 3 classes
    return term


def np_batchnorm_train(y, eps=1e-5):
    """Batch norm in training mode with unit scale and zero shift: per channel over (batch, h, w), biased variance."""
    axes = (0, 2, 3) if y.ndim == 4 else (0,)
    mean, var = y.mean(axis=axes, keepdims=True), y.var(axis=axes, keepdims=True)
    return (y - mean) / np.sqrt(var + eps)


def np_block_mean(x, k):
    """Average over k x k blocks of [B, C, H, W]."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // k, k, w // k, k).mean(axis=(3, 5))


def test_fitnet_term_regresses_and_pools_as_the_formula_says():
    g = torch.Generator().manual_seed(1)
    fs, ft = (
        torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64),
        torch.randn(3, 3, 2, 2, generator=g, dtype=torch.float64),
    )
    term = LOSS_TERMS.get("fitnet")(student_stage="a", teacher_stage="b")
    _setup(term, {"a": (2, 4, 4)}, {"b": (3, 2, 2)})
    term.double()
    w = torch.tensor([[1.0, -1.0], [0.5, 2.0], [0.0, 3.0]], dtype=torch.float64)  # [C_t, C_s]
    with torch.no_grad():
        term.regressor.net[0].weight.copy_(w[:, :, None, None])
    loss = term(StepOutputs(None, None, stages={"a": fs}, teacher_stages={"b": ft}))
    y = np.einsum("ts,bshw->bthw", w.numpy(), fs.numpy())  # 1x1 conv, no bias
    r = np_block_mean(np_batchnorm_train(y), 2)  # BN, then 4x4 -> 2x2
    assert loss.item() == pytest.approx(np.mean((r - ft.numpy()) ** 2), rel=1e-9)
    assert hint_loss(ft, ft.clone()).item() == 0.0
    assert len(list(Objective({"fitnet": 1}).parameters())) == 0  # not set up yet: nothing to train
    objective = Objective({"fitnet": {"student_stage": "a", "teacher_stage": "b"}})
    objective.setup(_example({"a": (2, 4, 4)}, {"b": (3, 2, 2)}), 10)
    assert sum(p.numel() for p in objective.parameters()) == 2 * 3 + 2 * 3  # conv weight + BN scale and shift
    assert not list(objective.terms["fitnet"].buffers())  # BN on batch statistics: the regressor only ever trains


def test_fitnet_needs_no_regressor_for_equal_shapes_and_refuses_shapes_that_cannot_meet():
    term = LOSS_TERMS.get("fitnet")()
    _setup(term, {"stage2": (8, 4, 4)}, {"stage2": (8, 4, 4)})
    assert not list(term.parameters())
    with pytest.raises(ValueError, match=r"\[8, 6, 6\].*\[8, 4, 4\]"):
        _setup(LOSS_TERMS.get("fitnet")(), {"stage2": (8, 6, 6)}, {"stage2": (8, 4, 4)})
    with pytest.raises(ValueError, match=r"stage2.*stages are hidden1, pool"):
        _setup(LOSS_TERMS.get("fitnet")(), {"hidden1": (8,), "pool": (8,)}, {"stage2": (8, 4, 4)})


# ---------------------------------------------------------------- AT (Zagoruyko and Komodakis 2017)
def np_attention(f, p=2):
    v = (np.abs(f) ** p).mean(axis=1).reshape(f.shape[0], -1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_at_term_sums_the_stage_pairs_of_the_formula():
    g = torch.Generator().manual_seed(2)
    s1, t1 = (
        torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64),
        torch.randn(2, 5, 2, 2, generator=g, dtype=torch.float64),
    )
    s2, t2 = (
        torch.randn(2, 4, 2, 2, generator=g, dtype=torch.float64),
        torch.randn(2, 6, 2, 2, generator=g, dtype=torch.float64),
    )
    term = LOSS_TERMS.get("at")(stages=["x", "y"], teacher_stages=["u", "v"])
    _setup(term, {"x": (3, 4, 4), "y": (4, 2, 2)}, {"u": (5, 2, 2), "v": (6, 2, 2)})
    loss = term(StepOutputs(None, None, stages={"x": s1, "y": s2}, teacher_stages={"u": t1, "v": t2}))
    first = np.mean((np_attention(np_block_mean(s1.numpy(), 2)) - np_attention(t1.numpy())) ** 2)
    second = np.mean((np_attention(s2.numpy()) - np_attention(t2.numpy())) ** 2)
    assert loss.item() == pytest.approx(first + second, rel=1e-9)
    assert at_loss(s2, s2.clone()).item() == pytest.approx(0.0, abs=1e-15)
    # Attention maps are unit vectors: scaling a map leaves its attention unchanged.
    assert at_loss(3 * s2, s2).item() == pytest.approx(0.0, abs=1e-15)


def test_at_refuses_vectors_and_unmatched_stage_lists():
    with pytest.raises(ValueError, match=r"\[64\].*stage1"):
        _setup(LOSS_TERMS.get("at")(stages=["pool"]), {"pool": (64,)}, {"pool": (64,)})
    with pytest.raises(ValueError, match="one teacher stage per student stage"):
        LOSS_TERMS.get("at")(stages=["stage1"], teacher_stages=["stage1", "stage2"])


# ---------------------------------------------------------------- CRD (Tian et al. 2020)
def np_nce(h, n_data):
    """-mean_i [log(h_i0 / (h_i0 + K/N)) + sum_k log((K/N) / (h_ik + K/N))], as in the CRD paper's eq. 10."""
    k = h.shape[1] - 1
    total = 0.0
    for row in h:
        total += math.log(row[0] / (row[0] + k / n_data)) + sum(
            math.log((k / n_data) / (x + k / n_data)) for x in row[1:]
        )
    return -total / len(h)


def _nce(h, n_data):
    """nce_loss on the scores h [B, 1 + K]: column 0 the positive, each other column a negative drawn once."""
    x = torch.tensor(np.log(h)) - math.log((h.shape[1] - 1) / n_data)
    counts = torch.ones_like(x)
    counts[:, 0] = 0
    return nce_loss(x, x[:, 0], counts).item()


def test_nce_loss_matches_the_formula_and_is_batch_invariant():
    h = np.array([[2.0, 0.1, 0.3], [0.5, 1.0, 0.2]])
    assert _nce(h, 50) == pytest.approx(np_nce(h, 50), rel=1e-12)
    assert _nce(np.concatenate([h, h]), 50) == pytest.approx(np_nce(h, 50), rel=1e-12)
    # A negative drawn twice counts twice: the counts stand for the K draws.
    x = torch.tensor([[0.3, -1.2, 0.7]], dtype=torch.float64)
    twice = nce_loss(x, torch.tensor([0.5], dtype=torch.float64), torch.tensor([[0.0, 2.0, 1.0]], dtype=torch.float64))
    assert twice.item() == pytest.approx(
        math.log1p(math.exp(-0.5)) + 2 * math.log1p(math.exp(-1.2)) + math.log1p(math.exp(0.7))
    )
    # Scores far beyond exp's range stay finite in the log form.
    assert math.isfinite(nce_loss(torch.tensor([[-900.0, 5.0]]), torch.tensor([900.0]), torch.ones(1, 2)).item())


def _fixed_negatives(memory, k):
    # Negatives decided by the sample alone, so the test can repeat them: (i + 1 .. i + k) mod N,
    # counted in the bank's class order (sample memory.order[p] in column p).
    column = torch.argsort(memory.order)

    def counts(idx, dtype):
        drawn = column[(idx[:, None] + torch.arange(1, k + 1, device=idx.device)) % memory.n_data]
        return torch.zeros(len(idx), memory.n_data, dtype=dtype, device=idx.device).scatter_add_(
            1, drawn, torch.ones(drawn.shape, dtype=dtype, device=idx.device)
        )

    memory.negative_counts = counts


def test_crd_term_matches_the_formula_and_moves_the_bank():
    n, d, k, tau, m = 6, 3, 2, 0.5, 0.5
    g = torch.Generator().manual_seed(3)
    fs, ft = torch.randn(2, 4, generator=g, dtype=torch.float64), torch.randn(2, 5, generator=g, dtype=torch.float64)
    idx = torch.tensor([4, 1])
    term = LOSS_TERMS.get("crd")(dim=d, negatives=k, temperature=tau, momentum=m)
    _setup(term, {"pool": (4,)}, {"pool": (5,)}, n_train=n)
    term.double()
    memory = term.memory
    _fixed_negatives(memory, k)
    ws, bs = (x.detach().numpy().copy() for x in term.student_embed.linear.parameters())
    wt, bt = (x.detach().numpy().copy() for x in term.teacher_embed.linear.parameters())
    bank_s, bank_t = memory.student_bank.numpy().copy(), memory.teacher_bank.numpy().copy()
    loss = term(StepOutputs(None, None, features=fs, teacher_features=ft, indices=idx))

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    s, t = unit(fs.numpy() @ ws.T + bs), unit(ft.numpy() @ wt.T + bt)
    cols = [[i] + [(i + j) % n for j in range(1, k + 1)] for i in idx.tolist()]
    e_s = np.array([[math.exp(s[r] @ bank_t[c] / tau) for c in row] for r, row in enumerate(cols)])
    e_t = np.array([[math.exp(t[r] @ bank_s[c] / tau) for c in row] for r, row in enumerate(cols)])
    h_s, h_t = e_s / (n * e_s.mean()), e_t / (n * e_t.mean())  # Z from the first batch
    assert loss.item() == pytest.approx(np_nce(h_s, n) + np_nce(h_t, n), rel=1e-9)

    for bank, old, new in ((memory.student_bank, bank_s, s), (memory.teacher_bank, bank_t, t)):
        expected = old.copy()
        expected[idx.numpy()] = unit(m * old[idx.numpy()] + (1 - m) * new)
        np.testing.assert_allclose(bank.numpy(), expected, rtol=1e-12)
    assert memory.z_ready


def _drawn(memory, idx):
    """The counts of idx's negatives [B, N], by training-set index (the memory keeps them in class order)."""
    counts = memory.negative_counts(idx, torch.float64)
    by_sample = torch.empty_like(counts)
    by_sample[:, memory.order] = counts
    return by_sample


# Classes of sizes 3, 3 and 4, shuffled: other-class counts M_c of 7, 7 and 6.
LABELS = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0, 2, 2])


@pytest.mark.parametrize("k", [3, 6, 7, 20])  # K <= M_c for every class (3, 6); for some (7); for none (20)
def test_crd_negatives_come_from_the_other_classes_without_repeats_when_they_can(k):
    torch.manual_seed(0)
    memory = ContrastMemory(LABELS, dim=3, negatives=k, temperature=0.5, momentum=0.5)
    idx = torch.arange(10).repeat(20)  # every sample, 20 times
    drawn = _drawn(memory, idx)
    same_class = LABELS[idx][:, None] == LABELS[None, :]
    assert (drawn[same_class] == 0).all()  # never the sample's own class (so never the positive)
    assert (drawn.sum(1) == k).all()  # K negatives per sample
    distinct = k <= 10 - torch.bincount(LABELS)[LABELS[idx]]  # the rows that CRD draws without replacement
    assert (drawn[distinct] <= 1).all()
    if k == 20:
        assert drawn.max() > 1  # with replacement, some negative repeats (20 draws among 6 or 7)


@pytest.mark.parametrize("k", [4, 40])  # without and with replacement
def test_crd_negatives_are_uniform_over_the_other_classes(k):
    torch.manual_seed(1)
    memory = ContrastMemory(LABELS, dim=3, negatives=k, temperature=0.5, momentum=0.5)
    rows = 3000
    totals = _drawn(memory, torch.full((rows,), 4)).sum(0)  # sample 4 is of class 2; its M_c = 6 others
    others = LABELS != 2
    assert (totals[~others] == 0).all()
    expected = rows * k / 6
    chi2 = ((totals[others] - expected) ** 2 / expected).sum().item()
    # 5 degrees of freedom: chi2 has mean <= 5 and exceeds 25 with probability < 1e-4 (less still
    # without replacement, whose counts vary less). A skew of 10 % in one index would give ~ 0.01 * expected.
    assert chi2 < 25, (totals, expected)


def test_crd_refuses_feature_maps_and_missing_indices():
    with pytest.raises(ValueError, match=r"vectors.*\[8, 4, 4\]"):
        _setup(LOSS_TERMS.get("crd")(), {"pool": (8, 4, 4)}, {"pool": (8,)})
    term = _setup(LOSS_TERMS.get("crd")(negatives=4), {"pool": (4,)}, {"pool": (4,)})
    with pytest.raises(ValueError, match="indices"):
        term(StepOutputs(None, None, features=torch.randn(2, 4), teacher_features=torch.randn(2, 4)))


def test_crd_needs_the_training_labels():
    with pytest.raises(ValueError, match=r"labels, int64 \[N\].*shape \(\)"):
        _setup(LOSS_TERMS.get("crd")(), {"pool": (4,)}, {"pool": (4,)}).setup(
            _example({"pool": (4,)}, {"pool": (4,)}), 10
        )
    with pytest.raises(ValueError, match="two classes"):
        ContrastMemory(torch.zeros(5, dtype=torch.long), dim=3, negatives=2, temperature=0.5, momentum=0.5)


def test_feature_term_used_before_it_is_built_says_so():
    with pytest.raises(RuntimeError, match="set it up"):
        LOSS_TERMS.get("at")()(StepOutputs(None, None, stages={}, teacher_stages={}))


# ---------------------------------------------------------------- every feature term: batch size, host syncs
# (tests/test_losses.py and test_losses_expressive.py check the same for the logit terms)
from helpers import no_host_sync  # noqa: E402

FEATURE_TERMS = [n for n in LOSS_TERMS.names() if {"features", "stages"} & set(LOSS_TERMS.get(n)().inputs)]
STUDENT = {"stage1": (3, 4, 4), "stage2": (4, 2, 2), "stage3": (6, 1, 1), "pool": (6,)}
TEACHER = {"stage1": (5, 4, 4), "stage2": (7, 4, 4), "stage3": (8, 2, 2), "pool": (9,)}  # a wider, larger teacher


def test_feature_terms_are_the_three_baselines():
    assert FEATURE_TERMS == ["at", "crd", "fitnet"]


def _feature_step(seed, b=4):
    g = torch.Generator().manual_seed(seed)
    student = {k: torch.randn(b, *s, generator=g) for k, s in STUDENT.items()}
    teacher = {k: torch.randn(b, *s, generator=g) for k, s in TEACHER.items()}
    return StepOutputs(None, None, None, student["pool"], teacher["pool"], torch.arange(b) * 2, student, teacher)


def _repeat(step):
    cat = lambda d: {k: torch.cat([v, v]) for k, v in d.items()}  # noqa: E731
    stages, teacher_stages = cat(step.stages), cat(step.teacher_stages)
    return StepOutputs(
        None,
        None,
        None,
        stages["pool"],
        teacher_stages["pool"],
        torch.cat([step.indices, step.indices]),
        stages,
        teacher_stages,
    )


def _build(name, device=CPU):
    torch.manual_seed(0)
    term = _setup(LOSS_TERMS.get(name)(**({"negatives": 3} if name == "crd" else {})), STUDENT, TEACHER, n_train=12).to(
        device
    )
    if name == "crd":
        _fixed_negatives(term.memory, 3)
    return term


@pytest.mark.parametrize("name", FEATURE_TERMS)
def test_every_feature_term_is_invariant_to_repeating_the_batch(name):
    step = _feature_step(5)
    once, twice = _build(name)(step).item(), _build(name)(_repeat(step)).item()
    assert math.isfinite(once) and once != 0.0
    assert twice == pytest.approx(once, rel=1e-5)


def _to_meta(step):
    meta = lambda d: {k: v.to("meta").requires_grad_() for k, v in d.items()}  # noqa: E731
    stages, teacher_stages = meta(step.stages), meta(step.teacher_stages)
    return StepOutputs(
        None, None, None, stages["pool"], teacher_stages["pool"], step.indices.to("meta"), stages, teacher_stages
    )


@pytest.mark.parametrize("name", FEATURE_TERMS)
def test_no_feature_term_syncs_with_the_host_in_a_step(name):
    torch.manual_seed(0)
    term = _setup(LOSS_TERMS.get(name)(**({"negatives": 3} if name == "crd" else {})), STUDENT, TEACHER, n_train=12).to(
        "meta"
    )
    with no_host_sync():
        for _ in range(2):  # the second step reads the bank the first one moved
            term(_to_meta(_feature_step(6))).backward()


def test_crd_draws_sync_nothing_when_some_classes_draw_with_replacement():
    # Classes of 8, 2 and 2 samples with K = 6: class 0's rows draw with replacement, the others without.
    torch.manual_seed(0)
    term = LOSS_TERMS.get("crd")(negatives=6)
    term.setup(_example(STUDENT, TEACHER), torch.tensor([0] * 8 + [1, 1, 2, 2]))
    assert term.memory.draws == (True, True)
    term.to("meta")
    with no_host_sync():
        for _ in range(2):
            term(_to_meta(_feature_step(6))).backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode needs a GPU")
@pytest.mark.parametrize("name", FEATURE_TERMS)
def test_no_feature_term_syncs_on_cuda(name):
    term = _setup(
        LOSS_TERMS.get(name)(**({"negatives": 3} if name == "crd" else {})), STUDENT, TEACHER, n_train=12
    ).cuda()
    cpu = _feature_step(7)
    cuda = lambda d: {k: v.cuda().requires_grad_() for k, v in d.items()}  # noqa: E731
    stages, teacher_stages = cuda(cpu.stages), cuda(cpu.teacher_stages)
    step = StepOutputs(
        None, None, None, stages["pool"], teacher_stages["pool"], cpu.indices.cuda(), stages, teacher_stages
    )
    term(step).backward()  # the first step sets CRD's constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            term(step).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_feature_presets_weigh_the_terms_as_crds_benchmark_does():
    assert {name: PRESETS[name] for name in ("fitnet", "at", "crd")} == {
        "fitnet": {"ce": 1.0, "fitnet": 100.0},
        "at": {"ce": 1.0, "at": 1000.0},
        "crd": {"ce": 1.0, "crd": 0.8},
    }
    assert Objective.parse("crd").trainable and "indices" in Objective.parse("crd").inputs
    assert not Objective.parse("dkd").trainable


# ---------------------------------------------------------------- CRD's bank under torchrun
BANK_SCRIPT = """
import sys, torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[2])
from test_losses_baselines import bank_update
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.save(bank_update([slice(0, 3), slice(3, 5)][rank]), f"{sys.argv[1]}/bank{rank}.pt")  # unequal shards
import kdviz
from kdviz.models import build_model
data = kdviz.load_dataset("digits", seed=0, n_train=100)
torch.manual_seed(0)
teacher = build_model("cnn", 10, (1, 8, 8), width=8).eval()
objective = kdviz.Objective({"ce": 1, "fitnet": 1, "crd": {"weight": 0.8, "negatives": 32}})
result = kdviz.distill(data, teacher, "cnn", objective, model_kwargs={"width": 4}, epochs=1, batch_size=30, progress=False)
terms = {f"{name}.{key}": value for name, state in objective.state_dict().items() for key, value in state.items()}
weights = {k: v.detach() for k, v in result.model.named_parameters()}  # BN statistics are per rank under DDP
torch.save({"terms": terms, "model": weights}, f"{sys.argv[1]}/run{rank}.pt")
"""


def bank_update(mine):
    """CRD's bank (N = 7, d = 3) after one step on samples `mine` of a fixed batch of 5."""
    torch.manual_seed(0)
    memory = ContrastMemory(torch.tensor([0, 1, 0, 1, 0, 1, 1]), dim=3, negatives=2, temperature=0.5, momentum=0.5)
    g = torch.Generator().manual_seed(1)
    s, t = (
        torch.nn.functional.normalize(torch.randn(5, 3, generator=g), dim=1),
        torch.nn.functional.normalize(torch.randn(5, 3, generator=g), dim=1),
    )
    idx = torch.tensor([6, 0, 3, 2, 5])
    before = memory.student_bank[:7].clone()
    memory.scores(s[mine], t[mine], idx[mine])
    return {"student": memory.student_bank[:7], "teacher": memory.teacher_bank[:7], "before": before}


@pytest.mark.distributed  # torchrun with 2 processes
def test_crd_bank_and_term_parts_stay_identical_on_every_rank(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "bank.py"
    script.write_text(BANK_SCRIPT)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
        str(Path(__file__).parent),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"bank{r}.pt", weights_only=True) for r in (0, 1)]
    one = bank_update(slice(0, 5))  # one process, the whole batch
    for side in ("student", "teacher"):
        # Each rank applies every rank's update: two processes end with the bank of one, bit for bit.
        assert torch.equal(ranks[0][side], one[side]) and torch.equal(ranks[1][side], one[side])
    moved = (one["student"] != one["before"]).any(1)
    assert moved.tolist() == [True, False, True, True, False, True, True]  # rows 0, 2, 3, 5, 6: the batch's samples
    # In training, the terms' parts (outside the DDP-wrapped model) get the averaged gradient too: the
    # ranks' regressors, embeddings and banks stay equal. 100 images in batches of 30 leave shards of 5 and 5.
    runs = [torch.load(tmp_path / f"run{r}.pt", weights_only=True) for r in (0, 1)]
    for part in ("terms", "model"):
        for key, value in runs[0][part].items():
            assert torch.equal(value, runs[1][part][key]), key
    assert "fitnet.regressor.net.0.weight" in runs[0]["terms"] and "crd.memory.teacher_bank" in runs[0]["terms"]


# ---------------------------------------------------------------- feature terms in training
from kdviz.models import build_model, stage_shapes  # noqa: E402
from kdviz.train import train  # noqa: E402

CRD_PAIRS = [  # the CRD benchmark's pairs that kdviz's zoo has (its ResNet50 is ImageNet's)
    ("resnet56", "resnet20"),
    ("resnet110", "resnet32"),
    ("resnet32x4", "resnet8x4"),
    ("vgg13", "vgg8"),
    ("wrn_40_2", "wrn_16_2"),
    ("wrn_40_2", "wrn_40_1"),
    ("vgg13", "mobilenetv2"),
    ("resnet32x4", "shufflenetv1"),
    ("resnet32x4", "shufflenetv2_1_0"),
    ("wrn_40_2", "shufflenetv1"),
]


@pytest.mark.parametrize("teacher_name, student_name", CRD_PAIRS)
def test_default_stages_fit_every_crd_pair(teacher_name, student_name):
    teacher, student = (build_model(n, 100, (3, 32, 32)) for n in (teacher_name, student_name))
    objective = Objective({"fitnet": 1, "at": 1, "crd": {"negatives": 8}})
    objective.setup(
        _example(stage_shapes(student, (3, 32, 32)), stage_shapes(teacher, (3, 32, 32))), torch.arange(16) % 4
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t_logits, t_stages = teacher.eval()(x, return_stages=True)
    logits, stages = student(x, return_stages=True)
    out = StepOutputs(
        logits, torch.tensor([0, 1]), t_logits, stages["pool"], t_stages["pool"], torch.tensor([3, 7]), stages, t_stages
    )
    total, parts = objective(out)
    total.backward()
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in parts.values())
    assert student.classifier.weight.grad is None  # the feature terms do not read the logits ...
    assert next(student.parameters()).grad.abs().sum() > 0  # ... but reach the student's stages


def test_feature_term_with_the_teacher_cache_says_it_needs_the_online_teacher(tiny_data):
    teacher = build_model("cnn", 4, (1, 4, 4), width=8)
    with pytest.raises(ValueError, match="online teacher"):
        train(tiny_data, "cnn", {"ce": 1, "at": 1}, teacher=teacher, epochs=1, teacher_cache=True, progress=False)


def test_interrupted_feature_run_resumes_to_identical_result(tiny_data, tmp_path):
    """FitNet's regressor and CRD's embeddings and bank train with the student, are saved in last.pt
    and restored on resume: the resumed run ends bit for bit where the uninterrupted one does."""
    torch.manual_seed(1)
    teacher = build_model("cnn", 4, (1, 4, 4), width=8).eval()
    spec = {"ce": 1, "fitnet": 1, "crd": {"weight": 0.8, "negatives": 16}}
    settings = dict(teacher=teacher, model_kwargs={"width": 4}, epochs=4, seed=3, batch_size=16, progress=False)
    full_objective = Objective(spec)
    full = train(tiny_data, "cnn", full_objective, out_dir=tmp_path / "full", **settings)

    cut = Objective(spec)
    real_end, ended = cut.end_epoch, []

    def interrupted():
        real_end()
        ended.append(1)
        if len(ended) == 2:
            raise KeyboardInterrupt  # after epoch 1's training, before its checkpoint: epoch 0's is on disk

    cut.end_epoch = interrupted
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, "cnn", cut, out_dir=tmp_path / "cut", **settings)
    resumed_objective = Objective(spec)
    resumed = train(tiny_data, "cnn", resumed_objective, out_dir=tmp_path / "cut", resume=True, **settings)

    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for name in ("fitnet", "crd"):
        full_state, resumed_state = full_objective.terms[name].state_dict(), resumed_objective.terms[name].state_dict()
        assert list(full_state) == list(resumed_state)
        for key, value in full_state.items():
            assert torch.equal(value, resumed_state[key]), (name, key)
    assert "regressor.net.0.weight" in full_objective.terms["fitnet"].state_dict()  # the regressor is among them
    assert "memory.student_bank" in full_objective.terms["crd"].state_dict()
    cols = [c for c in full.history if not c.endswith("seconds")]
    assert full.history[cols].equals(resumed.history[cols])


# ---------------------------------------------------------------- the CRD recipe's rows
RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def _crd_rows():
    """(student model, argv after 'kdviz distill $S') of every distill row of the CRD table in docs/recipes.md."""
    import shlex

    text = RECIPES.read_text()
    block = text[text.index("**The CRD table's rows.**") : text.index("**The paper's Tiny ImageNet experiment**")]
    rows, student = [], None
    for line in block.splitlines():
        words = shlex.split(line, comments=True) if line.startswith("    ") else []  # the code lines
        if words and words[0].startswith("T="):
            student = line.split("--model ")[1].split('"')[0]
        if words[:3] == ["kdviz", "distill", "$S"]:
            rows.append((student, words[3:]))
    return rows


def test_the_recipes_page_lists_every_method_for_every_crd_pair_and_each_row_parses():
    import json

    from kdviz.cli import build_parser

    methods = {}
    for student, argv in _crd_rows():
        args = build_parser().parse_args(
            ["distill", "--recipe", "crd-cifar100", "--teacher", "t.pt", "--model", student, *argv]
        )
        spec = dict(Objective.parse(args.loss or "kd").spec)  # no --loss: the recipe's student loss, 0.1 CE + 0.9 KD
        for name, params in json.loads(args.loss_params).items():
            spec[name] = {**spec[name], **params}
        methods.setdefault(student, set()).update(set(Objective(spec).spec) - {"ce"})
    assert set(methods) == {"resnet8x4", "wrn_16_2", "resnet20", "shufflenetv2_1_0"}
    for student, terms in methods.items():
        assert {"kd", "fitnet", "at", "crd", "dkd"} <= terms, student
