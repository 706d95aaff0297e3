"""Datasets stored as folders of image files: CINIC-10 and Tiny ImageNet.

    <root>/cinic10/{train,valid,test}/<class>/*.png             CINIC-10, its own validation split
    <root>/tiny-imagenet-200/wnids.txt, words.txt,
                             train/<wnid>/images/*.JPEG
                             val/images/*.JPEG, val/val_annotations.txt   (the official val set = our test split)

Images are decoded once with PIL into uint8 tensors held in memory (CINIC-10 takes about 0.8 GB,
Tiny ImageNet about 1.3 GB), on a few threads and with a progress bar for large folders.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import DatasetInfo, Split
from .registry import DATASETS
from .roots import MissingDataError, data_roots

PROGRESS_THRESHOLD = 5000  # show a progress bar when decoding more images than this
_CHUNK = 256  # images per decoding task

CINIC10_URL = "https://datashare.ed.ac.uk/handle/10283/3192"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

CINIC10_MEAN, CINIC10_STD = (0.47889522, 0.47227842, 0.43047404), (0.24205776, 0.23828046, 0.25874835)
TINY_IMAGENET_MEAN, TINY_IMAGENET_STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)


# ------------------------------------------------------------------------------------ decoding


def decode_images(paths: list[Path], size: tuple[int, int], desc: str = "decoding images") -> torch.Tensor:
    """uint8 [N, 3, H, W] from image files (any mode, converted to RGB), in the order given.
    ValueError naming the file for one that cannot be decoded or is not H x W (size = (H, W))."""
    from PIL import Image  # here, not with the module: only image folders need it, and `import kdviz` stays quick

    h, w = size
    out = np.empty((len(paths), h, w, 3), dtype=np.uint8)

    def decode(start: int) -> int:
        for i in range(start, min(start + _CHUNK, len(paths))):
            path = paths[i]
            try:
                with Image.open(path) as img:
                    array = np.asarray(img.convert("RGB"))
            except (OSError, ValueError, SyntaxError) as e:  # UnidentifiedImageError is an OSError
                raise ValueError(
                    f"{path} could not be decoded ({e}); it is truncated or corrupt, fetch it again"
                ) from None
            if array.shape[:2] != (h, w):
                raise ValueError(f"{path} is {array.shape[1]}x{array.shape[0]} pixels, expected {w}x{h}")
            out[i] = array
        return min(start + _CHUNK, len(paths)) - start

    starts = range(0, len(paths), _CHUNK)
    bar = tqdm(total=len(paths), desc=desc, unit="img") if len(paths) > PROGRESS_THRESHOLD else None
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for done in pool.map(decode, starts):
            if bar is not None:
                bar.update(done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _missing(dataset: str, path: Path, kind: str, url: str, where: Path, how: str) -> MissingDataError:
    return MissingDataError(
        dataset,
        [path],
        [f"download {url}, then {how}"],
        note=f"The {kind} {path} is missing: the whole dataset must be unpacked, as {where}/.",
    )


def _find_base(dataset: str, folder: str, root: Path | None, url: str, how: str) -> Path:
    roots = data_roots(root)
    candidates = [r / folder for r in roots]
    for directory in candidates:
        if directory.is_dir():
            return directory
    raise MissingDataError(
        dataset,
        candidates,
        [f"download {url}, then {how}"],
        note=f"The folder {candidates[0]} is missing: put the unpacked dataset there.",
    )


# ------------------------------------------------------------------------------------- CINIC-10

CINIC10_SPLITS = ("train", "valid", "test")


def _image_files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


@DATASETS.register("cinic10")
def cinic10(root: Path | None = None) -> tuple[DatasetInfo, Split, Split, Split]:
    """(info, 90,000 training images, 90,000 test images, 90,000 validation images): CINIC-10's
    own `valid` split is returned as the validation split, so load_dataset carves none."""
    how = f"unpack CINIC-10.tar.gz's train/, valid/ and test/ folders into {data_roots(root)[0] / 'cinic10'}/"
    base = _find_base("cinic10", "cinic10", root, CINIC10_URL, how)
    class_names: tuple[str, ...] | None = None
    splits: dict[str, Split] = {}
    for split in CINIC10_SPLITS:
        directory = base / split
        if not directory.is_dir():
            raise _missing("cinic10", directory, "split folder", CINIC10_URL, base, how)
        names = tuple(sorted(p.name for p in directory.iterdir() if p.is_dir()))
        if not names:
            raise ValueError(f"{directory} has no class folders; expected {directory}/<class>/*.png")
        if class_names is None:
            class_names = names
        elif names != class_names:
            raise ValueError(
                f"class folders of {directory} ({', '.join(names)}) differ from those of {base / CINIC10_SPLITS[0]} "
                f"({', '.join(class_names)}); every split must have the same classes"
            )
        paths, labels = [], []
        for k, name in enumerate(class_names):
            files = _image_files(directory / name, (".png",))
            paths += files
            labels += [k] * len(files)
        if not paths:
            raise ValueError(f"{directory} holds no .png images in its class folders")
        images = decode_images(paths, (32, 32), desc=f"cinic10 {split}")
        splits[split] = Split(images, torch.tensor(labels, dtype=torch.int64))
    info = DatasetInfo(
        name="cinic10",
        class_names=class_names,
        image_shape=(3, 32, 32),
        mean=CINIC10_MEAN,
        std=CINIC10_STD,
        augment="crop_flip",
        augment_padding=4,
    )
    return info, splits["train"], splits["test"], splits["valid"]


# --------------------------------------------------------------------------------- Tiny ImageNet

TINY_SUFFIXES = (".jpeg", ".jpg")


def _read_lines(path: Path, missing: MissingDataError) -> list[str]:
    """The non-blank lines of a UTF-8 text file; a ValueError naming the file and the line of a byte
    that is not UTF-8."""
    if not path.is_file():
        raise missing
    lines = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}, line {number}: byte {raw[e.start]:#04x} at column {e.start + 1} is not UTF-8; "
                "the file is damaged or was re-encoded: fetch it again, or save it as UTF-8"
            ) from None
        if line.strip():
            lines.append(line)
    return lines


@DATASETS.register("tiny_imagenet")
def tiny_imagenet(root: Path | None = None) -> tuple[DatasetInfo, Split, Split]:
    """(info, 100,000 training images, 10,000 test images): 200 classes of 64 x 64 images. The test
    split is the official val set, labelled by val/val_annotations.txt (the official test set has
    no labels); validation is carved from the training images by load_dataset."""
    top = data_roots(root)[0]
    how = f"unzip tiny-imagenet-200.zip in {top}/, which makes {top / 'tiny-imagenet-200'}/"
    base = _find_base("tiny_imagenet", "tiny-imagenet-200", root, TINY_IMAGENET_URL, how)

    def missing(path: Path, kind: str) -> MissingDataError:
        return _missing("tiny_imagenet", path, kind, TINY_IMAGENET_URL, base, how)

    train_dir = base / "train"
    if not train_dir.is_dir():
        raise missing(train_dir, "folder")
    folders = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    wnids_file = base / "wnids.txt"
    if wnids_file.is_file():
        wnids = sorted(line.strip() for line in _read_lines(wnids_file, missing(wnids_file, "file")))
        if len(set(wnids)) != len(wnids):
            raise ValueError(f"{wnids_file} lists a wnid twice")
        extra = sorted(set(folders) - set(wnids))
        if extra:
            raise ValueError(f"{train_dir} has folders not listed in {wnids_file}: {', '.join(extra[:5])}")
    else:  # wnids.txt is a convenience; the training folders say the same
        wnids = folders
    if not wnids:
        raise ValueError(f"{train_dir} has no class folders")
    index = {wnid: k for k, wnid in enumerate(wnids)}

    words_file = base / "words.txt"
    names: dict[str, str] = {}
    for line in _read_lines(words_file, missing(words_file, "file")):
        wnid, _, words = line.partition("\t")
        names[wnid.strip()] = words.split(",")[0].strip()
    unnamed = [w for w in wnids if not names.get(w)]
    if unnamed:
        raise ValueError(
            f"{words_file} has no name for {len(unnamed)} wnid(s), e.g. {unnamed[0]}; is it the right file?"
        )
    class_names = tuple(names[w] for w in wnids)

    train_paths, train_labels = [], []
    for wnid in wnids:
        images_dir = train_dir / wnid / "images"
        if not images_dir.is_dir():
            raise missing(images_dir, "folder")
        files = _image_files(images_dir, TINY_SUFFIXES)
        train_paths += files
        train_labels += [index[wnid]] * len(files)
    if not train_paths:
        raise ValueError(f"{train_dir} holds no .JPEG images in <wnid>/images/")

    val_dir = base / "val" / "images"
    annotations_file = base / "val" / "val_annotations.txt"
    if not val_dir.is_dir():
        raise missing(val_dir, "folder")
    test_paths, test_labels = [], []
    annotated = set()
    for n, line in enumerate(_read_lines(annotations_file, missing(annotations_file, "file")), 1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{annotations_file} line {n} is not <file>\\t<wnid>\\t...: {line!r}")
        filename, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise ValueError(f"{annotations_file} line {n}: wnid {wnid} is not one of the {len(wnids)} classes")
        if filename in annotated:
            raise ValueError(f"{annotations_file} line {n}: {filename} is annotated twice")
        path = val_dir / filename
        if not path.is_file():
            raise missing(path, "image")
        annotated.add(filename)
        test_paths.append(path)
        test_labels.append(index[wnid])
    unlabelled = [p.name for p in _image_files(val_dir, TINY_SUFFIXES) if p.name not in annotated]
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} image(s) in {val_dir} have no line in {annotations_file}, e.g. {unlabelled[0]}; "
            "the file is incomplete, fetch it again"
        )

    train = Split(
        decode_images(train_paths, (64, 64), "tiny_imagenet train"), torch.tensor(train_labels, dtype=torch.int64)
    )
    test = Split(decode_images(test_paths, (64, 64), "tiny_imagenet val"), torch.tensor(test_labels, dtype=torch.int64))
    info = DatasetInfo(
        name="tiny_imagenet",
        class_names=class_names,
        image_shape=(3, 64, 64),
        mean=TINY_IMAGENET_MEAN,
        std=TINY_IMAGENET_STD,
        augment="crop_flip",
        augment_padding=8,
    )
    return info, train, test
