"""Paper-scale datasets (CIFAR-10/100, CINIC-10, Tiny ImageNet) from small files written in each
dataset's real on-disk layout, and the batch crop-and-flip augmentation."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from kdviz.data import DATASETS, MissingDataError, dataset_names, load_dataset
from kdviz.data import folders as folders_module
from kdviz.data.augment import random_crop_flip
from kdviz.data.base import DatasetInfo, Split
from kdviz.data.sample_files import (
    VAL,
    WNIDS,
    colour,
    write_cifar100,
    write_jpeg,
    write_pickle,
    write_tiny_imagenet,
)


def test_paper_datasets_are_registered():
    assert {"cifar10", "cifar100", "cinic10", "tiny_imagenet"} <= set(dataset_names())


# ---------------------------------------------------------------------------------------- CIFAR

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def key(name, as_bytes):
    return name.encode() if as_bytes else name


def make_cifar10(folder, *, as_bytes=True, seed=0):
    """3 of the 10 classes (1, 4, 7), 4 training images each spread over data_batch_1..5, 2 test
    images each; returns (train data [12, 3072], train labels, test data, test labels)."""
    rng = np.random.default_rng(seed)
    train_labels = [1, 4, 7] * 4
    test_labels = [7, 1, 4] * 2
    train = rng.integers(0, 256, (12, 3072), dtype=np.uint8)
    test = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    for i, (lo, hi) in enumerate([(0, 3), (3, 6), (6, 8), (8, 10), (10, 12)], 1):
        write_pickle(
            folder / f"data_batch_{i}",
            {
                key("batch_label", as_bytes): key(f"training batch {i} of 5", as_bytes),
                key("labels", as_bytes): train_labels[lo:hi],
                key("data", as_bytes): train[lo:hi],
                key("filenames", as_bytes): [key(f"img{j}.png", as_bytes) for j in range(lo, hi)],
            },
        )
    write_pickle(folder / "test_batch", {key("labels", as_bytes): test_labels, key("data", as_bytes): test})
    write_pickle(
        folder / "batches.meta",
        {
            key("label_names", as_bytes): [key(n, as_bytes) for n in CIFAR10_NAMES],
            key("num_cases_per_batch", as_bytes): 10000,
            key("num_vis", as_bytes): 3072,
        },
    )
    return train, np.array(train_labels), test, np.array(test_labels)


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes-keys", "str-keys"])
def test_cifar10_round_trip(tmp_path, as_bytes):
    train, train_labels, test, test_labels = make_cifar10(tmp_path / "cifar-10-batches-py", as_bytes=as_bytes)
    info, full, test_split = DATASETS.get("cifar10")(tmp_path)
    assert info.class_names == tuple(CIFAR10_NAMES) and info.image_shape == (3, 32, 32)
    assert info.mean == (0.4914, 0.4822, 0.4465) and info.std == (0.2470, 0.2435, 0.2616)
    assert info.augment == "crop_flip" and info.augment_padding == 4 and info.groups == {}
    assert full.images.dtype == torch.uint8 and full.images.shape == (12, 3, 32, 32)
    # Row layout: 1024 red values, then green, then blue, each plane row-major.
    i, c, y, x = 5, 2, 17, 30
    assert full.images[i, c, y, x] == train[i, c * 1024 + y * 32 + x]
    assert torch.equal(full.images, torch.from_numpy(train).view(12, 3, 32, 32))
    assert full.labels.tolist() == train_labels.tolist() and full.labels.dtype == torch.int64
    assert torch.equal(test_split.images, torch.from_numpy(test).view(6, 3, 32, 32))
    assert test_split.labels.tolist() == test_labels.tolist()
    data = load_dataset("cifar10", root=tmp_path, val_fraction=0.25)
    assert len(data.train) == 9 and len(data.val) == 3 and set(data.val.labels.tolist()) == {1, 4, 7}
    assert torch.equal(data.test.images, test_split.images)


def test_cifar10_agrees_with_torchvision_reader(tmp_path, monkeypatch):
    """torchvision's own CIFAR10 class, its md5 check switched off, reads the same pixels and labels."""
    import torchvision.datasets.cifar as tv_cifar

    make_cifar10(tmp_path / "cifar-10-batches-py", as_bytes=False)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    info, full, test = DATASETS.get("cifar10")(tmp_path)
    for split, train in ((full, True), (test, False)):
        reference = tv_cifar.CIFAR10(str(tmp_path), train=train, download=False)
        assert torch.equal(split.images, torch.from_numpy(reference.data).permute(0, 3, 1, 2))
        assert split.labels.tolist() == reference.targets
    assert list(info.class_names) == reference.classes


def test_cifar10_in_a_named_subfolder(tmp_path):
    train, *_ = make_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py")
    _, full, _ = DATASETS.get("cifar10")(tmp_path)
    assert torch.equal(full.images, torch.from_numpy(train).view(12, 3, 32, 32))


def test_cifar100_round_trip_and_superclasses_from_coarse_labels(tmp_path):
    arrays, fine_names, coarse_names = write_cifar100(tmp_path / "cifar-100-python")
    info, full, test = DATASETS.get("cifar100")(tmp_path)
    assert info.class_names == tuple(fine_names) and info.num_classes == 100
    assert info.mean == (0.5071, 0.4865, 0.4409) and info.std == (0.2673, 0.2564, 0.2762)
    assert info.augment == "crop_flip" and info.augment_padding == 4
    data, fine = arrays["train"]
    assert torch.equal(full.images, torch.from_numpy(data).view(-1, 3, 32, 32)) and full.labels.tolist() == fine
    data, fine = arrays["test"]
    assert torch.equal(test.images, torch.from_numpy(data).view(-1, 3, 32, 32)) and test.labels.tolist() == fine
    # Groups come from the coarse labels in the files, in coarse-label order, named from the meta file.
    assert info.groups == {"coarse00": (10, 88), "coarse07": (3, 99), "coarse19": (42, 57)}
    groups = info.class_to_group()
    assert groups[10] == groups[88] == 0 and groups[3] == groups[99] == 1 and groups[42] == groups[57] == 2
    loaded = load_dataset("cifar100", root=tmp_path, val_fraction=0.25, n_train=12, seed=1)
    assert len(loaded.train) == 12 and len(loaded.val) == 6 and len(loaded.test) == 12


def test_cifar100_groups_follow_the_files_not_a_table(tmp_path):
    other = {0: 5, 1: 5, 2: 6}
    write_cifar100(tmp_path / "cifar-100-python", fine_to_coarse=other)
    assert DATASETS.get("cifar100")(tmp_path)[0].groups == {"coarse05": (0, 1), "coarse06": (2,)}


def test_cifar100_fine_class_in_two_superclasses_is_an_error(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder)
    entry = pickle.loads((folder / "test").read_bytes())
    entry[b"coarse_labels"][0] = 11
    write_pickle(folder / "test", entry)
    with pytest.raises(ValueError, match="fine label 3 appears with coarse labels \\[7, 11\\]"):
        DATASETS.get("cifar100")(tmp_path)


def test_missing_cifar_folder_names_the_paths_and_the_command(tmp_path):
    with pytest.raises(MissingDataError) as err:
        load_dataset("cifar100", root=tmp_path)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path / "cifar-100-python") in message and str(tmp_path / "cifar100" / "cifar-100-python") in message
    assert f"torchvision.datasets.CIFAR100({str(tmp_path)!r}, download=True)" in message


def test_cifar_folder_lacking_one_batch_names_it(tmp_path):
    make_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(MissingDataError, match="lacks data_batch_3") as err:
        load_dataset("cifar10", root=tmp_path)
    assert "torchvision.datasets.CIFAR10(" in str(err.value)


@pytest.mark.parametrize("victim, keep", [("data_batch_2", 0.5), ("test_batch", 0.99), ("batches.meta", 0.3)])
def test_truncated_cifar_pickle_names_the_file(tmp_path, victim, keep):
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    raw = (folder / victim).read_bytes()
    (folder / victim).write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(folder / victim) in str(err.value) and "download" in str(err.value)


# ------------------------------------------------------------------------------------- CINIC-10

CINIC_CLASSES = ["truck", "airplane", "cat"]  # written in this order; loaded sorted


def make_cinic(base, *, counts=None, seed=0):
    """PNG images in base/{train,valid,test}/<class>/; returns {split: (images [N,3,32,32], labels)}
    in the loader's order (sorted classes, sorted file names)."""
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 4, "valid": 2, "test": 3}
    out = {}
    for split, n in counts.items():
        images = []
        for name in CINIC_CLASSES:
            k = sorted(CINIC_CLASSES).index(name)
            for j in range(n):
                path = base / split / name / f"cifar10-{split}-{j}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                if name == "cat" and j == 0:  # a greyscale PNG, as some CINIC-10 images are
                    grey = rng.integers(0, 256, (32, 32), dtype=np.uint8)
                    Image.fromarray(grey, "L").save(path)
                    array = np.repeat(grey[:, :, None], 3, axis=2)
                else:
                    array = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    Image.fromarray(array, "RGB").save(path)
                images.append((k, path.name, array))
        images.sort(key=lambda t: (t[0], t[1]))
        out[split] = (
            torch.from_numpy(np.stack([a for _, _, a in images])).permute(0, 3, 1, 2),
            [k for k, _, _ in images],
        )
    return out


def test_cinic10_round_trip_with_its_own_validation_split(tmp_path):
    written = make_cinic(tmp_path / "cinic10")
    info, train, test, val = DATASETS.get("cinic10")(tmp_path)
    assert info.class_names == ("airplane", "cat", "truck") and info.image_shape == (3, 32, 32)
    assert info.mean == (0.47889522, 0.47227842, 0.43047404) and info.std == (0.24205776, 0.23828046, 0.25874835)
    assert info.augment == "crop_flip" and info.augment_padding == 4
    for split, name in ((train, "train"), (val, "valid"), (test, "test")):
        assert torch.equal(split.images, written[name][0]), name
        assert split.labels.tolist() == written[name][1], name
    data = load_dataset("cinic10", root=tmp_path, val_fraction=0.5)
    # The valid/ folder is the validation split; nothing is carved from train.
    assert torch.equal(data.val.images, written["valid"][0]) and data.val.labels.tolist() == written["valid"][1]
    assert torch.equal(data.train.images, written["train"][0]) and torch.equal(data.test.images, written["test"][0])


def test_cinic10_low_data_subsets_keep_the_validation_split(tmp_path):
    written = make_cinic(tmp_path / "cinic10", counts={"train": 8, "valid": 2, "test": 2})
    small = load_dataset("cinic10", root=tmp_path, n_train=6, seed=2)
    big = load_dataset("cinic10", root=tmp_path, n_train=15, seed=2)
    assert torch.bincount(small.train.labels).tolist() == [2, 2, 2]
    as_set = lambda split: {img.numpy().tobytes() for img in split.images}  # noqa: E731
    assert as_set(small.train) < as_set(big.train) < {img.numpy().tobytes() for img in written["train"][0]}
    assert torch.equal(small.val.images, written["valid"][0]) and torch.equal(big.val.images, small.val.images)
    assert len(load_dataset("cinic10", root=tmp_path, train_fraction=0.5).train) == 12
    with pytest.raises(ValueError, match=r"n_train must be in \[3, 24\]"):
        load_dataset("cinic10", root=tmp_path, n_train=25)


def test_four_tuple_loader_contract(monkeypatch):
    g = torch.Generator().manual_seed(0)
    split = lambda n: Split(torch.randint(0, 256, (n, 1, 2, 2), generator=g).to(torch.uint8), torch.arange(n) % 2)  # noqa: E731
    train, test, val = split(10), split(4), split(6)
    info = DatasetInfo("four", ("a", "b"), (1, 2, 2), (0.5,), (0.5,))
    monkeypatch.setitem(DATASETS._entries, "four", lambda root: (info, train, test, val))
    data = load_dataset("four")
    assert data.train is not train and torch.equal(data.train.images, train.images)
    assert data.val is val and data.test is test
    assert len(load_dataset("four", n_train=4).train) == 4


def test_missing_cinic10_split_names_it(tmp_path):
    make_cinic(tmp_path / "cinic10", counts={"train": 2, "test": 2})
    with pytest.raises(MissingDataError) as err:
        load_dataset("cinic10", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cinic10" / "valid") in message
    assert "https://datashare.ed.ac.uk/handle/10283/3192" in message and str(tmp_path / "cinic10") in message


def test_missing_cinic10_folder(tmp_path):
    make_cinic(tmp_path / "CINIC-10-elsewhere", counts={"train": 1})
    with pytest.raises(MissingDataError) as err:
        load_dataset("cinic10", root=tmp_path)
    assert str(tmp_path / "cinic10") in str(err.value) and "datashare.ed.ac.uk" in str(err.value)


def test_cinic10_classes_must_agree_across_splits(tmp_path):
    make_cinic(tmp_path / "cinic10", counts={"train": 1, "valid": 1, "test": 1})
    (tmp_path / "cinic10" / "test" / "cat").rename(tmp_path / "cinic10" / "test" / "kitten")
    with pytest.raises(ValueError, match="differ from those of"):
        load_dataset("cinic10", root=tmp_path)


def test_wrong_image_size_names_the_file(tmp_path):
    make_cinic(tmp_path / "cinic10", counts={"train": 1, "valid": 1, "test": 1})
    victim = tmp_path / "cinic10" / "valid" / "cat" / "cifar10-valid-0.png"
    Image.new("RGB", (31, 32)).save(victim)
    with pytest.raises(ValueError, match="is 31x32 pixels, expected 32x32") as err:
        load_dataset("cinic10", root=tmp_path)
    assert str(victim) in str(err.value)


def test_corrupt_png_names_the_file(tmp_path):
    make_cinic(tmp_path / "cinic10", counts={"train": 1, "valid": 1, "test": 1})
    victim = tmp_path / "cinic10" / "train" / "truck" / "cifar10-train-0.png"
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        load_dataset("cinic10", root=tmp_path)
    assert str(victim) in str(err.value)


# -------------------------------------------------------------------------------- Tiny ImageNet

SORTED_NAMES = ("goldfish", "Chihuahua", "zebra crossing")


def pil_decode(path):
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def test_tiny_imagenet_round_trip(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    write_tiny_imagenet(base)
    info, train, test = DATASETS.get("tiny_imagenet")(tmp_path)
    assert info.class_names == SORTED_NAMES and info.image_shape == (3, 64, 64)
    assert info.mean == (0.4802, 0.4481, 0.3975) and info.std == (0.2770, 0.2691, 0.2821)
    assert info.augment == "crop_flip" and info.augment_padding == 8
    assert train.images.shape == (12, 3, 64, 64) and train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    wnids = sorted(WNIDS)
    for i, (k, j) in enumerate((k, j) for k in range(3) for j in range(4)):
        path = base / "train" / wnids[k] / "images" / f"{wnids[k]}_{j}.JPEG"
        assert torch.equal(train.images[i], pil_decode(path))  # exactly what PIL decodes
        expected = torch.tensor(colour(k, j), dtype=torch.int16)
        if (k, j) == (2, 3):  # the greyscale JPEG: three equal channels
            assert torch.equal(train.images[i][0], train.images[i][1]) and torch.equal(
                train.images[i][1], train.images[i][2]
            )
        else:
            assert (train.images[i].to(torch.int16) - expected.view(3, 1, 1)).abs().max() <= 3
    data = load_dataset("tiny_imagenet", root=tmp_path, val_fraction=0.25)
    assert len(data.train) == 9 and len(data.val) == 3 and torch.equal(data.test.images, test.images)


def test_tiny_imagenet_test_labels_follow_the_annotations(tmp_path):
    write_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    _, _, test = DATASETS.get("tiny_imagenet")(tmp_path)
    assert len(test) == len(VAL)
    # Each image's colour was chosen from its annotated class: every (image, label) pair must match.
    seen = set()
    for image, label in zip(test.images, test.labels.tolist()):
        mean = image.double().mean(dim=(1, 2))
        j = next(
            j
            for j, (_, k) in enumerate(VAL)
            if torch.allclose(mean, torch.tensor(colour(k, j), dtype=torch.float64), atol=3)
        )
        assert label == VAL[j][1], VAL[j][0]
        seen.add(j)
    assert seen == set(range(len(VAL)))
    # The labels in sorted-file order are not monotone, so no folder/file ordering could yield them.
    by_file = [k for _, k in sorted(VAL)]
    assert by_file != sorted(by_file)


@pytest.mark.parametrize("missing", ["val/val_annotations.txt", "words.txt", "val/images", "train"])
def test_tiny_imagenet_missing_file_is_named(tmp_path, missing):
    import shutil

    base = tmp_path / "tiny-imagenet-200"
    write_tiny_imagenet(base, per_class=1)
    victim = base / missing
    shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
    with pytest.raises(MissingDataError) as err:
        load_dataset("tiny_imagenet", root=tmp_path)
    message = str(err.value)
    assert str(victim) in message and "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in message
    assert str(base) in message


def test_tiny_imagenet_missing_folder(tmp_path):
    with pytest.raises(MissingDataError) as err:
        load_dataset("tiny_imagenet", root=tmp_path)
    assert str(tmp_path / "tiny-imagenet-200") in str(err.value) and "tiny-imagenet-200.zip" in str(err.value)


def test_tiny_imagenet_classes_from_train_folders_without_wnids_file(tmp_path):
    write_tiny_imagenet(tmp_path / "tiny-imagenet-200", per_class=1)
    (tmp_path / "tiny-imagenet-200" / "wnids.txt").unlink()
    assert DATASETS.get("tiny_imagenet")(tmp_path)[0].class_names == SORTED_NAMES


def test_tiny_imagenet_unannotated_val_image_is_an_error(tmp_path):
    write_tiny_imagenet(tmp_path / "tiny-imagenet-200", per_class=1)
    write_jpeg(tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_99.JPEG", (0, 0, 0))
    with pytest.raises(ValueError, match="val_99.JPEG"):
        load_dataset("tiny_imagenet", root=tmp_path)


def test_progress_bar_for_many_images(tmp_path, monkeypatch, capsys):
    write_tiny_imagenet(tmp_path / "tiny-imagenet-200", per_class=2)
    monkeypatch.setattr(folders_module, "PROGRESS_THRESHOLD", 3)
    DATASETS.get("tiny_imagenet")(tmp_path)
    err = capsys.readouterr().err
    assert "tiny_imagenet train" in err and "6/6" in err and "tiny_imagenet val" in err


# ---------------------------------------------------------------------------------- augmentation


def batch(b=8, c=3, h=6, w=5, seed=0):
    return torch.randint(0, 256, (b, c, h, w), generator=torch.Generator().manual_seed(seed)).to(torch.uint8)


def test_crop_flip_keeps_shape_dtype_and_device():
    images = batch()
    out = random_crop_flip(images, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8 and out.device == images.device
    assert random_crop_flip(images[:0]).shape == (0, 3, 6, 5)


def test_crop_flip_without_padding_only_flips():
    images = batch(b=64)
    out = random_crop_flip(images, padding=0, generator=torch.Generator().manual_seed(1))
    flipped = torch.tensor([not torch.equal(o, i) for o, i in zip(out, images)])
    assert 10 < int(flipped.sum()) < 54  # about half
    assert torch.equal(out[~flipped], images[~flipped])
    assert torch.equal(out[flipped], torch.flip(images[flipped], dims=[-1]))


def test_crop_flip_is_deterministic_given_the_generator():
    images = batch(b=32)
    a = random_crop_flip(images, 2, torch.Generator().manual_seed(7))
    b = random_crop_flip(images, 2, torch.Generator().manual_seed(7))
    c = random_crop_flip(images, 2, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def all_crops(image, padding):
    """Every (dy, dx, flip) view of the zero-padded image, by brute force."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            yield (dy, dx, False), crop
            yield (dy, dx, True), torch.flip(crop, dims=[-1])


@pytest.mark.parametrize("padding, shape", [(2, (3, 5, 4)), (4, (3, 32, 32))])
def test_every_output_is_a_crop_of_the_padded_image(padding, shape):
    images = batch(48 if padding == 2 else 6, *shape, seed=3)
    out = random_crop_flip(images, padding, torch.Generator().manual_seed(5))
    views = set()
    for image, result in zip(images, out):
        matches = [view for view, crop in all_crops(image, padding) if torch.equal(crop, result)]
        assert matches, "output is not a padded crop of its input"
        views.add(matches[0])
    if padding == 2:  # offsets range over the whole [0, 2 * padding] square, with and without flips
        assert {v[0] for v in views} == {v[1] for v in views} == set(range(5)) and {v[2] for v in views} == {
            False,
            True,
        }


def test_crop_flip_rejects_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(batch(), padding=-1)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        random_crop_flip(batch()[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_crop_flip_on_gpu_matches_cpu():
    images = batch(b=64, h=32, w=32)
    cpu = random_crop_flip(images, 4, torch.Generator().manual_seed(9))
    gpu = random_crop_flip(images.cuda(), 4, torch.Generator().manual_seed(9))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)


def test_dataset_info_checks_augment():
    with pytest.raises(ValueError, match="augment must be one of"):
        DatasetInfo("t", ("a",), (1, 1, 1), (0.5,), (0.5,), augment="mixup")
    with pytest.raises(ValueError, match="augment_padding"):
        DatasetInfo("t", ("a",), (1, 1, 1), (0.5,), (0.5,), augment="crop_flip", augment_padding=-1)


class _Hostile:
    """A pickle that runs os.mkdir(marker) when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_cifar_batch_that_would_run_code_is_refused_unrun(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    marker = tmp_path / "ran"
    write_pickle(folder / "data_batch_3", {"data": _Hostile(marker), "labels": [1]})
    with pytest.raises(ValueError, match=r"data_batch_3 is truncated or corrupt .*mkdir, which no CIFAR batch holds"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()
