"""Every public function that takes runs or a sweep's tables accepts the same things, read by one
function (kdviz.inputs), and refuses anything else with a message naming what it accepts (issue 24
part 1). Each kind of input, and each kind of wrong input, goes to every such function."""

import json
import shutil

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from torch import nn

import kdviz as kd
from kdviz.correlation import icc_of_logits
from kdviz.data.base import DatasetInfo
from kdviz.experiment_plots import plot_arms, plot_error_vs_secondary_std, plot_sweep
from kdviz.experiments import summarize
from kdviz.train import TrainConfig, TrainResult
from kdviz.train.snapshots import snapshot_path

pytest.importorskip("ipywidgets")

INFO = DatasetInfo(name="tiny", class_names=("a", "b", "c", "d"), image_shape=(1, 2, 2), mean=(0.5,), std=(0.25,))
HISTORY = pd.DataFrame(
    {
        "epoch": [0, 1, 2],
        "train_top1_err": [0.6, 0.4, 0.3],
        "val_top1_err": [0.5, 0.4, 0.45],
        "test_top1_err": [float("nan"), 0.42, float("nan")],
        "seconds": 1.0,
    }
)
ACCEPTS = r"run directory|sweep folder"  # every refusal says what the function takes, or where nothing is


def _reports():
    g = torch.Generator().manual_seed(0)
    return [icc_of_logits(torch.randn(40, 4, generator=g), torch.arange(40) % 4, INFO) for _ in range(3)]


def _run_dir(path):
    """A run directory as the trainer leaves it after three epochs."""
    (path / "icc").mkdir(parents=True)
    for epoch, report in enumerate(_reports()):
        report.save(snapshot_path(path, epoch))
    HISTORY.to_csv(path / "metrics.csv", index=False)
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{kind: an input of that kind}: what a user passes."""
    root = tmp_path_factory.mktemp("inputs")
    run = _run_dir(root / "run")
    sweep = root / "sweep"
    for arm, seed in (("kd", 0), ("kd", 1), ("alone", 0)):
        shutil.copytree(run, sweep / arm / "default" / f"seed_{seed}")
    runs = pd.DataFrame(
        {
            "arm": ["kd", "kd", "alone", "alone"],
            "role": "student",
            "variant": ["beta=1.0", "beta=1.0", "beta=0.1", "beta=0.1"],
            "seed": [0, 1, 0, 1],
            "val_top1_err": [0.1, 0.12, 0.2, 0.22],
            "test_top1_err": [0.11, 0.13, 0.21, 0.24],
            "teacher_secondary_std": [0.05, 0.06, 0.02, 0.03],
        }
    )
    runs.assign(beta=[1.0, 1.0, 0.1, 0.1]).to_csv(sweep / "runs.csv", index=False)
    summarize(runs, "alone").to_csv(sweep / "summary.csv")
    result = TrainResult(
        name="in memory",
        model=nn.Linear(4, 4),
        history=HISTORY,
        best_epoch=1,
        config=TrainConfig(epochs=3),
        objective="ce",
        model_spec={"name": "linear"},
        info=INFO,
        icc_snapshots=_reports(),
    )
    (root / "empty").mkdir()
    (root / "config_only").mkdir()
    (root / "config_only" / "config.json").write_text(json.dumps({"epochs": 3}))
    return {
        "dir": run,
        "dir (str)": str(run),
        "result": result,
        "history": HISTORY,
        "sweep": sweep,
        "report": _reports()[0],
        "runs table": runs.assign(beta=[1.0, 1.0, 0.1, 0.1]),
        "summary table": summarize(runs, "alone"),
        "empty folder": root / "empty",
        "config only": root / "config_only",
        "file": run / "metrics.csv",
        "missing path": root / "missing",
    }


# function -> (how to call it with one input, the kinds it accepts)
RUNS = ("dir", "dir (str)", "result", "history", "sweep")
RUN_FUNCTIONS = {
    "plot_error_curves": (kd.plot_error_curves, RUNS),
    "plot_training": (kd.plot_training, ("dir", "dir (str)", "result", "history")),
    "curves_explorer": (kd.curves_explorer, RUNS),
    "run_explorer": (kd.run_explorer, RUNS),
    "icc_explorer": (kd.icc_explorer, ("dir", "dir (str)", "result", "sweep", "report")),
}
TABLE_FUNCTIONS = {
    "plot_sweep": (lambda x: plot_sweep(x, "beta"), "runs table"),
    "plot_error_vs_secondary_std": (plot_error_vs_secondary_std, "runs table"),
    "study_explorer": (kd.study_explorer, "runs table"),
    "summarize": (lambda x: summarize(x, "alone"), "runs table"),
    "plot_arms": (plot_arms, "summary table"),
}
KINDS = ("dir", "dir (str)", "result", "history", "sweep", "report", "runs table", "summary table")


def _drew(value) -> bool:
    figures = [value] if isinstance(value, Figure) else getattr(value, "figures", None)
    return isinstance(value, pd.DataFrame) or bool(figures) and any(isinstance(f, Figure) for f in figures)


def _cases(functions, drawn):
    """(function, kind) pairs; those that draw, beyond one kind per function, marked slow."""
    return [
        pytest.param(f, k, marks=pytest.mark.slow if drawn(f, k) and k not in ("dir", "sweep") else ())
        for f in functions
        for k in KINDS
    ]


@pytest.mark.slow
@pytest.mark.parametrize("function, kind", _cases(RUN_FUNCTIONS, lambda f, k: k in RUN_FUNCTIONS[f][1]))
def test_run_functions_take_each_kind_they_accept_alone_or_in_a_dict_and_refuse_the_others(function, kind, sources):
    call, accepted = RUN_FUNCTIONS[function]
    if kind in accepted:
        assert _drew(call(sources[kind]))
        assert _drew(call({"mine": sources[kind]}))
    else:
        with pytest.raises((TypeError, ValueError), match=ACCEPTS) as refused:
            call({"mine": sources[kind]})
        assert function in str(refused.value)  # the message says who refuses


@pytest.mark.parametrize("function, kind", _cases(TABLE_FUNCTIONS, lambda f, k: k == TABLE_FUNCTIONS[f][1]))
def test_table_functions_take_their_table_or_a_sweep_folder_and_refuse_the_rest(function, kind, sources):
    call, table = TABLE_FUNCTIONS[function]
    if kind in (table, "sweep"):
        assert _drew(call(sources[kind]))
    else:
        with pytest.raises((TypeError, ValueError, FileNotFoundError), match=ACCEPTS) as refused:
            call(sources[kind])
        assert function in str(refused.value) and f"{table.split()[0]} table" in str(refused.value)


@pytest.mark.parametrize("kind", ["empty folder", "config only"])
@pytest.mark.parametrize("function", RUN_FUNCTIONS)
def test_a_run_with_no_finished_epoch_is_named_as_such(function, kind, sources):
    call, _ = RUN_FUNCTIONS[function]
    if function == "run_explorer":  # it shows a run that is still starting, and says so under the figure
        view = call({"new": sources[kind], "done": sources["dir"]})
        view.controls["model"].value = "new"
        assert "no finished epoch yet" in view.note.value
        return
    with pytest.raises(ValueError, match=r"run 'new' has no finished epoch yet"):
        call({"new": sources[kind]})


@pytest.mark.parametrize("function", [*RUN_FUNCTIONS, *TABLE_FUNCTIONS])
def test_paths_that_are_not_runs_are_refused_naming_the_path(function, sources):
    call = {**RUN_FUNCTIONS, **TABLE_FUNCTIONS}[function][0]
    with pytest.raises(FileNotFoundError, match=str(sources["missing path"])):
        call(sources["missing path"])
    if function in RUN_FUNCTIONS:
        with pytest.raises(ValueError, match="is a file, not a run directory: pass the folder it is in"):
            call(sources["file"])
        with pytest.raises(ValueError, match=r"got no runs \(it needs at least one\)"):
            call({})  # curves_explorer({}) used to draw an empty figure


def test_a_sweep_folder_opens_as_its_runs_named_by_their_paths(sources):
    view = kd.curves_explorer(sources["sweep"])
    assert list(view.controls["selected"].options) == ["alone/default/seed_0", "kd/default/seed_0", "kd/default/seed_1"]
    with pytest.raises(ValueError, match="is a sweep folder; pass one of its run directories"):
        kd.plot_training(sources["sweep"])


WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=4),
    st.just(object()),
    st.builds(nn.Linear, st.just(2), st.just(2)),
    st.text(alphabet="abcxyz_", min_size=1, max_size=8).map(lambda name: f"/nonexistent/{name}"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.none() | st.integers() | st.just({"nested": HISTORY}), max_size=2),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wrong=WRONG, function=st.sampled_from([*RUN_FUNCTIONS, *TABLE_FUNCTIONS]))
def test_any_wrong_input_is_refused_with_what_the_function_accepts(wrong, function):
    call = {**RUN_FUNCTIONS, **TABLE_FUNCTIONS}[function][0]
    with pytest.raises((TypeError, ValueError, FileNotFoundError), match=ACCEPTS):
        call(wrong)
