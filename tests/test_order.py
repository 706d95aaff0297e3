"""kd.initial_model and kd.batch_order are what kd.train starts from and iterates over: a loop written
by hand with them (the tutorial's plain-torch loop) reproduces kd.train."""

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

import kdviz as kd

epoch_module = importlib.import_module("kdviz.train.epoch")  # kd.train, the function, hides the package


@pytest.fixture(scope="module")
def small():
    return kd.load_dataset("digits", seed=0, n_train=50)


def test_batch_order_is_the_order_train_shows_the_images(small, monkeypatch):
    seen = []
    original = epoch_module.iterate_batches

    def spy(*args, **kwargs):
        for batch in original(*args, **kwargs):
            seen.append(batch[2].cpu())
            yield batch

    monkeypatch.setattr(epoch_module, "iterate_batches", spy)
    kd.train(small, "mlp", "ce", model_kwargs={"hidden": 8}, epochs=2, batch_size=16, seed=3, progress=False)
    expected = [b for epoch in kd.batch_order(50, 16, epochs=2, seed=3) for b in epoch]
    assert len(seen) == len(expected) == 2 * 4  # 50 = 16 + 16 + 16 + 2: a last batch of 2 stays its own
    assert all(torch.equal(a, b) for a, b in zip(seen, expected))
    assert not torch.equal(expected[0], expected[4])  # each epoch a fresh permutation
    assert sorted(torch.cat(expected[:4]).tolist()) == list(range(50))


def test_a_last_batch_of_one_image_joins_the_one_before():
    (epoch,) = kd.batch_order(33, 16, epochs=1)
    assert [len(b) for b in epoch] == [16, 17]


def test_a_hand_written_loop_from_initial_model_and_batch_order_reproduces_train(small):
    """CE, SGD with Nesterov momentum and weight decay, cosine lr per epoch: TrainConfig's defaults,
    written out. Same weights to float precision after 3 epochs."""
    epochs, batch_size, seed, lr = 3, 16, 5, 0.05
    result = kd.train(
        small, "mlp", "ce", model_kwargs={"hidden": 8}, epochs=epochs, batch_size=batch_size, seed=seed, progress=False
    )
    model = kd.initial_model("mlp", small, seed=seed, hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    info = small.info
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    x_all, y_all = (small.train.images.float() / 255 - mean) / std, small.train.labels
    for epoch, batches in enumerate(kd.batch_order(len(small.train), batch_size, epochs, seed)):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        model.train()
        for idx in batches:
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    # train() returns the epoch chosen on validation: compare at the last epoch only if it was chosen.
    last = result.history["epoch"].iloc[-1]
    assert result.best_epoch == last, "pick settings whose last epoch is the best, or compare histories"
    for name, value in model.state_dict().items():
        assert torch.allclose(value, result.model.state_dict()[name].cpu(), atol=1e-5), name
