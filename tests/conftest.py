import contextlib
import os

import matplotlib
import pytest
import torch

from kdviz.data.base import DatasetInfo, DatasetSplits, Split

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_info():
    return DatasetInfo(
        name="tiny",
        class_names=("a", "b", "c", "d"),
        image_shape=(1, 4, 4),
        mean=(0.5,),
        std=(0.25,),
        groups={"ab": (0, 1), "cd": (2, 3)},
    )


@pytest.fixture
def tiny_data(tiny_info):
    """4 linearly separable classes of 4x4 images: class k is bright in quadrant k."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        labels = torch.arange(n) % 4
        images = torch.randint(0, 60, (n, 1, 4, 4), generator=g)
        for i, k in enumerate(labels.tolist()):
            r, c = divmod(k, 2)
            images[i, 0, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] += 180
        return Split(images.to(torch.uint8), labels)

    return DatasetSplits(tiny_info, make(64), make(32), make(32))


@pytest.fixture
def interrupted_in_epoch(monkeypatch):
    """interrupted_in_epoch(e): a context in which train() raises KeyboardInterrupt when it starts
    epoch e, as a user's Ctrl-C would."""
    from kdviz.train import loop

    @contextlib.contextmanager
    def interrupted(epoch):
        real_epoch = loop.train_epoch

        def dies(*args):
            if args[-1] == epoch:
                raise KeyboardInterrupt
            return real_epoch(*args)

        monkeypatch.setattr(loop, "train_epoch", dies)
        try:
            yield
        finally:
            monkeypatch.setattr(loop, "train_epoch", real_epoch)

    return interrupted


@pytest.fixture(scope="session")
def write_experiment():
    """write_experiment(folder, text, name="tiny.toml"): the experiment TOML `text` written to
    folder/name, and that path (for load_experiment, run_sweep or `kdviz sweep`)."""

    def write(folder, text, name="tiny.toml"):
        path = folder / name
        path.write_text(text)
        return path

    return write
