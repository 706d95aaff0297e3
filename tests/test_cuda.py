"""The CUDA paths of training: no host sync per step, bf16 autocast, channels_last, torch.compile
and the teacher cache on the GPU. They run only where a GPU is (CI has none)."""

import collections
import dataclasses
import traceback
import warnings

import pytest
import torch

from kdviz.data.base import DatasetInfo, DatasetSplits, Split
from kdviz.models import build_model
from kdviz.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")

INFO = DatasetInfo(
    name="synthetic16",
    class_names=tuple(str(k) for k in range(10)),
    image_shape=(3, 16, 16),
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    augment="crop_flip",
    augment_padding=2,
)


@pytest.fixture(scope="module")
def data():
    """256 training images of 10 classes, each class a brighter channel pattern, so models can learn it."""
    g = torch.Generator().manual_seed(0)

    def split(n):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 100, (n, 3, 16, 16), generator=g)
        images[torch.arange(n), labels % 3, :, labels.tolist()] += 150  # a class-specific bright column
        return Split(images.clamp(max=255).to(torch.uint8), labels)

    return DatasetSplits(INFO, split(256), split(64), split(64))


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_model("cnn", 10, INFO.image_shape, width=16).eval()


def sync_sites(run) -> collections.Counter:
    """Where (kdviz file:line) `run()` made the host wait for the GPU, counted by CUDA's sync debug mode."""
    sites = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            frames = [f for f in traceback.extract_stack() if "kdviz" in f.filename and "/tests/" not in f.filename]
            sites[
                f"{frames[-1].filename.rsplit('kdviz', 1)[-1]}:{frames[-1].lineno}" if frames else "outside kdviz"
            ] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sites


@pytest.mark.parametrize(
    "objective, extra",
    [
        ("ce", {}),
        ("icc_teacher", {}),
        ("kd", {}),  # the online teacher, with the batch crop-and-flip
        ("kd+icc_mimic", {"teacher_cache": True, "cache_views": 2}),
        ("dkd", {}),
        # Logit standardization, cached (the cache keeps raw logits, the term standardizes them) and online.
        ("kd+logit_std", {"teacher_cache": True, "cache_views": 2}),
        ("dkd+logit_std", {}),
        # Feature terms read both models' stages (online teacher); CRD's bank moves every step.
        ({"ce": 1, "kd": 1, "fitnet": 1, "at": 1, "crd": {"weight": 0.8, "negatives": 64}}, {}),
    ],
    ids=["ce", "icc_teacher", "kd", "kd+icc_mimic", "dkd", "kd+logit_std", "dkd+logit_std", "kd+fitnet+at+crd"],
)
def test_training_makes_no_host_sync_per_step(data, teacher, tmp_path, objective, extra):
    """An epoch of 16 steps waits for the GPU exactly as often as one of 4 steps: per epoch, never per step.
    (One epoch: whether a second one improves, and so copies the best weights, varies between runs.)"""
    distills = objective != "ce" and objective != "icc_teacher"

    def run(batch_size):
        kwargs = {"teacher": teacher, "cache_dir": tmp_path / str(batch_size)} if distills else {}
        return lambda: train(
            data,
            "cnn",
            objective,
            model_kwargs={"width": 8},
            epochs=1,
            batch_size=batch_size,
            device="cuda",
            progress=False,
            amp=True,
            channels_last=True,
            **kwargs,
            **extra,
        )

    few, many = sync_sites(run(64)), sync_sites(run(16))
    grew = {site: (few[site], n) for site, n in many.items() if n > few[site]}
    assert not grew, f"host syncs that grow with the number of steps (site: 4 steps, 16 steps): {grew}"


def test_bf16_autocast_and_channels_last_train_like_fp32(data):
    settings = dict(model_kwargs={"width": 8}, epochs=4, batch_size=32, device="cuda", progress=False, seed=1)
    fast = train(data, "cnn", "ce", amp=True, channels_last=True, **settings)
    plain = train(data, "cnn", "ce", amp=False, channels_last=False, **settings)
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.dtype == torch.float32  # autocast computes in bf16; the weights stay fp32
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.history["train_loss"].notna().all()
    assert fast.history["train_loss"].iloc[-1] < fast.history["train_loss"].iloc[0]  # it learns
    # bf16 rounding moves each step a little: after 4 epochs the two runs agree, not bit for bit.
    assert (
        abs(fast.history["train_loss"].iloc[-1] - plain.history["train_loss"].iloc[-1])
        < 0.15 * plain.history["train_loss"].iloc[-1]
    )


def test_cached_teacher_on_cuda_matches_the_online_teacher(data, teacher, tmp_path):
    plain = DatasetSplits(dataclasses.replace(INFO, augment=None), data.train, data.val, data.test)
    settings = dict(model_kwargs={"width": 8}, epochs=2, batch_size=32, device="cuda", progress=False, amp=False)
    online = train(plain, "cnn", "kd", teacher=teacher, teacher_cache=False, **settings)
    cached = train(plain, "cnn", "kd", teacher=teacher, teacher_cache=True, cache_dir=tmp_path, **settings)
    torch.testing.assert_close(
        torch.tensor(cached.history["train_loss"].values),
        torch.tensor(online.history["train_loss"].values),
        rtol=1e-3,
        atol=1e-5,
    )


def test_compiled_student_trains_like_the_eager_one(data):
    settings = dict(
        model_kwargs={"width": 8}, epochs=2, batch_size=32, device="cuda", progress=False, amp=False, seed=2
    )
    compiled = train(data, "cnn", "ce", compile=True, **settings)
    eager = train(data, "cnn", "ce", compile=False, **settings)
    torch.testing.assert_close(
        torch.tensor(compiled.history["train_loss"].values),
        torch.tensor(eager.history["train_loss"].values),
        rtol=1e-2,
        atol=1e-4,
    )
