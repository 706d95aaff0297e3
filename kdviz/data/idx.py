"""MNIST and Fashion-MNIST from their idx files (the format of the original distribution).

The files are found in whichever layout they were fetched in: plain (`<root>/<name>/`),
torchvision's (`<root>/MNIST/raw/`, `<root>/FashionMNIST/raw/`) or Debian's package
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist/), gzip'd or not.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import DatasetInfo, Split
from .registry import DATASETS
from .roots import MissingDataError, data_roots

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N,)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Where `apt-get install dataset-fashion-mnist` puts the four .gz files. A module constant so
# that tests can point it elsewhere and not depend on whether the package is installed.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

MNIST_INFO = DatasetInfo(
    name="mnist",
    class_names=tuple(str(k) for k in range(10)),
    image_shape=(1, 28, 28),
    mean=(0.1307,),
    std=(0.3081,),
)

FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    image_shape=(1, 28, 28),
    mean=(0.2860,),
    std=(0.3530,),
    groups={"tops": (0, 2, 3, 4, 6), "footwear": (5, 7, 9), "others": (1, 8)},
)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array stored in an idx file (gzip'd when the name ends in .gz), checked against
    the expected magic number and the dimensions in its header."""
    path = Path(path)
    corrupt = f"{path} is truncated or corrupt; delete it and download it again"
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{corrupt} ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"{corrupt} (only {len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path} is not an idx file of the expected kind: magic number {found}, expected {magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{corrupt} (header cut short)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(f"{corrupt}: its header says {shape}, i.e. {expected} bytes, but it has {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    # The unpacked file first: it needs no decompression (torchvision keeps both).
    for path in (directory / stem, directory / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def find_idx_files(
    name: str, torchvision_folder: str, root: Path | None, debian: tuple[Path, str] | None = None
) -> dict[str, Path]:
    """The four idx files of one dataset, all from the first folder that has all of them.

    Folders tried, for each root R of data_roots(root): R/<name>, R/<name>/raw,
    R/<torchvision_folder>/raw; then the folder of `debian`
    = (folder, Debian package name). Raises MissingDataError when none has all four.
    """
    roots = data_roots(root)
    candidates = [d for r in roots for d in (r / name, r / name / "raw", r / torchvision_folder / "raw")]
    if debian is not None:
        candidates.append(debian[0])
    for directory in candidates:
        found = {key: _find(directory, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found
    download = (
        f'python -c "import torchvision; torchvision.datasets.{torchvision_folder}({str(roots[0])!r}, download=True)"'
    )
    commands = [download] if debian is None else [f"sudo apt-get install {debian[1]}   (Debian)", download]
    files = ", ".join(f"{stem}[.gz]" for stem in FILES.values())
    raise MissingDataError(
        name,
        candidates,
        commands,
        note=f"or put the four files ({files}) in {roots[0] / name}/ yourself.",
    )


def load_idx_dataset(info: DatasetInfo, files: dict[str, Path]) -> tuple[Split, Split]:
    """(full train split, test split) from the four idx files; images uint8 [N, 1, 28, 28]."""

    def split(images_key: str, labels_key: str) -> Split:
        images = read_idx(files[images_key], IMAGES_MAGIC)
        labels = read_idx(files[labels_key], LABELS_MAGIC)
        if images.shape[1:] != info.image_shape[1:]:
            raise ValueError(f"{files[images_key]} holds {images.shape[1:]} images, expected {info.image_shape[1:]}")
        if len(images) != len(labels):
            raise ValueError(
                f"{files[images_key]} has {len(images)} images but {files[labels_key]} has {len(labels)} labels"
            )
        if len(labels) and labels.max() >= info.num_classes:
            raise ValueError(f"{files[labels_key]} has label {labels.max()}, expected 0..{info.num_classes - 1}")
        # Copies: frombuffer arrays are read-only, and torch wants writable memory.
        return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))

    return split("train_images", "train_labels"), split("test_images", "test_labels")


@DATASETS.register("mnist")
def mnist(root: Path | None = None) -> tuple[DatasetInfo, Split, Split]:
    """(info, 60,000 training images, 10,000 test images)."""
    files = find_idx_files("mnist", "MNIST", root)
    return (MNIST_INFO, *load_idx_dataset(MNIST_INFO, files))


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: Path | None = None) -> tuple[DatasetInfo, Split, Split]:
    """(info, 60,000 training images, 10,000 test images); classes grouped into tops, footwear, others."""
    files = find_idx_files(
        "fashion_mnist", "FashionMNIST", root, debian=(DEBIAN_FASHION_MNIST, "dataset-fashion-mnist")
    )
    return (FASHION_MNIST_INFO, *load_idx_dataset(FASHION_MNIST_INFO, files))
