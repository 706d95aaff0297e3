"""ICC matrices and expressiveness measures against values worked out by hand."""

import math

import numpy as np
import pytest
import torch

from kdviz.correlation import (
    ICCAccumulator,
    group_mass_per_sample,
    icc_distance,
    icc_of_logits,
    secondary_probs,
    secondary_std_per_sample,
)


def test_one_hot_predictions_give_identity(tiny_info):
    labels = torch.tensor([0, 1, 2, 3, 1])
    logits = torch.nn.functional.one_hot(labels, 4).double() * 1e4  # softmax is one-hot at any tau
    report = icc_of_logits(logits, labels, tiny_info, tau=4.0)
    assert torch.allclose(report.matrix, torch.eye(4, dtype=report.matrix.dtype))
    # the non-target logits are equal, so the secondary probabilities are all 1/3: no spread,
    # even though the non-target probabilities themselves underflow to 0
    assert report.secondary_std == pytest.approx(0.0, abs=1e-6)


def test_uniform_predictions_give_uniform_rows_and_nan_for_missing_class(tiny_info):
    labels = torch.tensor([0, 0, 1, 3])  # class 2 has no sample
    report = icc_of_logits(torch.zeros(4, 4), labels, tiny_info)
    m = report.matrix
    assert torch.isnan(m[2]).all()
    assert torch.allclose(m[[0, 1, 3]], torch.full((3, 4), 0.25, dtype=m.dtype))
    frame = report.to_frame()
    assert list(frame.index) == ["a", "b", "c", "d"] and frame.loc["c"].isna().all()


def test_secondary_probs_secondary_std_and_group_mass_by_hand(tiny_info):
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.1]], dtype=torch.float64)
    logits = 4.0 * probs.log()  # at tau = 4 these logits give back probs
    labels = torch.tensor([0])
    # secondary: 0.3/0.5, 0.1/0.5, 0.1/0.5 = 0.6, 0.2, 0.2; mean 1/3
    assert torch.allclose(secondary_probs(logits, labels), torch.tensor([[0.0, 0.6, 0.2, 0.2]], dtype=torch.float64))
    expected_std = math.sqrt(((0.6 - 1 / 3) ** 2 + 2 * (0.2 - 1 / 3) ** 2) / 3)
    assert secondary_std_per_sample(logits, labels).item() == pytest.approx(expected_std)
    # class 0 is in group "ab" with class 1: group mass = 0.6
    groups = torch.tensor(tiny_info.class_to_group())
    assert group_mass_per_sample(logits, labels, groups).item() == pytest.approx(0.6)


def test_accumulating_over_batches_equals_one_pass(tiny_info):
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(50, 4, generator=g), torch.randint(0, 4, (50,), generator=g)
    whole = icc_of_logits(logits, labels, tiny_info, tau=2.0)
    acc = ICCAccumulator(tiny_info, tau=2.0)
    for chunk in range(0, 50, 7):
        acc.update(logits[chunk : chunk + 7], labels[chunk : chunk + 7])
    parts = acc.report()
    assert torch.allclose(whole.matrix, parts.matrix)
    assert parts.secondary_std == pytest.approx(whole.secondary_std) and parts.group_mass == pytest.approx(
        whole.group_mass
    )
    # the class-conditional mean computed with numpy from its definition
    p = torch.softmax(logits.double() / 2.0, 1).numpy()
    for k in range(4):
        assert np.allclose(whole.matrix[k].numpy(), p[labels.numpy() == k].mean(0))


def test_icc_distance_by_hand():
    a = torch.eye(3, dtype=torch.float64)
    b = torch.full((3, 3), 1 / 3, dtype=torch.float64)
    d = icc_distance(a, b)
    # ||I - J/3||_F^2 = 3 * (2/3)^2 + 6 * (1/3)^2 = 2 -> sqrt(2) / 3
    assert d["icc_distance"] == pytest.approx(math.sqrt(2) / 3)
    assert math.isnan(d["icc_pearson"])  # constant off-diagonal entries have no correlation
    c = a.clone()
    c[0, 1], c[1, 2] = 0.2, 0.1
    assert icc_distance(c, c * 2)["icc_pearson"] == pytest.approx(1.0)


def test_icc_distance_skips_missing_classes():
    a = torch.eye(3, dtype=torch.float64)
    b = a.clone()
    b[1] = float("nan")
    assert icc_distance(a, b)["icc_distance"] == pytest.approx(0.0)
