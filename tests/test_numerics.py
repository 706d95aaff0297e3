"""Numerics of the loss terms and ICC sums at the edges: bf16 autocast, constant columns, tiny
spreads, NaN samples (issue 12). References are computed independently in float64."""

import pytest
import torch
import torch.nn.functional as F

from kdviz.correlation import icc_of_logits
from kdviz.losses import mimic
from kdviz.losses.consensus import ClassConsensus


def _reference_icc_mimic(s, t, tau):
    """tau^2 KL(G_t || G_s) with G = P^T P / B, written out in float64."""
    p_s, p_t = F.softmax(s.double() / tau, 1), F.softmax(t.double() / tau, 1)
    g_s, g_t = p_s.T @ p_s / len(s), p_t.T @ p_t / len(t)
    return tau**2 * (g_t * (g_t.log() - g_s.log())).sum()


@pytest.mark.parametrize("term", ["icc_mimic_kl", "icc_mimic_frobenius", "icc_mimic_pearson"])
def test_icc_mimic_terms_under_bf16_autocast_match_float32(term):
    """Under autocast, P^T P ran in bf16 (1e-2 off in value, 2 % in gradient at C = 10); the
    matrices are now float32, so autocast changes the value and gradient by float32 rounding only."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(64, 10, generator=g) * 3, torch.randn(64, 10, generator=g) * 3
    fn = getattr(mimic, term)

    def value_and_grad(autocast):
        x = s.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            v = fn(x, t)
        v.backward()
        return v.detach().double(), x.grad.double()

    (v32, g32), (v16, g16) = value_and_grad(False), value_and_grad(True)
    assert abs(v16 - v32) <= 1e-5 * abs(v32) + 1e-9
    assert (g16 - g32).norm() <= 1e-4 * g32.norm()
    if term == "icc_mimic_kl":
        assert torch.allclose(v32, _reference_icc_mimic(s, t, 4.0), rtol=1e-5)


def test_pearson_mimic_has_a_finite_gradient_when_a_column_is_constant():
    # Column 0 is constant over the batch (a huge negative logit: probability 0 for every sample).
    s = torch.randn(8, 5, dtype=torch.float64)
    s[:, 0] = -1e4
    s.requires_grad_()
    value = mimic.icc_mimic_pearson(s, torch.randn(8, 5, dtype=torch.float64))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
    # The constant column correlates 0 with every column, itself included.
    r = mimic.pearson_columns(F.softmax(s.detach() / 4, 1))
    assert torch.equal(r[0], torch.zeros(5, dtype=torch.float64))


def test_dist_scores_a_row_against_itself_as_one_at_a_tiny_spread():
    # Rows whose softmax entries spread by ~1e-7: each norm is ~3e-7, their product below 1e-12.
    z = 1e-6 * torch.randn(16, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float(mimic._pearson_rows(F.softmax(z, 1), F.softmax(z, 1)).min()) == pytest.approx(1.0, abs=1e-9)
    assert float(mimic.dist_loss(z, z, tau=1.0)) == pytest.approx(0.0, abs=1e-6)


def test_a_nan_sample_is_left_out_of_the_icc_with_a_warning(tiny_info):
    g = torch.Generator().manual_seed(2)
    logits, labels = torch.randn(12, 4, generator=g), torch.arange(12) % 4
    bad = logits.clone()
    bad[5, 2] = float("nan")  # one logit of one sample of class 1
    with pytest.warns(UserWarning, match="1 of 12 samples have non-finite logits"):
        report = icc_of_logits(bad, labels, tiny_info)
    keep = torch.arange(12) != 5
    clean = icc_of_logits(logits[keep], labels[keep], tiny_info)
    # Every class keeps its row (class 1 from its two other samples), equal to the ICC without it.
    assert torch.isfinite(report.matrix).all()
    assert torch.allclose(report.matrix, clean.matrix)
    assert report.secondary_std == pytest.approx(clean.secondary_std) and report.n == 11


def test_a_nan_sample_does_not_blank_the_consensus_of_every_class():
    consensus = ClassConsensus(tau=4.0)
    logits = torch.eye(3).repeat(2, 1) * 5  # every sample correct
    labels = torch.arange(3).repeat(2)
    logits[0, 1] = float("nan")
    consensus.update(logits, labels)
    matrix = consensus.finish_epoch()
    # Class 0 keeps its other sample; before, 0 * NaN in Y^T P made every row NaN ("class absent").
    assert torch.isfinite(matrix).all()
    expected = F.softmax(torch.eye(3) * 5 / 4, 1)
    assert torch.allclose(matrix, expected)
