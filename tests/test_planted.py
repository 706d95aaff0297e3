"""`planted`: its generative model, its exact posterior and true ICC, and the truth-scored measures."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

import kdviz as kd
from kdviz.correlation import icc_of_logits, offdiagonal_spearman
from kdviz.data import Planted, dataset_options, load_dataset, normalize
from kdviz.data.planted import LEVEL, MC_PER_CLASS, TRIALS
from kdviz.models import build_model


@pytest.fixture(scope="module")
def small():
    """A small planted dataset: 6 classes in 2 groups of 3."""
    return load_dataset("planted", classes=6, groups=2, n_images=600, n_test=600)


def test_same_options_give_the_same_images_and_another_data_seed_others():
    a, b = (load_dataset("planted", classes=6, groups=2, n_images=200, n_test=100) for _ in range(2))
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    c = load_dataset("planted", classes=6, groups=2, n_images=200, n_test=100, data_seed=1)
    assert not torch.equal(a.train.images, c.train.images)
    # load_dataset's seed draws validation from the same images, as for every dataset
    d = load_dataset("planted", classes=6, groups=2, n_images=200, n_test=100, seed=3)
    assert torch.equal(a.test.images, d.test.images) and not torch.equal(a.val.images, d.val.images)


def test_images_are_grey_16_levels_and_groups_name_the_classes(small):
    assert small.train.images.shape[1:] == (1, 16, 16)
    assert set(small.train.images.unique().tolist()) <= {LEVEL * k for k in range(TRIALS + 1)}
    assert small.info.class_names == ("A1", "A2", "A3", "B1", "B2", "B3")
    assert small.info.groups == {"A": (0, 1, 2), "B": (3, 4, 5)}
    assert load_dataset("planted", image_size=28, n_images=100, n_test=50).info.image_shape == (1, 28, 28)


def test_noise_matrix_moves_labels_within_the_group_only():
    t = Planted(classes=5, groups=2, label_noise=0.2).noise_matrix  # groups {0, 1, 2} and {3, 4}
    expected = torch.tensor(
        [
            [0.8, 0.1, 0.1, 0, 0],
            [0.1, 0.8, 0.1, 0, 0],
            [0.1, 0.1, 0.8, 0, 0],
            [0, 0, 0, 0.8, 0.2],
            [0, 0, 0, 0.2, 0.8],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(t, expected)
    alone = Planted(classes=3, groups=2, label_noise=0.2).noise_matrix  # group {2} has one class
    assert alone[2].tolist() == [0, 0, 1]


def test_posterior_is_bayes_rule_on_the_binomial_likelihood():
    """log p(label | x), worked out from the binomial pmf of every pixel and the noise matrix."""
    p = Planted(classes=4, groups=2, label_noise=0.1)
    counts = p.sample_counts(torch.tensor([0, 1, 2, 3, 3]), torch.Generator().manual_seed(0))
    theta = torch.sigmoid(p.weights)  # [C, D]
    log_lik = torch.distributions.Binomial(TRIALS, probs=theta.unsqueeze(0)).log_prob(counts.double().unsqueeze(1))
    clean = F.softmax(log_lik.sum(2), dim=1)  # uniform prior
    expected = (clean @ p.noise_matrix).log()
    assert torch.allclose(p.bayes_logits(counts), expected, atol=1e-9)


def test_bayes_module_sees_the_counts_through_normalisation(small):
    spec = small.truth.bayes_spec
    module = build_model(spec["name"], spec["num_classes"], tuple(spec["image_shape"]), **spec["kwargs"])
    x = normalize(small.test.images[:50], small.info)
    counts = small.test.images[:50].flatten(1).long() // LEVEL
    assert torch.allclose(module(x.double()), small.truth.bayes_logits(counts), atol=1e-9)
    assert sum(p.numel() for p in module.parameters()) == 0


def test_info_mean_and_std_are_the_exact_pixel_moments():
    data = load_dataset("planted", n_images=4000, n_test=10)
    x = data.train.images.double() / 255
    # 4,000 images of 256 pixels: the sample moments are within a few 1e-3 of the exact ones
    assert x.mean().item() == pytest.approx(data.info.mean[0], abs=5e-3)
    assert x.std().item() == pytest.approx(data.info.std[0], abs=5e-3)


@pytest.mark.slow
@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_bayes_classifier_icc_on_a_large_sample_matches_the_true_icc(tau):
    """The carried truth is a Monte Carlo mean with standard errors; the Bayes classifier's empirical
    ICC on 24,000 fresh images (their own labels, drawn with the noise matrix) must agree with it
    within 4.5 combined standard errors in every entry (144 entries: a false alarm about 1 in 1,000)."""
    data = load_dataset("planted", n_images=24_000, n_test=10)
    truth, se_truth = data.truth.true_icc(tau)
    counts = data.train.images.flatten(1).long() // LEVEL
    probs = F.softmax(data.truth.bayes_logits(counts) / tau, dim=1)
    labels = data.train.labels
    c = data.num_classes
    n = torch.bincount(labels, minlength=c).double()
    empirical = torch.stack([probs[labels == k].mean(0) for k in range(c)])
    se_empirical = torch.stack([probs[labels == k].std(0) for k in range(c)]) / n.sqrt().unsqueeze(1)
    z = (empirical - truth).abs() / (se_truth**2 + se_empirical**2).sqrt().clamp_min(1e-12)
    assert z.max() < 4.5
    assert torch.allclose(truth.sum(1), torch.ones(c, dtype=torch.float64))
    report = icc_of_logits(data.truth.bayes_logits(counts), labels, data.info, tau, truth)
    assert torch.allclose(report.matrix, empirical)  # kdviz's own ICC of the same logits


@pytest.mark.slow
def test_bayes_error_matches_the_bayes_classifier_on_a_large_sample():
    data = load_dataset("planted", n_images=24_000, n_test=10)
    error, se = data.truth.bayes_error
    counts = data.train.images.flatten(1).long() // LEVEL
    wrong = (data.truth.bayes_logits(counts).argmax(1) != data.train.labels).double()
    sampled_se = math.sqrt(error * (1 - error) / len(wrong))
    assert abs(wrong.mean().item() - error) < 4 * math.hypot(se, sampled_se)
    assert se < 1e-3 and MC_PER_CLASS * data.num_classes >= 40_000


def test_true_icc_at_a_high_temperature_tends_to_uniform():
    p = Planted(classes=6, groups=2)
    flat, _ = p.true_icc(1e6)
    assert torch.allclose(flat, torch.full((6, 6), 1 / 6, dtype=torch.float64), atol=1e-4)
    sharp, _ = p.true_icc(1.0)
    assert (sharp.diagonal() > 0.5).all()


def test_load_dataset_options_are_checked():
    assert "label_noise" in dataset_options("planted") and dataset_options("digits") == []
    with pytest.raises(TypeError, match="valid:.*label_noise.*did you mean 'label_noise'"):
        load_dataset("planted", label_nosie=0.1)
    with pytest.raises(TypeError, match="dataset 'digits' got unknown argument"):
        load_dataset("digits", classes=3)
    with pytest.raises(ValueError, match="similarity must be in"):
        load_dataset("planted", similarity=1.0)
    with pytest.raises(ValueError, match="n_images must be a whole number"):
        load_dataset("planted", n_images=0)


def test_truth_scores_are_icc_distance_and_spearman_and_none_without_truth(small):
    torch.manual_seed(0)
    logits = torch.randn(len(small.test), small.num_classes)
    report = icc_of_logits(logits, small.test.labels, small.info, 4.0, small.truth.true_icc(4.0)[0])
    truth = small.truth.true_icc(4.0)[0]
    c = small.num_classes
    assert report.truth_distance == pytest.approx(float((report.matrix - truth).norm() / c))
    off = ~torch.eye(c, dtype=torch.bool)
    assert report.truth_rank == pytest.approx(spearmanr(truth[off], report.matrix[off]).statistic)
    digits = kd.load_dataset("digits")
    assert digits.truth is None
    plain = icc_of_logits(torch.randn(20, 10), torch.arange(20) % 10, digits.info)
    assert plain.truth is None and plain.truth_distance is None and plain.truth_rank is None


def test_spearman_gives_ties_their_mean_rank():
    a = torch.tensor([[0.0, 1.0, 1.0], [2.0, 0.0, 3.0], [4.0, 4.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 4.0], [5.0, 6.0, 0.0]])
    off = ~torch.eye(3, dtype=torch.bool)
    assert offdiagonal_spearman(a, b) == pytest.approx(spearmanr(a[off], b[off]).statistic)


def test_report_keeps_its_truth_when_saved(small, tmp_path):
    model = small.truth.bayes_model()
    report = kd.extract_icc(model, small)
    assert report.truth_distance < 0.02 and report.truth_rank > 0.8  # the posterior is near its own truth
    report.save(tmp_path / "r.pt")
    loaded = kd.ICCReport.load(tmp_path / "r.pt")
    assert torch.equal(loaded.truth, report.truth) and loaded.truth_distance == report.truth_distance


def test_training_records_the_distance_to_the_truth_every_epoch(small, tmp_path):
    result = kd.train(small, "mlp", "ce", epochs=2, progress=False, out_dir=tmp_path / "run")
    history = result.history
    for epoch, snapshot in enumerate(result.icc_snapshots):
        assert history["val_truth_distance"][epoch] == pytest.approx(snapshot.truth_distance)
        assert history["val_truth_rank"][epoch] == pytest.approx(snapshot.truth_rank)
    # a finished run resumed: its snapshots come back from last.pt with the truth
    resumed = kd.train(small, "mlp", "ce", epochs=2, progress=False, out_dir=tmp_path / "run", resume=True)
    assert resumed.icc_snapshots[0].truth_distance == pytest.approx(result.icc_snapshots[0].truth_distance)


def test_a_student_distils_from_the_bayes_checkpoint(small, tmp_path):
    from kdviz.train.checkpoint import atomic_save, model_checkpoint

    spec = small.truth.bayes_spec
    module = build_model(spec["name"], spec["num_classes"], tuple(spec["image_shape"]), **spec["kwargs"])
    atomic_save(model_checkpoint(module, spec, "planted"), tmp_path / "bayes.pt")
    loaded, _ = kd.load_model(tmp_path / "bayes.pt")
    assert torch.equal(loaded.planted.weights, small.truth.weights)
    student = kd.train(
        small,
        "mlp",
        {"ce": 0.1, "kd": {"weight": 0.9, "tau": 1.0}},
        teacher=tmp_path / "bayes.pt",
        epochs=1,
        progress=False,
    )
    assert math.isfinite(student.history["train_kd"][0])


@pytest.mark.slow
@pytest.mark.parametrize("image_size", [16, 28])
def test_every_small_model_trains_on_planted(image_size):
    data = load_dataset("planted", image_size=image_size, n_images=200, n_test=50)
    for model in ("cnn", "mlp"):
        result = kd.train(data, model, "ce", epochs=1, batch_size=32, progress=False)
        assert math.isfinite(result.history["train_loss"][0]) and "val_truth_distance" in result.history


def test_the_bayes_model_cannot_be_trained(small):
    with pytest.raises(ValueError, match="no trainable parameters.*pass it as teacher="):
        kd.train(small, "planted_bayes", "ce", epochs=1, progress=False, model_kwargs={"groups": 2})


@pytest.mark.slow
def test_every_zoo_model_takes_a_step_on_planted_images():
    """Grey 16x16 images fit every registered architecture: a forward and backward pass of each."""
    data = load_dataset("planted", n_images=100, n_test=10)
    x, y = normalize(data.train.images[:8], data.info), data.train.labels[:8]
    for name in kd.MODELS.names():
        if name == "planted_bayes":
            continue
        model = build_model(name, data.num_classes, data.info.image_shape)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        assert math.isfinite(loss.item()), name
