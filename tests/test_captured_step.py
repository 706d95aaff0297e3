"""The training step as one function that torch.compile can capture (kdviz/train/step.py).

What is checked, against eager steps of the same step (values worked out by running it uncompiled):
- "fullgraph": the forward pass with the loss terms and the running metrics compiles with
  fullgraph=True (a graph break fails) for every term, and for every model of the zoo; after a
  warm-up of two steps (the first makes the terms' state tensors and CRD's constants, the second the
  optimizer's momentum buffers) no step recompiles, across epochs whose ends change the terms'
  state and the learning rate, so the per-epoch values are read from tensors, not baked in;
- the compiled step's losses and weights equal the eager step's within a stated tolerance;
- the step on meta tensors makes no host sync;
- last_batch="drop" gives every step the same shape, and is recorded.
Every term is compiled in one of TERM_GROUPS' objectives; the group of stateful terms runs in the
fast suite, the others, logit standardization, the zoo and inductor take minutes on 2 cores and
are marked slow.
"""

import contextlib
import json

import pytest
import torch
import torch._dynamo as dynamo
from helpers import no_host_sync

from kdviz.data.base import DatasetInfo, DatasetSplits, Split
from kdviz.data.loader import batch_indices
from kdviz.losses import LOSS_TERMS, Objective
from kdviz.models import MODELS, build_model
from kdviz.train import train
from kdviz.train.config import TrainConfig, make_optimizer
from kdviz.train.step import TrainStep, step_outputs
from kdviz.train.teacher import CachedTeacher, Teacher
from kdviz.train.teacher_cache import CacheOptions, build_teacher_cache

# Compiled and eager steps differ by the order of float32 operations only (decompositions, fused
# updates): over 3 epochs of 5 steps the measured gaps were at most 3.0e-7 in a weight and 1.4e-6
# (relative) in an epoch's mean loss, in every group, with aot_eager and with inductor.
WEIGHT_TOL = dict(rtol=1e-4, atol=1e-4)
LOSS_TOL = dict(rtol=1e-4, atol=1e-6)
WARMUP_STEPS = 2
N, B, EPOCHS = 40, 8, 3


@contextlib.contextmanager
def no_recompiles():
    """Every compiled function called in the block must reuse a graph it compiled before."""
    saved = dynamo.config.error_on_recompile
    dynamo.config.error_on_recompile = True
    try:
        yield
    finally:
        dynamo.config.error_on_recompile = saved


def _make_step(spec, *, model="cnn", shape=(1, 8, 8), teacher=None, cached=False, n=N):
    """A TrainStep on `model` (seeded) for objective `spec` on n training images of 10 classes,
    its LR schedule and the objective. teacher: the module the distillation terms read; cached: its
    logits come from a 2-view crop-and-flip cache."""
    torch.manual_seed(0)
    net = build_model(model, num_classes=10, image_shape=shape, **({"width": 4} if model == "cnn" else {}))
    objective = Objective(spec)
    source = Teacher(teacher, None, "t") if objective.needs_teacher else None
    labels = torch.arange(n) % 10
    if objective.trainable:
        with torch.no_grad():
            net.eval()
            x = torch.randn(2, *shape)
            objective.setup(step_outputs(net, source, objective, x, labels[:2], torch.arange(2)), labels)
            net.train()
    if cached:
        data = _images(shape, n)
        cache = build_teacher_cache(
            teacher, data.train, data.info, torch.device("cpu"), CacheOptions(views=2, padding=1), progress=False
        )
        source = CachedTeacher(source, cache)
    opt, sched = make_optimizer([*net.parameters(), *objective.parameters()], TrainConfig(epochs=EPOCHS, lr=0.05))
    return TrainStep(net, objective, source, opt, torch.device("cpu")), sched, objective, net


def _images(shape, n):
    info = DatasetInfo(
        name="random",
        class_names=tuple("abcdefghij"),
        image_shape=shape,
        mean=(0.5,) * shape[0],
        std=(0.25,) * shape[0],
    )
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), torch.arange(n) % 10)
    return DatasetSplits(info, split, split, split)


def _train(step, sched, objective, net, *, shape=(1, 8, 8), compiled=False):
    """EPOCHS epochs of N // B full batches; (the mean total loss of each epoch, the final weights).
    Compiled: after WARMUP_STEPS steps, a recompilation fails."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(N, *shape, generator=g)
    labels = torch.arange(N) % 10
    losses, done = [], 0
    for _ in range(EPOCHS):
        if step.teacher is not None:
            step.teacher.start_epoch(N, torch.Generator().manual_seed(2))
        step.start_epoch()
        for idx in batch_indices(N, B, shuffle=True, generator=g, drop_last=True):
            with no_recompiles() if compiled and done >= WARMUP_STEPS else contextlib.nullcontext():
                step(images[idx], labels[idx], idx)
            done += 1
        losses.append(float(step.sums[-3] / step.sums[-1]))
        sched.step()
        objective.end_epoch()
    return losses, [p.detach().clone() for p in net.parameters()]


def _compare(spec, backend="aot_eager", **kwargs):
    """Train the same step eagerly and compiled (`backend`); their losses and weights agree."""
    eager = _train(*_make_step(spec, **kwargs), shape=kwargs.get("shape", (1, 8, 8)))
    dynamo.reset()
    step, sched, objective, net = _make_step(spec, **kwargs)
    compiled = _train(
        step.compile(backend=backend), sched, objective, net, shape=kwargs.get("shape", (1, 8, 8)), compiled=True
    )
    torch.testing.assert_close(compiled[0], eager[0], **LOSS_TOL)
    for a, b in zip(compiled[1], eager[1]):
        torch.testing.assert_close(a, b, **WEIGHT_TOL)
    return eager


def _term_spec(name, weight=1.0):
    if name == "crd":
        return {"weight": weight, "negatives": 16}
    if name == "dkd":
        return {"weight": weight, "warmup": 2}  # the ramp changes at the first epoch's end
    if name == "icc_teacher":
        return {"weight": weight, "ema": 0.5}  # the target is also read when it is updated
    if name == "dist":
        # At tau 4 a random width-4 CNN's probabilities are nearly uniform, and DIST's gradient
        # divides by their spread: a 7e-6 gap between the eager and the compiled weights grew to
        # 7e-3 in one step (measured). The loss is ill-conditioned there, eager or compiled; at tau 1
        # the gap stays below 1e-6.
        return {"weight": weight, "tau": 1.0}
    return weight


def _teacher(shape=(1, 8, 8), model="cnn"):
    torch.manual_seed(5)
    return build_model(model, num_classes=10, image_shape=shape, **({"width": 4} if model == "cnn" else {})).eval()


# Every registered term is compiled and trained beside CE in one of these objectives: those whose
# state changes at an epoch's end (in the fast suite, with a cached teacher's views), the other
# logit terms, and the feature terms.
TERM_GROUPS = {
    "stateful": ["kd", "dkd", "icc_teacher", "icc_consensus_ref", "online_label_smoothing"],
    "logits": [
        "dist",
        "icc_mimic",
        "icc_mimic_classwise",
        "icc_mimic_frobenius",
        "icc_mimic_pearson",
        "kd_asymmetric",
        "label_smoothing",
        "secondary_entropy",
    ],
    "features": ["fitnet", "at", "crd"],
}


def _group(name):
    return {"ce": 1.0, **{term: _term_spec(term, 0.2) for term in TERM_GROUPS[name]}}


def test_the_term_groups_hold_every_registered_term():
    assert sorted(["ce", *sum(TERM_GROUPS.values(), [])]) == sorted(LOSS_TERMS.names())


def test_fullgraph_step_with_every_stateful_term_is_one_graph_for_all_epochs():
    """DKD's ramp, the ICC targets and the cache's views change during training; the compiled step
    (forward with fullgraph=True, compiled optimizer) reads them without recompiling and trains as
    the eager step does."""
    losses, _ = _compare(_group("stateful"), teacher=_teacher(), cached=True)
    assert losses[0] != losses[1]  # the epochs differ: the run did train


@pytest.mark.slow
@pytest.mark.parametrize("group", ["logits", "features"])
def test_fullgraph_other_terms_compile_and_train_like_eager(group):
    """The other logit terms (stateless), and FitNet, AT and CRD (whose bank moves every step)."""
    _compare(_group(group), teacher=_teacher())


@pytest.mark.slow
def test_fullgraph_logit_std_terms_compile_and_train_like_eager():
    spec = {
        "ce": 1.0,
        "kd": {"weight": 0.5, "logit_std": True},
        "dkd": {"weight": 0.5, "warmup": 2, "logit_std": True},
    }
    _compare(spec, teacher=_teacher())


def _zoo_objective(model):
    """Every registered term at once; the MLP has no maps, so no AT and FitNet on its hidden layers."""
    spec = {name: _term_spec(name) for name in LOSS_TERMS.names()}
    if model == "mlp":
        del spec["at"]
        spec["fitnet"] = {"weight": 1.0, "student_stage": "hidden1", "teacher_stage": "hidden1"}
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in MODELS.names() if m != "planted_bayes"])
def test_fullgraph_every_model_of_the_zoo_with_every_term(model):
    """The forward pass of each trainable zoo model as a student, with every loss term (a resnet8
    teacher, or the small model itself: a teacher runs the same forward code), captures as one
    graph (backend "eager": Dynamo's capture only, the part that can break a graph)."""
    small = model in ("cnn", "mlp")
    shape = (1, 8, 8) if small else (3, 32, 32)
    teacher = _teacher(shape, model if small else "resnet8")
    step, *_ = _make_step(_zoo_objective(model), model=model, shape=shape, teacher=teacher)
    dynamo.reset()
    x, y, idx = torch.randn(4, *shape), torch.arange(4), torch.arange(4)
    total = torch.compile(step.loss, fullgraph=True, backend="eager")(x, y, idx)
    assert torch.isfinite(total)


@pytest.mark.slow
def test_compiled_optimizer_and_step_with_inductor_match_eager():
    """The documented compiled optimizer (default backend, inductor: C++ kernels on the CPU), with
    the learning rate as a tensor that LambdaLR fills in place: no recompilation at a new rate."""
    _compare({"ce": 0.1, "kd": 0.9}, backend="inductor", teacher=_teacher())


def test_step_makes_no_host_sync():
    spec = _zoo_objective("cnn")
    step, _, objective, net = _make_step(spec, teacher=_teacher())
    meta = torch.device("meta")
    net.to(meta)
    step.teacher.module.to(meta)
    for term in objective.terms.values():
        if isinstance(term, torch.nn.Module):
            term.to(meta)
    step = TrainStep(net, objective, step.teacher, step.opt, meta)  # its running sums on the meta device
    x, y, idx = torch.randn(B, 1, 8, 8, device=meta), torch.arange(B, device=meta) % 10, torch.arange(B, device=meta)
    with no_host_sync():
        for _ in range(2):  # the first step makes the terms' state tensors, the second reads them
            step(x, y, idx)
    objective.end_epoch()  # once an epoch: allowed to sync
    step.start_epoch()
    with no_host_sync():
        step(x, y, idx)


def test_drop_last_gives_full_batches_and_leaves_out_other_images_each_epoch():
    g = torch.Generator().manual_seed(0)
    epochs = [batch_indices(50, 16, shuffle=True, generator=g, drop_last=True) for _ in range(2)]
    for chunks in epochs:
        assert [len(c) for c in chunks] == [16, 16, 16]
        assert len(torch.cat(chunks).unique()) == 48
    left_out = [set(range(50)) - set(torch.cat(chunks).tolist()) for chunks in epochs]
    assert left_out[0] != left_out[1]
    assert [len(c) for c in batch_indices(48, 16, shuffle=False, drop_last=True)] == [16, 16, 16]
    with pytest.raises(ValueError, match="at least one full batch"):
        batch_indices(10, 16, shuffle=False, drop_last=True)


def test_last_batch_drop_trains_full_batches_and_is_recorded(tiny_data, tmp_path, monkeypatch):
    sizes = []
    real = TrainStep.__call__
    monkeypatch.setattr(TrainStep, "__call__", lambda self, x, y, idx: (sizes.append(len(y)), real(self, x, y, idx)))
    train(tiny_data, "mlp", "ce", epochs=2, batch_size=24, last_batch="drop", out_dir=tmp_path / "r", progress=False)
    assert sizes == [24, 24] * 2  # 64 images: 16 left out each epoch
    assert json.loads((tmp_path / "r" / "config.json").read_text())["last_batch"] == "drop"
    with pytest.raises(ValueError, match="last_batch"):
        train(tiny_data, "mlp", "ce", epochs=2, batch_size=24, out_dir=tmp_path / "r", resume=True, progress=False)
    with pytest.raises(ValueError, match="last_batch must be one of 'keep', 'drop', got 'pad'"):
        train(tiny_data, "mlp", "ce", epochs=1, last_batch="pad", progress=False)


def test_keep_and_drop_train_alike_when_the_batches_divide_the_split(tiny_data):
    runs = [
        train(tiny_data, "mlp", "ce", epochs=2, batch_size=16, last_batch=lb, progress=False) for lb in ("keep", "drop")
    ]
    cols = ["train_loss", "val_loss", "val_top1_err"]
    assert runs[0].history[cols].equals(runs[1].history[cols])
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(a, b)


def test_resume_with_last_batch_drop_ends_where_an_uninterrupted_run_ends(tiny_data, tmp_path, interrupted_in_epoch):
    settings = dict(epochs=3, batch_size=24, last_batch="drop", progress=False)
    whole = train(tiny_data, "mlp", "icc_teacher", **settings)
    with interrupted_in_epoch(2), pytest.raises(KeyboardInterrupt):
        train(tiny_data, "mlp", "icc_teacher", out_dir=tmp_path / "r", **settings)
    resumed = train(tiny_data, "mlp", "icc_teacher", out_dir=tmp_path / "r", resume=True, **settings)
    cols = ["train_loss", "train_icc_teacher", "val_loss"]
    assert resumed.history[cols].equals(whole.history[cols])
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        assert torch.equal(a, b)
