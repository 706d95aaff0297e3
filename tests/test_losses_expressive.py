"""Candidate terms of the expressive-teacher study (kd_asymmetric, icc_consensus_ref,
secondary_entropy) and the no-host-sync guarantee of every registered term (issues #4, #6).

Expected values come from arithmetic written out in comments or from plain python/numpy loops
over the formulas, never from the library's own helpers.
"""

import io
import math

import numpy as np
import pytest
import torch
from helpers import LOGIT_TERMS, HostSync, no_host_sync

from kdviz.losses import (
    LOSS_TERMS,
    PRESETS,
    Objective,
    StepOutputs,
    asymmetric_kd_loss,
    kd_loss,
    secondary_entropy,
)

LN2 = math.log(2.0)


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


def log4(*a):
    """Logits 4 ln a: at tau = 4 their softmax is a / sum(a)."""
    return [4 * math.log(v) for v in a]


def np_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def np_kl(p, q):
    return sum(pj * math.log(pj / qj) for pj, qj in zip(p, q) if pj > 0)


def _batch(seed, b=12, c=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(b, c, generator=g) * 4
    logits = teacher + torch.randn(b, c, generator=g) * 3
    targets = teacher.argmax(1)
    targets[::4] = torch.randint(0, c, (len(targets[::4]),), generator=g)  # the teacher errs on some
    return logits.to(dtype), targets, teacher.to(dtype)


# ---------------------------------------------------------------- kd_asymmetric
def np_asymmetric_kd(s, t, y, tau, tau_target, tau_nontarget):
    total = 0.0
    for i in range(len(y)):
        scaled = np.array([t[i, j] / (tau_target if j == y[i] else tau_nontarget) for j in range(t.shape[1])])
        total += np_kl(np_softmax(scaled), np_softmax(np.asarray(s[i]) / tau))
    return tau**2 * total / len(y)


def test_kd_asymmetric_hand_example():
    # tau = 2, tau_target = 4, tau_nontarget = 1.
    # row 0, y = 0: teacher [4 ln 4, ln 2, 0] -> scaled [ln 4, ln 2, 0] -> p_t = [4, 2, 1] / 7
    #        student [0, 0, 0] at tau 2 -> [1, 1, 1] / 3
    # row 1, y = 2: teacher [ln 3, 0, 8 ln 2] -> scaled [ln 3, 0, 2 ln 2] -> p_t = [3, 1, 4] / 8
    #        student [2 ln 2, 2 ln 2, 0] at tau 2 -> [2, 2, 1] / 5
    teacher = t64([[4 * math.log(4), LN2, 0.0], [math.log(3), 0.0, 8 * LN2]])
    student = t64([[0.0, 0.0, 0.0], [2 * LN2, 2 * LN2, 0.0]])
    kl0 = 4 / 7 * math.log(12 / 7) + 2 / 7 * math.log(6 / 7) + 1 / 7 * math.log(3 / 7)
    kl1 = 3 / 8 * math.log(15 / 16) + 1 / 8 * math.log(5 / 16) + 1 / 2 * math.log(5 / 2)
    expected = 2.0**2 * (kl0 + kl1) / 2
    got = asymmetric_kd_loss(student, teacher, torch.tensor([0, 2]), tau=2.0, tau_target=4.0, tau_nontarget=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_kd_asymmetric_matches_numpy_loop_and_preset():
    s, y, t = _batch(1, b=7, c=4)
    expected = np_asymmetric_kd(s.numpy(), t.numpy(), y.numpy(), 3.0, 5.0, 1.5)
    got = asymmetric_kd_loss(s, t, y, tau=3.0, tau_target=5.0, tau_nontarget=1.5)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # The preset at the defaults tau = 4, tau_target = 4, tau_nontarget = 2, beside 0.1 CE.
    p = np.array([np_softmax(row) for row in s.numpy()])
    ce = -np.mean([math.log(p[i, y[i]]) for i in range(7)])
    default = np_asymmetric_kd(s.numpy(), t.numpy(), y.numpy(), 4.0, 4.0, 2.0)
    total, parts = Objective.preset("kd_asymmetric")(StepOutputs(s, y, t))
    assert parts["kd_asymmetric"].item() == pytest.approx(default, rel=1e-10)
    assert total.item() == pytest.approx(0.1 * ce + 0.9 * default, rel=1e-10)
    assert LOSS_TERMS.get("kd_asymmetric")()(StepOutputs(s, y, t)).item() == pytest.approx(default, rel=1e-10)


@pytest.mark.parametrize("tau", [1.0, 4.0, 7.5])
def test_kd_asymmetric_with_equal_temperatures_is_kd_exactly(tau):
    s, y, t = _batch(2, dtype=torch.float32)
    got = asymmetric_kd_loss(s, t, y, tau=tau, tau_target=tau, tau_nontarget=tau)
    assert torch.equal(got, kd_loss(s, t, tau=tau))


def test_kd_asymmetric_detaches_teacher():
    s, y, t = _batch(3)
    s.requires_grad_(), t.requires_grad_()
    asymmetric_kd_loss(s, t, y).backward()
    assert t.grad is None and s.grad.abs().sum() > 0


# ---------------------------------------------------------------- icc_consensus_ref
# The reference's logits at tau = 4 (softmax = a / sum a) and the labels:
#   class 0, correct:  [6, 3, 1] / 10 = [.6, .3, .1]
#   class 0, correct:  [5, 4, 1] / 10 = [.5, .4, .1]       -> mean [.55, .35, .1]
#   class 0, wrong:    [1, 8, 1] / 10 (argmax 1): left out
#   class 1, correct:  [1, 6, 3] / 10 = [.1, .6, .3]
#   class 2, wrong:    [5, 1, 4] / 10 (argmax 0): left out, so class 2 has no correct sample
# Secondary ICC of the mean (not the mean of per-sample rows, which would give [0, .775, .225]):
#   row 0: [0, .35, .1] / .45 = [0, 7/9, 2/9]   row 1: [.1, 0, .3] / .4 = [1/4, 0, 3/4]
#   row 2: uniform over j != 2 = [1/2, 1/2, 0]
REF_LOGITS = [log4(6, 3, 1), log4(5, 4, 1), log4(1, 8, 1), log4(1, 6, 3), log4(5, 1, 4)]
REF_Y = [0, 0, 0, 1, 2]
REF_ROWS = [[0, 7 / 9, 2 / 9], [1 / 4, 0, 3 / 4], [1 / 2, 1 / 2, 0]]
# power 2: row 0 [0, 49, 4] / 53, row 1 [1, 0, 9] / 10, row 2 stays uniform
REF_ROWS_POWER2 = [[0, 49 / 53, 4 / 53], [1 / 10, 0, 9 / 10], [1 / 2, 1 / 2, 0]]


def _ref_epoch(term, model_logits, splits=(5,)):
    """One epoch over the reference example, in batches of the given sizes."""
    ref, y, start = t64(REF_LOGITS), torch.tensor(REF_Y), 0
    for size in splits:
        part = slice(start, start + size)
        term(StepOutputs(model_logits[part], y[part], ref[part]))
        start += size
    term.end_epoch()


@pytest.mark.parametrize("power, rows", [(1.0, REF_ROWS), (2.0, REF_ROWS_POWER2)])
def test_icc_consensus_ref_target_is_reference_secondary_icc_over_its_correct_samples(power, rows):
    model = torch.zeros(5, 3, dtype=torch.float64)
    term = LOSS_TERMS.get("icc_consensus_ref")(power=power)
    _ref_epoch(term, model, splits=(2, 3))  # summed over batches, not a mean of batch means
    assert np.allclose(term.target.numpy(), rows, rtol=0, atol=1e-7)


def test_icc_consensus_ref_is_zero_before_first_epoch_then_the_hand_value():
    term = LOSS_TERMS.get("icc_consensus_ref")()
    assert term.needs_teacher and Objective({"ce": 1.0, "icc_consensus_ref": 0.1}).needs_teacher
    ref, y = t64(REF_LOGITS), torch.tensor(REF_Y)
    assert term(StepOutputs(torch.zeros(5, 3, dtype=torch.float64), y, ref)).item() == 0.0
    term.end_epoch()
    # Next epoch, tau = 4: a class-0 sample with non-target logits 4 ln 7, 4 ln 2 has q = [7/9, 2/9] = T[0]
    # (KL 0); one with equal non-target logits has q = [1/2, 1/2]:
    #   KL = 7/9 ln(14/9) + 2/9 ln(4/9); the mean over the two samples is half that.
    z = t64([[9.0, *log4(7, 2)], [-3.0, 1.0, 1.0]])
    expected = 16 * (7 / 9 * math.log(14 / 9) + 2 / 9 * math.log(4 / 9)) / 2
    got = term(StepOutputs(z, torch.tensor([0, 0]), t64(REF_LOGITS[:2])))
    assert got.item() == pytest.approx(expected, rel=1e-6)  # the consensus is kept in float32


def test_icc_consensus_ref_ignores_the_trained_models_predictions():
    g = torch.Generator().manual_seed(4)
    targets = []
    for _ in range(2):
        term = LOSS_TERMS.get("icc_consensus_ref")()
        _ref_epoch(term, torch.randn(5, 3, generator=g, dtype=torch.float64) * 5)
        targets.append(term.target)
    assert torch.equal(targets[0], targets[1])
    # The model's logits also differ from the reference's, so a consensus of its own would differ.
    own = LOSS_TERMS.get("icc_teacher")()
    own(StepOutputs(t64(REF_LOGITS)[[1, 0, 3, 2, 4]], torch.tensor(REF_Y)))
    own.end_epoch()
    assert not torch.allclose(own.target, targets[0])


def test_icc_teacher_keeps_its_own_consensus_when_a_teacher_is_present():
    # The refactor that lets icc_consensus_ref read the teacher must not change icc_teacher,
    # e.g. in a student's {"kd": .., "icc_teacher": ..}: the model's own logits feed its target.
    ref, y = t64(REF_LOGITS), torch.tensor(REF_Y)
    own = LOSS_TERMS.get("icc_teacher")()
    own(StepOutputs(ref, y, torch.zeros(5, 3, dtype=torch.float64)))
    own.end_epoch()
    assert np.allclose(own.target.numpy(), REF_ROWS, rtol=0, atol=1e-7)


def test_icc_consensus_ref_survives_a_checkpoint_round_trip():
    s, y, t = _batch(5)
    term = LOSS_TERMS.get("icc_consensus_ref")(power=2.0)
    term(StepOutputs(s, y, t))
    term.end_epoch()
    buffer = io.BytesIO()
    torch.save({"objective": term.state_dict()}, buffer)
    buffer.seek(0)
    restored = LOSS_TERMS.get("icc_consensus_ref")(power=2.0)
    restored.load_state_dict(torch.load(buffer, weights_only=True)["objective"])
    s2, y2, t2 = _batch(6)
    value = term(StepOutputs(s2, y2, t2)).item()
    assert value > 0
    assert restored(StepOutputs(s2, y2, t2)).item() == value


def test_icc_consensus_ref_gradient_reaches_the_model_only():
    s, y, t = _batch(7)
    term = LOSS_TERMS.get("icc_consensus_ref")()
    term(StepOutputs(s, y, t))
    term.end_epoch()
    s.requires_grad_(), t.requires_grad_()
    term(StepOutputs(s, y, t)).backward()
    assert t.grad is None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# ---------------------------------------------------------------- secondary_entropy
def test_secondary_entropy_hand_example():
    # tau = 1. Row 0, y = 0, C = 4: non-target logits ln[1, 2, 1] -> q = [1/4, 1/2, 1/4] (the 9 is ignored)
    #   H = 2 * 1/4 ln 4 + 1/2 ln 2 = 1.5 ln 2, normalised by ln 3.
    # Row 1, y = 3: non-target logits equal -> uniform -> H / ln 3 = 1.
    z = t64([[9.0, 0.0, LN2, 0.0], [0.5, 0.5, 0.5, -4.0]])
    got = secondary_entropy(z, torch.tensor([0, 3]), tau=1.0)
    assert got.item() == pytest.approx((1.5 * LN2 / math.log(3) + 1) / 2, rel=1e-12)


def test_secondary_entropy_uniform_is_one_and_one_hot_like_is_near_zero():
    y = torch.tensor([1, 2])
    assert secondary_entropy(t64([[3.0, 8.0, 3.0, 3.0], [-1.0, -1.0, 5.0, -1.0]]), y).item() == pytest.approx(
        1.0, rel=1e-12
    )
    # tau = 4, one wrong class 400 above the others: q ~ [1, e^-100, e^-100], H ~ 200 e^-100 ~ 0
    peaked = t64([[400.0, 0.0, 0.0, 0.0], [400.0, 0.0, 0.0, 0.0]])
    assert secondary_entropy(peaked, y).item() == pytest.approx(0.0, abs=1e-30)


def test_secondary_entropy_matches_numpy_loop_at_tau():
    z, y, _ = _batch(8, b=6, c=5)
    z, y, tau = z.numpy(), y.numpy(), 2.5
    expected = 0.0
    for i in range(6):
        q = np_softmax(np.array([z[i, j] / tau for j in range(5) if j != y[i]]))
        expected -= sum(qj * math.log(qj) for qj in q) / math.log(4) / 6
    assert secondary_entropy(torch.from_numpy(z), torch.from_numpy(y), tau).item() == pytest.approx(expected, rel=1e-10)


def test_secondary_entropy_sgd_step_lowers_it_with_finite_gradient():
    z, y, _ = _batch(9)
    z.requires_grad_()
    before = secondary_entropy(z, y)
    before.backward()
    assert torch.isfinite(z.grad).all()
    assert torch.all(z.grad[torch.arange(len(y)), y] == 0)  # the target logit takes no part
    after = secondary_entropy(z.detach() - 1.0 * z.grad, y)
    assert after.item() < before.item() - 1e-4


def test_secondary_entropy_rejects_two_classes():
    with pytest.raises(ValueError, match="C >= 3"):
        secondary_entropy(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))


# ---------------------------------------------------------------- all three: batch size, parameters
NEW_TERMS = ["kd_asymmetric", "icc_consensus_ref", "secondary_entropy"]


@pytest.mark.parametrize("name", NEW_TERMS)
def test_new_terms_do_not_change_with_batch_size(name):
    s, y, t = _batch(10, dtype=torch.float32)
    term = LOSS_TERMS.get(name)()
    term(StepOutputs(s, y, t))
    term.end_epoch()
    once = term(StepOutputs(s, y, t)).item()
    twice = term(StepOutputs(torch.cat([s, s]), torch.cat([y, y]), torch.cat([t, t]))).item()
    assert once > 0 and twice == pytest.approx(once, rel=1e-6)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("kd_asymmetric", {"tau": 0.0}, "tau must be > 0"),
        ("kd_asymmetric", {"tau_target": -1.0}, "tau_target must be > 0"),
        ("kd_asymmetric", {"tau_nontarget": 0.0}, "tau_nontarget must be > 0"),
        ("icc_consensus_ref", {"tau": -2.0}, "tau must be > 0"),
        ("icc_consensus_ref", {"power": 0.0}, "power must be > 0"),
        ("secondary_entropy", {"tau": 0.0}, "tau must be > 0"),
    ],
)
def test_bad_parameters_raise_naming_the_valid_range(name, params, message):
    with pytest.raises(ValueError, match=message):
        Objective({name: {"weight": 1.0, **params}})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tau": -1.0}, "tau must be > 0"),
        ({"tau_target": 0.0}, "tau_target must be > 0"),
        ({"tau_nontarget": -0.5}, "tau_nontarget must be > 0"),
    ],
)
def test_kd_asymmetric_function_checks_its_temperatures(kwargs, message):
    s, y, t = _batch(11)
    with pytest.raises(ValueError, match=message):
        asymmetric_kd_loss(s, t, y, **kwargs)


@pytest.mark.parametrize(
    "name, valid",
    [
        ("kd_asymmetric", ["tau", "tau_target", "tau_nontarget"]),
        ("icc_consensus_ref", ["tau", "power"]),
        ("secondary_entropy", ["tau"]),
    ],
)
def test_unknown_parameter_lists_the_valid_ones(name, valid):
    with pytest.raises(TypeError) as info:
        Objective({name: {"weight": 1.0, "ema": 0.5}})
    assert all(p in str(info.value) for p in valid)


def test_kd_asymmetric_preset_spells_out_the_defaults():
    assert PRESETS["kd_asymmetric"] == {
        "ce": 0.1,
        "kd_asymmetric": {"weight": 0.9, "tau": 4.0, "tau_target": 4.0, "tau_nontarget": 2.0},
    }


# ---------------------------------------------------------------- issue #4: no host sync in a step
def _steps(seed):
    s, y, t = _batch(seed, dtype=torch.float32)
    meta = StepOutputs(s.to("meta").requires_grad_(), y.to("meta"), t.to("meta"))
    return StepOutputs(s, y, t), meta


@pytest.mark.parametrize(
    "sync",
    [
        lambda z: z.sum().item(),
        lambda z: z[z > 0].sum(),
        lambda z: 1.0 if z.max() > 0 else 0.0,
        lambda z: float(z.mean()),
        lambda z: torch.nonzero(z),
    ],
    ids=["item", "boolean-mask", "if-tensor", "float", "torch.nonzero"],
)
def test_host_sync_guard_catches_syncs(sync):
    z = torch.randn(4, 3, device="meta")
    with pytest.raises((HostSync, RuntimeError, NotImplementedError)):
        with no_host_sync():
            sync(z)


# The feature terms (FitNet, AT, CRD) read stages, not logits: tests/test_losses_baselines.py checks them.


@pytest.mark.parametrize("name", LOGIT_TERMS)
def test_no_registered_term_syncs_with_the_host_in_a_step(name):
    cpu, meta = _steps(12)
    with no_host_sync():
        first = LOSS_TERMS.get(name)()(meta)  # before any epoch has ended: the consensus terms give 0
        if first.requires_grad:
            first.backward()
    term = LOSS_TERMS.get(name)()
    term(cpu)
    term.end_epoch()  # once an epoch, allowed to sync
    with no_host_sync():
        for _ in range(2):
            term(meta).backward()


def test_objective_of_every_term_does_not_sync_with_the_host():
    cpu, meta = _steps(13)
    objective = Objective({name: 0.1 for name in LOGIT_TERMS})
    objective(cpu)
    objective.end_epoch()
    with no_host_sync():
        total, parts = objective(meta)
        total.backward()
    assert set(parts) == set(LOGIT_TERMS)


@pytest.mark.parametrize(
    "name, params",
    [
        ("icc_teacher", {"ema": 0.5}),
        ("online_label_smoothing", {"ema": 0.5}),
        ("icc_consensus_ref", {}),
    ],
)
def test_restored_target_moves_to_the_step_device_once(name, params):
    """A checkpoint restores targets on the CPU; copying one to the GPU every step would block the
    host every step (and an EMA update would then mix devices). Meta stands in for the GPU."""
    cpu, meta = _steps(14)
    trained = LOSS_TERMS.get(name)(**params)
    trained(cpu)
    trained.end_epoch()
    term = LOSS_TERMS.get(name)(**params)
    term.load_state_dict(trained.state_dict())
    term(meta)
    assert term.target.device.type == "meta"
    term.end_epoch()
    assert term.target.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode needs a GPU")
@pytest.mark.parametrize("name", LOGIT_TERMS)
def test_no_registered_term_syncs_on_cuda(name):
    cpu, _ = _steps(15)
    s, y, t = (x.cuda() for x in (cpu.logits, cpu.targets, cpu.teacher_logits))
    step = StepOutputs(s.requires_grad_(), y, t)
    term = LOSS_TERMS.get(name)()
    term(step)
    term.end_epoch()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        term(step).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
