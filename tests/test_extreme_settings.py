"""Valid but extreme settings say so (issue 24 part 5): a temperature that makes the secondary
probabilities vanish or uniform warns, a colour scale never spans rounding noise, and CRD says
when it draws negatives with replacement."""

import warnings

import numpy as np
import pytest
import torch

from kdviz.cli import main
from kdviz.correlation import icc_of_logits
from kdviz.losses.crd import ContrastMemory
from kdviz.plots import UNIFORM, colour_limits, plot_icc, plot_icc_comparison


def _logits(tiny_info):
    """Class a's images are all predicted a by a margin of 20 logits; the others are noise."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    z = 3 * torch.randn(40, 4, generator=g, dtype=torch.float64)
    z[labels == 0, 0] += 20
    return z, labels


def test_a_tiny_tau_warns_that_secondary_probabilities_vanish_naming_the_classes(tiny_info):
    z, y = _logits(tiny_info)
    with pytest.warns(
        UserWarning,
        match=r"tau = 1e-08 makes the secondary probabilities vanish: softmax\(z / tau\) is one-hot for 40 of 40 "
        r"images; the secondary ICC rows of 'a' are all 0",
    ):
        report = icc_of_logits(z, y, tiny_info, tau=1e-8)
    # softmax(z / 1e-8) is one-hot: class a, always right, has no mass outside its target
    assert report.secondary[0].abs().sum() == 0


def test_a_huge_tau_warns_that_secondary_probabilities_are_uniform(tiny_info):
    z, y = _logits(tiny_info)
    with pytest.warns(UserWarning, match=r"tau = 1e\+08 makes the secondary probabilities uniform: .* 1/3 to within"):
        report = icc_of_logits(z, y, tiny_info, tau=1e8)
    off = report.secondary.numpy()[~np.eye(4, dtype=bool)]
    # exp(z / 1e8) = 1 + z / 1e8: entries differ from 1/3 by about |z| / 1e8, far below 1e-6 of 1/3
    assert np.abs(off - 1 / 3).max() < 1e-6 / 3


@pytest.mark.parametrize("tau", [1.0, 4.0, 20.0])
def test_ordinary_temperatures_warn_nothing(tiny_info, tau):
    z, y = _logits(tiny_info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        icc_of_logits(z, y, tiny_info, tau=tau)


@pytest.mark.slow
def test_a_colour_scale_never_spans_rounding_noise(tiny_info):
    third = np.full(6, 1 / 3) + np.array([0, 1, -1, 2, 0, 1]) * 1.6e-9  # 1/3 with float noise of the size tau 1e8 gives
    assert colour_limits(third) == (0.0, 1.0, True)
    real = np.array([0.2, 0.3, 0.5])
    assert colour_limits(real) == (0.2, 0.5, False)
    assert colour_limits(np.array([0.3, 0.3 * (1 + 2 * UNIFORM)]))[2] is False  # just above the threshold: drawn
    z, y = _logits(tiny_info)
    with pytest.warns(UserWarning, match="uniform"):
        report = icc_of_logits(z, y, tiny_info, tau=1e8)
    fig = plot_icc(report, secondary=True)
    ax = fig.axes[0]
    assert (ax.collections[0].norm.vmin, ax.collections[0].norm.vmax) == (0.0, 1.0)
    assert "uniform: every value 0.333" in ax.get_title()
    fig.canvas.draw()
    bar = ax.collections[0].colorbar.ax
    assert bar.yaxis.get_offset_text().get_text() == ""  # no "+3.33e-1" offset label drawn over the cells
    with pytest.warns(UserWarning, match="uniform"):
        other = icc_of_logits(z * 1.5, y, tiny_info, tau=1e8)
    fig = plot_icc_comparison(report, other)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert all("uniform" in t for t in titles)
    assert fig.axes[2].collections[0].norm.vmax == 1.0  # a difference of 1e-9 is drawn as none


@pytest.mark.slow
def test_kdviz_correlations_warns_at_extreme_tau(tmp_path, capsys):
    common = ["--no-progress", "--device", "cpu"]
    assert (
        main(
            ["train-teacher", "--out", str(tmp_path / "t"), "--model-kwargs", '{"width": 4}', "--epochs", "1"]
            + ["--n-train", "100", *common]
        )
        == 0
    )
    for tau, said in (("1e-8", "vanish"), ("1e8", "uniform")):
        with pytest.warns(UserWarning, match=f"secondary probabilities {said}"):
            assert main(["correlations", str(tmp_path / "t" / "best.pt"), "--tau", tau, "--secondary", *common]) == 0


def test_crd_says_once_when_it_draws_negatives_with_replacement():
    labels = torch.arange(20) % 4  # 5 images per class: 15 of other classes for each
    with pytest.warns(
        UserWarning, match=r"CRD draws 16 negatives per sample, more than the 15 .* with replacement"
    ) as said:
        ContrastMemory(labels, dim=8, negatives=16, temperature=0.07, momentum=0.5)
    assert len([w for w in said if "CRD" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ContrastMemory(labels, dim=8, negatives=15, temperature=0.07, momentum=0.5)  # every negative drawn once
