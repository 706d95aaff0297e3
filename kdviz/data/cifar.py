"""CIFAR-10 and CIFAR-100 from the python-pickle batches that torchvision downloads.

The files are read here, in exactly torchvision's way (pickle.load(..., encoding="latin1"),
torchvision's folder and file names from its CIFAR10 / CIFAR100 classes), rather than through
torchvision's constructor: that one checks md5 sums, which names no file when one is cut short
and rejects any file but the originals. Folders tried, for each root R of data_roots(root):
R/cifar-10-batches-py (where torchvision.datasets.CIFAR10(R, download=True) puts it) and
R/cifar10/cifar-10-batches-py; likewise cifar-100-python and cifar100/ for CIFAR-100.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import DatasetInfo, Split
from .registry import DATASETS
from .roots import MissingDataError, data_roots

IMAGE_SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32  # one row of b"data": the R, G and B planes, each 32 x 32 row-major


def download_command(torchvision_class: type, root: Path) -> str:
    return f'python -c "import torchvision; torchvision.datasets.{torchvision_class.__name__}({str(root)!r}, download=True)"'


def cifar_files(torchvision_class: type) -> tuple[list[str], list[str], str]:
    """(training files, test files, meta file) of torchvision's layout."""
    return (
        [name for name, _md5 in torchvision_class.train_list],
        [name for name, _md5 in torchvision_class.test_list],
        torchvision_class.meta["filename"],
    )


def find_cifar_folder(name: str, torchvision_class: type, root: Path | None) -> Path:
    """The first folder holding every file of the dataset; MissingDataError naming the folders
    tried (and the files missing from any that exists) otherwise."""
    roots = data_roots(root)
    base = torchvision_class.base_folder
    candidates = [d for r in roots for d in (r / base, r / name / base)]
    train, test, meta = cifar_files(torchvision_class)
    needed = [*train, *test, meta]
    partial = []
    for directory in candidates:
        missing = [f for f in needed if not (directory / f).is_file()]
        if not missing:
            return directory
        if directory.is_dir():
            partial.append(f"{directory} exists but lacks {', '.join(missing)}")
    note = "\n".join(
        partial
        + [
            f"On a machine with internet, the command above leaves the folder {base}/ in the given root (plus "
            f"the .tar.gz it came in, which can be deleted); copy that folder to {roots[0] / base}/ "
            f"or {roots[0] / name / base}/. It holds: {', '.join(needed)}."
        ]
    )
    raise MissingDataError(name, candidates, [download_command(torchvision_class, roots[0])], note=note)


# The only globals a CIFAR batch refers to: numpy arrays, and (in a pickle of protocol 2 written
# by Python 3) bytes, rebuilt by _codecs.encode. Anything else in a file of that name would be
# code that unpickling runs, so it is refused before it can run.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which no CIFAR batch holds; kdviz does not run it"
            )
        return super().find_class(module, name)


def read_pickle(path: Path, torchvision_class: type) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys. Any failure to unpickle means the file is cut short
    or damaged: ValueError naming it and saying how to fetch it again. Only numpy arrays are
    rebuilt: a pickle that would call anything else is refused, not run."""
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as e:  # EOFError, UnpicklingError, or whatever a damaged numpy array raises
        raise ValueError(
            f"{path} is truncated or corrupt ({type(e).__name__}: {e}); delete the folder {path.parent} and "
            f"download it again with: {download_command(torchvision_class, path.parent.parent)}"
        ) from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path} is not a CIFAR batch: it holds a {type(entry).__name__}, expected a dict")
    # The original files were pickled by Python 2 (str keys once loaded with latin1); files pickled
    # by Python 3 from bytes keys, as the format is usually described, load with bytes keys.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _field(entry: dict[str, Any], key: str, path: Path) -> Any:
    if key not in entry:
        raise ValueError(
            f"{path} has no {key!r} entry (it has {', '.join(map(repr, entry))}); is it a CIFAR file of the right kind?"
        )
    return entry[key]


def read_names(path: Path, key: str, expected: int, torchvision_class: type) -> tuple[str, ...]:
    names = _field(read_pickle(path, torchvision_class), key, path)
    names = tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)
    if len(names) != expected:
        raise ValueError(f"{path} lists {len(names)} {key}, expected {expected}")
    return names


def read_batches(
    paths: list[Path], label_keys: tuple[str, ...], num_classes: tuple[int, ...], torchvision_class: type
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """(images uint8 [N, 3, 32, 32], one int64 [N] array per label key) from batch files in order."""
    images, labels = [], [[] for _ in label_keys]
    for path in paths:
        entry = read_pickle(path, torchvision_class)
        data = _field(entry, "data", path)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
            shape = getattr(data, "shape", None)
            raise ValueError(
                f"{path}: 'data' must be a uint8 array [N, {PIXELS}], got {type(data).__name__} "
                f"{getattr(data, 'dtype', '')} {shape}; the file is corrupt"
            )
        images.append(data)
        for out, key, k in zip(labels, label_keys, num_classes):
            y = np.asarray(_field(entry, key, path), dtype=np.int64)
            if y.shape != (len(data),):
                raise ValueError(f"{path} has {len(data)} images but {y.size} {key}; the file is corrupt")
            if y.size and (y.min() < 0 or y.max() >= k):
                raise ValueError(f"{path} has {key} outside 0..{k - 1} (min {y.min()}, max {y.max()})")
            out.append(y)
    # Rows are the R, G, B planes one after the other: reshaping gives [N, C, H, W] directly.
    pixels = torch.from_numpy(np.concatenate(images).reshape(-1, *IMAGE_SHAPE))
    return pixels, [np.concatenate(y) for y in labels]


CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


@DATASETS.register("cifar10")
def cifar10(root: Path | None = None) -> tuple[DatasetInfo, Split, Split]:
    """(info, 50,000 training images, 10,000 test images), classes named by batches.meta."""
    # Imported here, not with the module: torchvision takes seconds to import (torch._dynamo, via
    # torchvision.ops), which every `import kdviz` would pay; kdviz only reads its file names.
    from torchvision.datasets import CIFAR10

    folder = find_cifar_folder("cifar10", CIFAR10, root)
    train_files, test_files, meta_file = cifar_files(CIFAR10)
    class_names = read_names(folder / meta_file, CIFAR10.meta["key"], 10, CIFAR10)
    splits = []
    for files in (train_files, test_files):
        images, (labels,) = read_batches([folder / f for f in files], ("labels",), (10,), CIFAR10)
        splits.append(Split(images, torch.from_numpy(labels)))
    info = DatasetInfo(
        name="cifar10",
        class_names=class_names,
        image_shape=IMAGE_SHAPE,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        augment="crop_flip",
        augment_padding=4,
    )
    return info, splits[0], splits[1]


def superclass_groups(
    fine: np.ndarray, coarse: np.ndarray, coarse_names: tuple[str, ...], where: Path
) -> dict[str, tuple[int, ...]]:
    """{coarse label name: fine classes seen with that coarse label}, in coarse-label order, from the
    labels in the files; ValueError if a fine class is seen with two coarse labels."""
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0) if len(fine) else np.empty((0, 2), np.int64)
    fine_ids, counts = np.unique(pairs[:, 0], return_counts=True)
    if (counts > 1).any():
        bad = int(fine_ids[counts > 1][0])
        raise ValueError(
            f"{where}: fine label {bad} appears with coarse labels "
            f"{sorted(pairs[pairs[:, 0] == bad, 1].tolist())}; each fine class must belong to one superclass"
        )
    groups: dict[str, list[int]] = {}
    for f, c in sorted(pairs.tolist(), key=lambda fc: (fc[1], fc[0])):
        groups.setdefault(coarse_names[c], []).append(f)
    return {name: tuple(members) for name, members in groups.items()}


@DATASETS.register("cifar100")
def cifar100(root: Path | None = None) -> tuple[DatasetInfo, Split, Split]:
    """(info, 50,000 training images, 10,000 test images); 100 classes in 20 superclasses, the
    groups taken from the coarse labels stored with the images."""
    from torchvision.datasets import CIFAR100  # (here for the reason given in cifar10)

    folder = find_cifar_folder("cifar100", CIFAR100, root)
    train_files, test_files, meta_file = cifar_files(CIFAR100)
    class_names = read_names(folder / meta_file, "fine_label_names", 100, CIFAR100)
    coarse_names = read_names(folder / meta_file, "coarse_label_names", 20, CIFAR100)
    splits, fine_all, coarse_all = [], [], []
    for files in (train_files, test_files):
        images, (fine, coarse) = read_batches(
            [folder / f for f in files], ("fine_labels", "coarse_labels"), (100, 20), CIFAR100
        )
        splits.append(Split(images, torch.from_numpy(fine)))
        fine_all.append(fine)
        coarse_all.append(coarse)
    groups = superclass_groups(np.concatenate(fine_all), np.concatenate(coarse_all), coarse_names, folder)
    info = DatasetInfo(
        name="cifar100",
        class_names=class_names,
        image_shape=IMAGE_SHAPE,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        groups=groups,
        augment="crop_flip",
        augment_padding=4,
    )
    return info, splits[0], splits[1]
