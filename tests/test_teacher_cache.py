"""The teacher-logit cache: exact without augmentation, K fixed views with it, top-k, never stale."""

import dataclasses
import hashlib

import pytest
import torch

from kdviz.data.augment import crop_flip
from kdviz.data.base import DatasetSplits, normalize
from kdviz.inference import predict_logits
from kdviz.models import build_model
from kdviz.train import teacher_cache as tc
from kdviz.train import train


@pytest.fixture
def teacher(tiny_info):
    torch.manual_seed(0)
    return build_model("cnn", len(tiny_info.class_names), tiny_info.image_shape, width=4).eval()


def augmented(data, padding=1):
    info = dataclasses.replace(data.info, augment="crop_flip", augment_padding=padding)
    return DatasetSplits(info, data.train, data.val, data.test)


def test_exact_cache_holds_the_teachers_logits(tiny_data, teacher, tmp_path):
    cache = tc.load_or_build_teacher_cache(
        teacher, tiny_data.train, tiny_data.info, torch.device("cpu"), cache_dir=tmp_path, progress=False
    )
    expected = predict_logits(teacher, tiny_data.train, tiny_data.info, torch.device("cpu"))
    assert cache.num_views == 1 and cache.offsets is None
    idx = torch.arange(len(tiny_data.train))
    torch.testing.assert_close(cache.logits(idx, torch.zeros_like(idx)), expected)
    assert len(list(tmp_path.glob("*.pt"))) == 1


def test_student_with_exact_cache_matches_the_online_teacher(tiny_data, teacher, tmp_path):
    settings = dict(model_kwargs={"width": 4}, epochs=3, seed=1, progress=False, augment=False)
    online = train(tiny_data, "cnn", "kd+icc_mimic", teacher=teacher, **settings)
    cached = train(
        tiny_data, "cnn", "kd+icc_mimic", teacher=teacher, teacher_cache=True, cache_dir=tmp_path, **settings
    )
    for a, b in zip(online.model.state_dict().values(), cached.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    cols = ["train_kd", "train_icc_mimic", "val_loss", "val_top1_err"]
    torch.testing.assert_close(
        torch.tensor(online.history[cols].values), torch.tensor(cached.history[cols].values), rtol=1e-4, atol=1e-5
    )


def test_each_view_is_a_fixed_crop_with_its_exact_logits(tiny_data, teacher, tmp_path):
    data = augmented(tiny_data, padding=2)
    cache = tc.load_or_build_teacher_cache(
        teacher,
        data.train,
        data.info,
        torch.device("cpu"),
        tc.CacheOptions(views=3, padding=2, seed=5),
        cache_dir=tmp_path,
        progress=False,
    )
    assert cache.num_views == 3 and cache.offsets.shape == (3, len(data.train), 2)
    assert int(cache.offsets.min()) >= 0 and int(cache.offsets.max()) <= 4
    assert not torch.equal(cache.offsets[0], cache.offsets[1])  # the views differ
    idx = torch.tensor([0, 3, 5, 5, 7])
    view = torch.tensor([2, 0, 1, 2, 1])
    shown = cache.images(data.train.images[idx], idx, view)
    for j in range(len(idx)):
        i, v = int(idx[j]), int(view[j])
        expected = crop_flip(data.train.images[i : i + 1], cache.offsets[v, i : i + 1], cache.flips[v, i : i + 1], 2)
        assert torch.equal(shown[j : j + 1], expected)
    with torch.no_grad():
        online = teacher(normalize(shown, data.info))
    torch.testing.assert_close(cache.logits(idx, view), online, rtol=1e-5, atol=1e-5)
    # The same seed draws the same views again.
    again = tc.build_teacher_cache(
        teacher, data.train, data.info, torch.device("cpu"), tc.CacheOptions(views=3, padding=2, seed=5), progress=False
    )
    assert torch.equal(again.offsets, cache.offsets) and torch.equal(again.flips, cache.flips)


def test_epoch_views_cover_every_view(teacher, tiny_data):
    cache = tc.build_teacher_cache(
        teacher,
        tiny_data.train,
        tiny_data.info,
        torch.device("cpu"),
        tc.CacheOptions(views=4, padding=1),
        progress=False,
    )
    views = cache.epoch_views(2000, torch.Generator().manual_seed(0))
    assert views.shape == (2000,) and set(views.tolist()) == {0, 1, 2, 3}


def test_k_view_training_reuses_the_file_on_the_next_run(tiny_data, teacher, tmp_path, monkeypatch):
    data = augmented(tiny_data)
    settings = dict(
        model_kwargs={"width": 4}, epochs=2, progress=False, teacher_cache=True, cache_views=3, cache_dir=tmp_path
    )
    first = train(data, "cnn", "kd", teacher=teacher, **settings)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache was rebuilt although its file is there")

    monkeypatch.setattr(tc, "build_teacher_cache", no_rebuild)
    second = train(data, "cnn", "kd", teacher=teacher, **settings)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_changed_teacher_or_data_never_reads_a_stale_file(tiny_data, teacher, tmp_path):
    def build(t, split):
        return tc.load_or_build_teacher_cache(
            t, split, tiny_data.info, torch.device("cpu"), cache_dir=tmp_path, progress=False
        )

    before = build(teacher, tiny_data.train)
    with torch.no_grad():
        next(teacher.parameters()).view(-1)[0] += 0.5
    after = build(teacher, tiny_data.train)
    assert after.key != before.key and not torch.allclose(after.values, before.values)
    images = tiny_data.train.images.clone()
    images[0, 0, 0, 0] ^= 1
    changed = build(teacher, dataclasses.replace(tiny_data.train, images=images))
    assert changed.key not in (before.key, after.key)
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_a_file_whose_key_does_not_match_is_rebuilt(tiny_data, teacher, tmp_path):
    cache = tc.load_or_build_teacher_cache(
        teacher, tiny_data.train, tiny_data.info, torch.device("cpu"), cache_dir=tmp_path, progress=False
    )
    path = tmp_path / f"{cache.key}.pt"
    stored = torch.load(path, weights_only=True)
    torch.save({**stored, "key": "0" * 64, "values": torch.zeros_like(stored["values"])}, path)
    again = tc.load_or_build_teacher_cache(
        teacher, tiny_data.train, tiny_data.info, torch.device("cpu"), cache_dir=tmp_path, progress=False
    )
    torch.testing.assert_close(again.values, cache.values)


def test_topk_keeps_the_kept_probabilities_exact_at_the_temperature(tiny_data, teacher):
    full = tc.build_teacher_cache(teacher, tiny_data.train, tiny_data.info, torch.device("cpu"), progress=False)
    top = tc.build_teacher_cache(
        teacher, tiny_data.train, tiny_data.info, torch.device("cpu"), tc.CacheOptions(topk=2, tau=3.0), progress=False
    )
    idx = torch.arange(len(tiny_data.train))
    view = torch.zeros_like(idx)
    z, zk = full.logits(idx, view), top.logits(idx, view)
    c = z.shape[1]
    kept = z.topk(2, dim=1).indices
    assert torch.equal(zk.gather(1, kept), z.gather(1, kept))
    p, pk = torch.softmax(z / 3.0, 1), torch.softmax(zk / 3.0, 1)
    torch.testing.assert_close(pk.gather(1, kept), p.gather(1, kept))
    # Every dropped class gets an equal share of the dropped mass.
    dropped = torch.ones_like(p, dtype=torch.bool).scatter(1, kept, False)
    share = (p * dropped).sum(1, keepdim=True) / (c - 2)
    torch.testing.assert_close(pk[dropped].view(-1, c - 2), share.expand(-1, c - 2))
    assert top.values.shape == (1, len(idx), 2)


def test_a_damaged_file_is_rebuilt(tiny_data, teacher, tmp_path):
    cache = tc.load_or_build_teacher_cache(
        teacher, tiny_data.train, tiny_data.info, torch.device("cpu"), cache_dir=tmp_path, progress=False
    )
    path = tmp_path / f"{cache.key}.pt"
    path.write_bytes(path.read_bytes()[:100])
    again = tc.load_or_build_teacher_cache(
        teacher, tiny_data.train, tiny_data.info, torch.device("cpu"), cache_dir=tmp_path, progress=False
    )
    torch.testing.assert_close(again.values, cache.values)
    assert torch.load(path, weights_only=True)["key"] == cache.key


def test_the_cache_key_hashes_the_options_in_the_order_of_earlier_files(tiny_data, teacher):
    """Files written before the options became a CacheOptions keep their key, so they are still found."""
    info, split = tiny_data.info, tiny_data.train
    h = hashlib.sha256()
    for part in (tc.FORMAT, type(teacher).__name__, info.mean, info.std, info.image_shape, 3, 2, 5, 1, 2.0):
        h.update(repr(part).encode())
    for name, tensor in teacher.state_dict().items():
        h.update(name.encode())
        h.update(repr((tensor.dtype, tuple(tensor.shape))).encode())
        h.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for tensor in (split.images, split.labels):
        h.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    options = tc.CacheOptions(views=3, padding=2, seed=5, topk=1, tau=2.0)
    assert tc.cache_key(teacher, split, info, options) == h.hexdigest()
