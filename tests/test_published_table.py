"""The published CRD CIFAR-100 table: one data source (kdviz/experiments/published.py) for the docs and
kd.published_table(), every row's command runnable as written, and kdviz's numbers read from runs."""

import json
import shlex
from pathlib import Path

import pandas as pd
import pytest

import kdviz as kd
from kdviz.cli import build_parser
from kdviz.commands import command_settings
from kdviz.experiments import load_experiment
from kdviz.experiments.published import ROWS, measured_top1

DOCS = Path(__file__).resolve().parents[1] / "docs" / "published_teachers.md"


def test_the_headline_pair_has_the_published_numbers():
    table = kd.published_table()
    pair = table[(table.teacher == "resnet32x4") & (table.student == "resnet8x4")]
    assert dict(zip(pair.method, pair["published top-1"])) == {
        "KD": 73.33,  # RepDistiller README
        "FitNet": 73.50,
        "AT": 73.44,
        "CRD": 75.51,
        "DKD": 76.32,  # mdistiller README
        "DIST": 76.31,
        "KD+logit_std": 76.62,  # logit-standardization-KD README
        "DKD+logit_std": 77.01,
    }
    assert (table["kdviz top-1"] == "not run yet").all()  # no runs folder here


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.out)
def test_every_rows_command_trains_that_rows_method(row):
    argv = shlex.split(row.command())
    assert argv[:2] == ["kdviz", "distill"]
    args = build_parser().parse_args(argv[1:])
    data, settings = command_settings(args, load_experiment(args.recipe))
    assert data["name"] == "cifar100" and settings["model"] == row.student and settings["epochs"] == 240
    assert (args.teacher_model, args.teacher_format) == (row.teacher, "mdistiller")
    assert args.teacher_checkpoint == f"cifar_teachers/{row.teacher}_vanilla/ckpt_epoch_240.pth"
    spec = settings["objective"].spec
    method = row.method.lower()
    expected = kd.Objective.preset(method).spec
    if method == "dkd" and row.student in ("wrn_16_2", "resnet20"):
        expected["dkd"]["beta"] = {"wrn_16_2": 6, "resnet20": 2}[row.student]  # mdistiller's per-pair configs
    assert spec == expected


def test_the_docs_table_is_the_data_source():
    text = DOCS.read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ") and "kdviz distill" in line]
    assert len(lines) == len(ROWS)
    for row, line in zip(ROWS, lines):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:4] == [f"{row.teacher} → {row.student}", row.method, f"{row.published_top1:.2f}", row.source]
        assert cells[5] == f"`{row.command()}`"


def _run(folder, epochs, rows):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"epochs": epochs}))
    pd.DataFrame(rows, columns=["epoch", "val_top1_err", "val_loss", "test_top1_err"]).to_csv(
        folder / "metrics.csv", index=False
    )


def test_kdviz_numbers_come_from_the_runs(tmp_path):
    nan = float("nan")
    # Epoch 1 ties epoch 2 on validation error and wins on validation loss: its test error is reported.
    _run(tmp_path / "done", 3, [(0, 0.4, 2.0, nan), (1, 0.3, 1.0, 0.2345), (2, 0.3, 1.1, nan)])
    _run(tmp_path / "half", 240, [(0, 0.4, 2.0, nan)])
    assert measured_top1(tmp_path / "done") == 76.55
    assert measured_top1(tmp_path / "half") == "running (1/240 epochs)"
    assert measured_top1(tmp_path / "none") == "not run yet"
    row = ROWS[0]
    _run(tmp_path / "crd" / row.out, 2, [(0, 0.5, 1.0, 0.25), (1, 0.6, 1.0, nan)])
    table = kd.published_table(runs=tmp_path / "crd")
    assert table["kdviz top-1"].iloc[0] == 75.0 and (table["kdviz top-1"].iloc[1:] == "not run yet").all()
    assert table["command"].iloc[0].endswith(f"--out {tmp_path / 'crd'}/{table['run'].iloc[0]}")
    assert table["run"].iloc[0] == "resnet32x4-resnet8x4-kd"
