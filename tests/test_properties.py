"""Property-based tests (hypothesis): every registered loss term on random, extreme and degenerate
batches, and every numeric flag of the command line on random bad values (issue 12)."""

import math

import pytest
import torch
from helpers import LOGIT_TERMS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdviz.cli import build_parser
from kdviz.losses import LOSS_TERMS, StepOutputs

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@st.composite
def batches(draw):
    """(logits [B, C] float32 requiring grad, teacher logits, targets [B], tau): B from 1, C from 2,
    logits whose largest margin reaches 1e4, and labels that may leave classes out."""
    b, c = draw(st.integers(1, 9)), draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    margin = draw(st.sampled_from([0.0, 1.0, 30.0, 1e3, 1e4]))
    g = torch.Generator().manual_seed(seed)
    present = draw(st.integers(1, c))  # labels from the first `present` classes only
    targets = torch.randint(0, present, (b,), generator=g)

    def logits():
        z = torch.randn(b, c, generator=g) * draw(st.sampled_from([1e-6, 1.0, 10.0]))
        winner = torch.randint(0, c, (b,), generator=g)
        return z + margin * torch.nn.functional.one_hot(winner, c)

    tau = draw(st.sampled_from([0.1, 1.0, 4.0, 20.0]))
    return logits().requires_grad_(), logits(), targets, tau


def _term(name: str, tau: float):
    """The term with its default parameters, at temperature tau when it has one."""
    try:
        return LOSS_TERMS.get(name)(tau=tau)
    except TypeError:  # a term without a temperature
        return LOSS_TERMS.get(name)()


@pytest.mark.slow
@pytest.mark.parametrize("name", LOGIT_TERMS)  # the feature terms have their own tests (test_losses_baselines.py)
@FAST
@given(batch=batches())
def test_every_loss_term_is_finite_with_a_finite_gradient_or_refuses(name, batch):
    logits, teacher, targets, tau = batch
    term = _term(name, tau)
    out = StepOutputs(logits, targets, teacher)
    steps = []  # (value, gradient) before and after an epoch's end, each backpropagated in its step
    try:
        for epoch in range(2):
            value = term(out)
            steps.append((value, torch.autograd.grad(value, logits, allow_unused=True)[0]))
            if epoch == 0:
                term.end_epoch()  # stateful terms build their target from this epoch and use it next
    except ValueError as e:  # kdviz's own refusal, with a message
        assert str(e)
        return
    for value, grad in steps:
        assert value.shape == () and torch.isfinite(value), (name, value)
        assert grad is None or torch.isfinite(grad).all(), name


# Every numeric flag of every subcommand, with values it must refuse.
_TEXT = st.sampled_from(["", "abc", "1e", "0x10", "½", "1,5", "nan", "inf", "-inf"])
_NOT_POSITIVE_INT = st.integers(max_value=0).map(str)
_NOT_INT = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)).map(repr)
_NOT_POSITIVE = st.one_of(
    st.floats(max_value=0.0, allow_nan=False).map(repr), st.just("nan"), st.just("inf"), st.just("-inf")
)
BAD_VALUES = {
    "--epochs": st.one_of(_TEXT, _NOT_POSITIVE_INT, _NOT_INT),
    "--batch-size": st.one_of(_TEXT, _NOT_POSITIVE_INT, _NOT_INT),
    "--n-train": st.one_of(_TEXT, _NOT_POSITIVE_INT, _NOT_INT),
    "--seed": st.one_of(_TEXT, st.integers(max_value=-1).map(str), st.integers(min_value=2**32).map(str), _NOT_INT),
    "--seeds": st.one_of(_TEXT, st.integers(max_value=-1).map(str), st.integers(min_value=2**32).map(str), _NOT_INT),
    "--jobs": st.one_of(_TEXT, _NOT_POSITIVE_INT, _NOT_INT),
    "--lr": st.one_of(_TEXT, _NOT_POSITIVE),
    "--tau": st.one_of(_TEXT, _NOT_POSITIVE),
    "--milestones": st.one_of(
        st.sampled_from(["a", "1,b", "1.5", "3,-2", "-1"]),
        st.lists(st.integers(max_value=-1), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
    ),
}
COMMANDS = {
    "quickstart": [],
    "sweep": ["smoke"],
    "train-teacher": ["--out", "o"],
    "distill": ["--out", "o", "--teacher", "t.pt"],
    "correlations": ["x.pt"],
}


def _numeric_flags() -> dict[str, list[str]]:
    """{subcommand: its flags that take a typed value}, read from the parser itself, so that a new
    numeric flag without a check fails the test below."""
    sub = next(a for a in build_parser()._actions if a.choices and "quickstart" in a.choices)
    return {
        cmd: [
            a.option_strings[0]
            for a in p._actions
            if a.option_strings and a.type is not None and a.option_strings[0] != "--device"
        ]
        for cmd, p in sub.choices.items()
    }


def test_every_numeric_flag_has_bad_values_to_try():
    flags = {f for fs in _numeric_flags().values() for f in fs}
    assert flags == set(BAD_VALUES)


@pytest.mark.parametrize("command, flag", [(c, f) for c, fs in _numeric_flags().items() for f in fs])
@FAST
@given(data=st.data())
def test_bad_numeric_flag_values_exit_2_naming_the_flag(command, flag, data, capsys):
    value = data.draw(BAD_VALUES[flag])
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, *COMMANDS[command], f"{flag}={value}"])
    assert info.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


@FAST
@given(value=st.floats(min_value=1e-6, max_value=1e6))
def test_good_float_values_are_read_as_given(value):
    args = build_parser().parse_args(["correlations", "x.pt", "--tau", repr(value)])
    assert args.tau == value and math.isfinite(args.tau)
