"""Tiny data files in the exact on-disk formats of CIFAR-100 (the python version) and Tiny
ImageNet, a few images per class: for smoke runs of the paper-scale recipes on a CPU, in the
tests and in notebooks/03_paper_scale.ipynb, without the real data sets.

    write_cifar100(root / "cifar-100-python")      # then load_dataset("cifar100", root=root)
    write_tiny_imagenet(root / "tiny-imagenet-200")  # then load_dataset("tiny_imagenet", root=root)

The pixels are random (CIFAR) or one flat colour per image (Tiny ImageNet, so that a JPEG
round trip keeps them within a few levels): the files check readers and code paths, not accuracy.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_pickle(path: Path, entry: dict) -> None:
    """One CIFAR-style batch file: a pickle (protocol 2, as the originals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


FINE_TO_COARSE = {3: 7, 10: 0, 42: 19, 57: 19, 88: 0, 99: 7}  # 6 fine classes in 3 superclasses


def write_cifar100(folder: Path, *, seed: int = 0, fine_to_coarse: dict[int, int] = FINE_TO_COARSE):
    """`train`, `test` and `meta` of cifar-100-python: 4 training and 2 test images of each fine
    class in `fine_to_coarse`, labelled with their superclass. Returns ({"train": (data [N, 3072]
    uint8, fine labels), "test": ...}, the 100 fine names, the 20 coarse names)."""
    rng = np.random.default_rng(seed)
    fine_names = [f"fine{k:02d}" for k in range(100)]
    coarse_names = [f"coarse{k:02d}" for k in range(20)]
    arrays = {}
    for name, per_class in (("train", 4), ("test", 2)):
        fine = [f for _ in range(per_class) for f in fine_to_coarse]
        data = rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8)
        write_pickle(
            folder / name,
            {
                b"filenames": [b"x.png"] * len(fine),
                b"batch_label": name.encode(),
                b"fine_labels": fine,
                b"coarse_labels": [fine_to_coarse[f] for f in fine],
                b"data": data,
            },
        )
        arrays[name] = (data, fine)
    write_pickle(
        folder / "meta",
        {
            b"fine_label_names": [n.encode() for n in fine_names],
            b"coarse_label_names": [n.encode() for n in coarse_names],
        },
    )
    return arrays, fine_names, coarse_names


WNIDS = ["n09999999", "n01443537", "n02085620"]  # wnids.txt order; sorted: n01443537, n02085620, n09999999
WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n02085620": "Chihuahua",
    "n09999999": "zebra crossing, pedestrian crossing",
    "n00001740": "entity",
}
# The official val images and their classes, by sorted-wnid index. Annotation lines are written
# in this (shuffled) order; neither file order nor any folder order gives these labels.
VAL = [
    ("val_3.JPEG", 0),
    ("val_0.JPEG", 2),
    ("val_10.JPEG", 1),
    ("val_1.JPEG", 0),
    ("val_2.JPEG", 2),
    ("val_4.JPEG", 1),
]


def colour(k, j):
    """A uniform colour for image j of class k: distinct per image, so that JPEG round-trips it
    within a few levels and images can be told apart."""
    return (40 + 60 * k, 20 + 30 * j, 200 - 50 * k)


def write_jpeg(path, rgb, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (64, 64), rgb)
    (img.convert("L") if mode == "L" else img).save(path, "JPEG", quality=95)


def write_tiny_imagenet(base: Path, *, per_class: int = 4) -> None:
    """tiny-imagenet-200 with the 3 classes of WNIDS: wnids.txt, words.txt, per_class 64x64 JPEG
    training images per class (one of them greyscale, as some real ones are), the official val
    images of VAL with their annotations file, and one unlabelled test image."""
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\t{names}\n" for w, names in WORDS.items()))
    wnids = sorted(WNIDS)
    for k, wnid in enumerate(wnids):
        for j in range(per_class):
            write_jpeg(
                base / "train" / wnid / "images" / f"{wnid}_{j}.JPEG", colour(k, j), "L" if (k, j) == (2, 3) else "RGB"
            )
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{j}.JPEG\t0\t0\t63\t63\n" for j in range(per_class))
        )
    lines = []
    for j, (filename, k) in enumerate(VAL):
        write_jpeg(base / "val" / "images" / filename, colour(k, j))
        lines.append(f"{filename}\t{wnids[k]}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    (base / "test" / "images").mkdir(parents=True)
    write_jpeg(base / "test" / "images" / "test_0.JPEG", (1, 2, 3))  # unlabelled, ignored


def write_sample_data(root: str | Path) -> Path:
    """Tiny CIFAR-100 and Tiny ImageNet files under `root` (cifar-100-python/ and tiny-imagenet-200/),
    in their real formats: load_dataset("cifar100", root=root) and load_dataset("tiny_imagenet",
    root=root) read them. For a smoke run of the paper-scale recipes without the data sets; the
    pixels carry no signal, so such a run checks the code path, not a result. Returns `root`."""
    root = Path(root)
    write_cifar100(root / "cifar-100-python")
    write_tiny_imagenet(root / "tiny-imagenet-200")
    return root
