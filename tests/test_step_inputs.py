"""What a loss term reads from a training step: named by its signature (or `inputs`), filled only
when asked; trainable terms are optimised with the model, saved in last.pt and resumed exactly."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kdviz
from kdviz.losses import LOSS_TERMS, LossTerm, ModuleTerm, Objective, StepOutputs
from kdviz.losses.terms import FunctionTerm
from kdviz.train import load_checkpoint, train
from kdviz.train import loop as loop_module

pytestmark = pytest.mark.filterwarnings("ignore:the teacher is a bare")


@pytest.fixture
def register(monkeypatch):
    """Register a loss term for one test only."""
    return lambda name, factory: monkeypatch.setitem(LOSS_TERMS._entries, name, factory)


def _feature_match(features, teacher_features, scale: float = 1.0):
    return scale * (features.mean() - teacher_features.mean()) ** 2


def test_a_function_term_reads_the_fields_its_parameters_name():
    assert LOSS_TERMS.get("ce")().inputs == ("targets",)
    assert LOSS_TERMS.get("kd")().inputs == ("teacher_logits",) and LOSS_TERMS.get("kd")().needs_teacher
    assert LOSS_TERMS.get("kd_asymmetric")().inputs == ("teacher_logits", "targets")
    term = FunctionTerm(_feature_match, scale=2.0)
    assert term.inputs == ("features", "teacher_features") and term.needs_teacher
    out = StepOutputs(
        torch.zeros(2, 3),
        torch.zeros(2, dtype=torch.long),
        features=torch.full((2, 5), 3.0),
        teacher_features=torch.ones(2, 7),
    )
    assert term(out).item() == 2.0 * (3.0 - 1.0) ** 2  # no logits passed: its first parameter is a step field
    assert Objective({"ce": 1.0, "kd": 1.0}).inputs == {"targets", "teacher_logits"}


class _Spy(LossTerm):
    """Records what each step gave it; contributes nothing to the loss."""

    seen: list = []

    def __init__(self, inputs=()):
        super().__init__()
        self.inputs = tuple(inputs)

    def __call__(self, out):
        _Spy.seen.append({k: None if v is None else tuple(v.shape) for k, v in vars(out).items()})
        return out.logits.sum() * 0


def test_features_and_indices_reach_only_the_terms_that_ask(tiny_data, register):
    teacher = kdviz.build_model("cnn", 4, tiny_data.info.image_shape, width=8)
    register("spy", lambda **p: _Spy(**p))
    settings = dict(model_kwargs={"width": 4}, epochs=1, batch_size=16, progress=False, teacher=teacher, augment=False)
    _Spy.seen = []
    train(tiny_data, "cnn", {"kd": 1.0, "spy": {"weight": 1.0}}, **settings)
    assert {s["features"] for s in _Spy.seen} == {None} and {s["teacher_features"] for s in _Spy.seen} == {None}
    assert {s["indices"] for s in _Spy.seen} == {None}

    _Spy.seen = []
    register("spy_features", lambda **p: _Spy(inputs=("features", "teacher_features", "indices")))
    train(tiny_data, "cnn", {"kd": 1.0, "spy_features": 1.0}, **settings)
    # SmallCNN's penultimate features have 4 * width channels: 16 for the student, 32 for the teacher.
    assert {(s["features"], s["teacher_features"], s["indices"]) for s in _Spy.seen} == {((16, 16), (16, 32), (16,))}


def test_teacher_features_are_refused_with_a_cache(tiny_data, register, tmp_path):
    teacher = kdviz.build_model("cnn", 4, tiny_data.info.image_shape, width=8)
    register("feature_match", lambda **p: FunctionTerm(_feature_match, **p))
    with pytest.raises(ValueError, match="teacher cache holds logits only.*teacher_cache=False"):
        train(
            tiny_data,
            "cnn",
            {"ce": 1.0, "feature_match": 1.0},
            teacher=teacher,
            teacher_cache=True,
            cache_dir=tmp_path,
            epochs=1,
            progress=False,
        )


class _Regressor(ModuleTerm):
    """FitNet-like: a linear map of the student's features onto the teacher's, fitted by MSE."""

    inputs = ("features", "teacher_features")

    def setup(self, example, n_train):
        self.regressor = nn.Linear(example.features.shape[1], example.teacher_features.shape[1])

    def forward(self, out):
        return F.mse_loss(self.regressor(out.features), out.teacher_features)


def test_a_trainable_term_is_optimised_saved_and_resumed_exactly(tiny_data, register, tmp_path, monkeypatch):
    teacher = kdviz.build_model("cnn", 4, tiny_data.info.image_shape, width=8)
    register("regress", lambda **p: _Regressor(**p))
    settings = dict(model_kwargs={"width": 4}, epochs=3, batch_size=16, progress=False, teacher=teacher, seed=1)
    initial = {}

    def objective():
        obj = Objective({"ce": 1.0, "regress": 0.5})
        real_setup = obj.setup

        def setup(example, n_train):  # keep the freshly built regressor's weights, to see them move
            real_setup(example, n_train)
            initial.update({k: v.clone() for k, v in obj.terms["regress"].state_dict().items()})

        obj.setup = setup
        return obj

    full_objective = objective()
    full = train(tiny_data, "cnn", full_objective, out_dir=tmp_path / "full", **settings)
    fitted = full_objective.terms["regress"].regressor
    assert fitted.weight.shape == (32, 16)  # teacher features 4 * 8, student features 4 * 4
    assert not torch.equal(fitted.weight.detach(), initial["regressor.weight"])  # the optimizer moved it
    saved = load_checkpoint(tmp_path / "full" / "last.pt")["objective"]["regress"]
    assert torch.equal(saved["regressor.weight"], fitted.weight.detach())

    real_epoch = loop_module.train_epoch

    def dies(run, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(run, epoch)

    monkeypatch.setattr(loop_module, "train_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, "cnn", objective(), out_dir=tmp_path / "cut", **settings)
    monkeypatch.setattr(loop_module, "train_epoch", real_epoch)
    resumed_objective = objective()
    resumed = train(tiny_data, "cnn", resumed_objective, out_dir=tmp_path / "cut", resume=True, **settings)
    assert torch.equal(resumed_objective.terms["regress"].regressor.weight, fitted.weight)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


DDP_SCRIPT = """
import sys, torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
import kdviz as kd
from kdviz.losses import LOSS_TERMS, ModuleTerm

class Auxiliary(ModuleTerm):
    inputs = ("features", "targets")
    def setup(self, example, n_train):
        self.head = nn.Linear(example.features.shape[1], 10)
    def forward(self, out):
        return F.cross_entropy(self.head(out.features), out.targets)

LOSS_TERMS.register("auxiliary")(lambda **p: Auxiliary(**p))
torch.set_num_threads(1)
data = kd.load_dataset("digits", seed=0)
objective = kd.Objective({"ce": 1.0, "auxiliary": 0.5})
kd.train(data, "mlp", objective, model_kwargs={"hidden": 16}, epochs=2, batch_size=64, progress=False)
torch.save(objective.terms["auxiliary"].state_dict(), f"{sys.argv[1]}/aux_rank{dist.get_rank()}.pt")
"""


@pytest.mark.distributed  # torchrun with 2 processes
def test_trainable_terms_stay_identical_on_every_rank_under_torchrun(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "ddp_aux.py"
    script.write_text(DDP_SCRIPT)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Each rank trains on its own half of every batch: only averaged gradients keep the heads equal.
    a, b = (torch.load(tmp_path / f"aux_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
