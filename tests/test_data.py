"""Datasets: the bundled digits, idx files in every layout, splits, low-data subsets, clear errors."""

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from kdviz.data import (
    DATASETS,
    DatasetInfo,
    MissingDataError,
    data_roots,
    dataset_names,
    load_dataset,
    normalize,
    split_indices,
)
from kdviz.data import idx as idx_module
from kdviz.data.base import Split, stratified_order
from kdviz.data.digits import digits_arrays
from kdviz.data.roots import CHECKOUT_DATA
from kdviz.registry import UnknownNameError


def fingerprints(split: Split) -> set[bytes]:
    """One hash per (image, label) pair; the 1,797 digits images are all distinct, so equal
    fingerprints mean the same image."""
    return {
        hashlib.sha1(img.numpy().tobytes() + bytes([int(y)])).digest() for img, y in zip(split.images, split.labels)
    }


@pytest.fixture(scope="module")
def digits_default():
    return load_dataset("digits", seed=0)


# ---------------------------------------------------------------------------------------- digits


def test_digits_shapes_types_and_sizes(digits_default):
    d = digits_default
    assert d.info.image_shape == (1, 8, 8) and d.num_classes == 10 and d.info.class_names[3] == "3"
    assert d.info.groups == {}
    for split in (d.train, d.val, d.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 8, 8)
        assert split.labels.dtype == torch.int64
        assert set(split.labels.tolist()) == set(range(10))
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert len(d.test) == round(0.3 * 1797) and len(d.val) == round(0.1 * (1797 - len(d.test)))
    assert d.train.images.max() == 255 and d.train.images.min() == 0  # 16 -> 255, 0 -> 0


def test_digits_pixels_are_rescaled_sklearn_values():
    from sklearn.datasets import load_digits

    images, labels = digits_arrays()
    bunch = load_digits()
    assert torch.equal(images[:, 0].double(), torch.from_numpy(np.round(bunch.images * 255 / 16)))
    assert torch.equal(labels, torch.from_numpy(bunch.target))


def test_digits_mean_std_constants_match_the_pixels(digits_default):
    x = digits_arrays()[0].double() / 255
    assert digits_default.info.mean[0] == pytest.approx(x.mean().item(), abs=1e-4)
    assert digits_default.info.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-4)


def test_test_split_is_fixed_and_val_split_follows_the_seed(digits_default):
    a, b, a_again = digits_default, load_dataset("digits", seed=1), load_dataset("digits", seed=0)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    assert fingerprints(a.val) != fingerprints(b.val)
    assert set(b.val.labels.tolist()) == set(range(10))
    assert torch.equal(a.val.images, a_again.val.images) and torch.equal(a.train.labels, a_again.train.labels)


def test_val_is_stratified(digits_default):
    counts = torch.bincount(digits_default.val.labels, minlength=10)
    full = torch.bincount(torch.cat([digits_default.train.labels, digits_default.val.labels]), minlength=10)
    expected = full.double() * len(digits_default.val) / full.sum()
    assert (counts - expected).abs().max() <= 1


def test_train_val_test_are_disjoint_and_cover_everything(digits_default):
    d = digits_default
    train, val, test = fingerprints(d.train), fingerprints(d.val), fingerprints(d.test)
    assert len(train) == len(d.train) and len(val) == len(d.val) and len(test) == len(d.test)
    assert not (train & val) and not (train & test) and not (val & test)
    images, labels = digits_arrays()
    assert train | val | test == fingerprints(Split(images, labels))


# ------------------------------------------------------------------------------ low-data subsets


def test_n_train_is_exact_stratified_and_nested(digits_default):
    big = load_dataset("digits", seed=3, n_train=200)
    small = load_dataset("digits", seed=3, n_train=57)
    assert len(big.train) == 200 and len(small.train) == 57
    assert torch.bincount(big.train.labels, minlength=10).tolist() == [20] * 10
    assert torch.bincount(small.train.labels, minlength=10).min() >= 5
    assert fingerprints(small.train) < fingerprints(big.train)
    full = load_dataset("digits", seed=3)
    assert fingerprints(big.train) < fingerprints(full.train)
    # Neither validation nor test shrinks with the training set.
    assert torch.equal(small.val.images, full.val.images) and torch.equal(small.test.images, full.test.images)
    assert fingerprints(load_dataset("digits", seed=4, n_train=57).train) != fingerprints(small.train)


def test_n_train_equal_to_the_number_of_classes_gives_one_per_class():
    d = load_dataset("digits", n_train=10)
    assert sorted(d.train.labels.tolist()) == list(range(10))


def test_train_fraction(digits_default):
    half = load_dataset("digits", train_fraction=0.5)
    assert len(half.train) == round(0.5 * len(digits_default.train))
    everything = load_dataset("digits", train_fraction=1.0)
    assert torch.equal(everything.train.images, digits_default.train.images)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": 0}, r"val_fraction must be in \(0, 1\).*got 0"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\).*got 1.0"),
        ({"val_fraction": -0.2}, r"val_fraction must be in \(0, 1\).*got -0.2"),
        ({"n_train": 9}, r"n_train must be in \[10, 1132\].*got 9"),
        ({"n_train": 1133}, r"n_train must be in \[10, 1132\].*got 1133"),
        ({"n_train": 50.0}, r"n_train must be an int.*50.0"),
        ({"train_fraction": 0.0}, r"train_fraction must be in \(0, 1\].*got 0.0"),
        ({"train_fraction": 1.5}, r"train_fraction must be in \(0, 1\].*got 1.5"),
        ({"n_train": 100, "train_fraction": 0.5}, r"not both"),
    ],
)
def test_bad_split_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)


def test_stratified_order_prefixes_are_proportional_and_cover_all_classes():
    labels = torch.tensor([0] * 60 + [1] * 25 + [2] * 10 + [3] * 5)[
        torch.randperm(100, generator=torch.Generator().manual_seed(0))
    ]
    order = stratified_order(labels, torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(100))
    assert set(labels[order[:4]].tolist()) == {0, 1, 2, 3}
    share = torch.tensor([0.60, 0.25, 0.10, 0.05], dtype=torch.float64)
    for n in range(8, 101):
        counts = torch.bincount(labels[order[:n]], minlength=4).double()
        assert (counts - n * share).abs().max() <= 1.5, n


def test_split_indices_are_disjoint_index_sets():
    labels = torch.arange(200) % 7
    train, val = split_indices(labels, val_fraction=0.2, n_train=50, seed=5)
    assert len(val) == 40 and len(train) == 50
    assert not set(train.tolist()) & set(val.tolist())
    assert set(labels[train].tolist()) == set(range(7)) == set(labels[val].tolist())


# ------------------------------------------------------------------------------------- idx files


def write_idx(path, array: np.ndarray, magic: int) -> None:
    """Write `array` (uint8) in the real idx layout: magic, big-endian int32 dims, raw bytes."""
    raw = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def make_idx_folder(folder, *, gz=True, seed=0, n_train=40, n_test=12):
    """Random 28x28 images and labels covering all 10 classes; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, stem in idx_module.FILES.items():
        magic = idx_module.IMAGES_MAGIC if key.endswith("images") else idx_module.LABELS_MAGIC
        write_idx(folder / (stem + ".gz" if gz else stem), arrays[key], magic)
    return arrays


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Whether or not the Debian package is installed, it must not be found."""
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")


def assert_round_trip(name, root, arrays):
    info, full, test = DATASETS.get(name)(root)
    assert info.image_shape == (1, 28, 28)
    assert torch.equal(full.images, torch.from_numpy(arrays["train_images"]).unsqueeze(1))
    assert torch.equal(full.labels, torch.from_numpy(arrays["train_labels"]).long())
    assert torch.equal(test.images, torch.from_numpy(arrays["test_images"]).unsqueeze(1))
    assert torch.equal(test.labels, torch.from_numpy(arrays["test_labels"]).long())
    data = load_dataset(name, root, seed=0)
    assert torch.equal(data.test.images, test.images)
    assert len(data.train) + len(data.val) == len(full) and len(data.val) == 10


@pytest.mark.usefixtures("no_debian")
def test_fashion_mnist_round_trip_plain_layout(tmp_path):
    arrays = make_idx_folder(tmp_path / "fashion_mnist")
    assert_round_trip("fashion_mnist", tmp_path, arrays)
    info = DATASETS.get("fashion_mnist")(tmp_path)[0]
    assert info.class_names[0] == "T-shirt/top" and info.class_names[9] == "Ankle boot"
    assert list(info.groups) == ["tops", "footwear", "others"]
    assert info.class_to_group() == [0, 2, 0, 0, 0, 1, 0, 1, 2, 1]


def test_mnist_round_trip_torchvision_layout(tmp_path):
    assert_round_trip("mnist", tmp_path, make_idx_folder(tmp_path / "MNIST" / "raw"))


@pytest.mark.usefixtures("no_debian")
def test_unpacked_files_are_read_too(tmp_path):
    assert_round_trip("fashion_mnist", tmp_path, make_idx_folder(tmp_path / "fashion_mnist" / "raw", gz=False))


def test_debian_location_is_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    arrays = make_idx_folder(tmp_path / "debian")
    assert_round_trip("fashion_mnist", tmp_path / "empty-root", arrays)


@pytest.mark.parametrize("damage", ["cut_data", "cut_gzip_stream", "extra_bytes"])
def test_truncated_or_corrupt_file_names_the_file(tmp_path, damage):
    make_idx_folder(tmp_path / "mnist")
    victim = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    if damage == "cut_gzip_stream":
        victim.write_bytes(victim.read_bytes()[:-100])
    else:
        raw = gzip.decompress(victim.read_bytes())
        victim.write_bytes(gzip.compress(raw[:-28] if damage == "cut_data" else raw + b"\0"))
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        load_dataset("mnist", tmp_path)
    assert str(victim) in str(err.value) and "download it again" in str(err.value)


def test_wrong_magic_number_is_reported(tmp_path):
    make_idx_folder(tmp_path / "mnist")
    labels = np.zeros(40, dtype=np.uint8)
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", labels, idx_module.IMAGES_MAGIC)
    with pytest.raises(ValueError, match="magic number 2051, expected 2049"):
        load_dataset("mnist", tmp_path)


@pytest.mark.usefixtures("no_debian")
def test_missing_fashion_mnist_lists_paths_and_commands(tmp_path):
    make_idx_folder(tmp_path / "elsewhere")
    with pytest.raises(MissingDataError) as err:
        load_dataset("fashion_mnist", tmp_path)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for folder in ("fashion_mnist", "fashion_mnist/raw", "FashionMNIST/raw"):
        assert str(tmp_path / folder) in message
    assert str(tmp_path / "no-debian-package") in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert f"torchvision.datasets.FashionMNIST({str(tmp_path)!r}, download=True)" in message


def test_missing_mnist_file_among_four(tmp_path):
    make_idx_folder(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MissingDataError) as err:
        load_dataset("mnist", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "torchvision.datasets.MNIST(" in message
    assert "t10k-labels-idx1-ubyte" in message and "apt-get" not in message


def test_data_roots_priority(tmp_path, monkeypatch):
    monkeypatch.delenv("KDVIZ_DATA", raising=False)
    assert data_roots() == [CHECKOUT_DATA] and (CHECKOUT_DATA.parent / "kdviz" / "data").is_dir()
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path))
    assert data_roots() == [tmp_path]
    assert data_roots(str(tmp_path / "explicit")) == [tmp_path / "explicit"]


def test_env_var_is_honoured(tmp_path, monkeypatch):
    arrays = make_idx_folder(tmp_path / "MNIST" / "raw", n_train=30)
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path))
    data = load_dataset("mnist")
    assert len(data.train) + len(data.val) == 30
    assert torch.equal(data.test.labels, torch.from_numpy(arrays["test_labels"]).long())


@pytest.mark.skipif(
    not idx_module.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist_from_debian(tmp_path):
    info, full, test = DATASETS.get("fashion_mnist")(tmp_path)  # empty root: falls back to Debian's files
    assert full.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(full.labels).tolist() == [6000] * 10 and torch.bincount(test.labels).tolist() == [1000] * 10
    mean = full.images.double().mean().item() / 255
    assert mean == pytest.approx(info.mean[0], abs=1e-3)


# ------------------------------------------------------------------------------------- the rest


def test_unknown_dataset_lists_the_choices():
    names = ["cifar10", "cifar100", "cinic10", "digits", "fashion_mnist", "mnist", "planted", "tiny_imagenet"]
    assert dataset_names() == names
    with pytest.raises(UnknownNameError, match="valid choices: " + ", ".join(names)):
        load_dataset("imagenet")


def test_normalize_matches_the_formula():
    info = DatasetInfo("t", ("a", "b"), (2, 1, 2), mean=(0.5, 0.2), std=(0.25, 0.4))
    images = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)
    # (v / 255 - mean) / std, by hand: channel 0 (0, 255) -> (-2, 2); channel 1 (51, 102) -> (0, 0.5).
    expected = torch.tensor([[[[-2.0, 2.0]], [[0.0, 0.5]]]])
    assert torch.allclose(normalize(images, info), expected, atol=1e-6)
    assert images.dtype == torch.uint8 and images[0, 0, 0, 1] == 255  # input untouched
