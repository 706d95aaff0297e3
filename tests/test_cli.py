"""The command line: quickstart in its smoke form, and the train-teacher -> distill -> correlations chain."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from kdviz import quickstart as quickstart_module
from kdviz.cli import main
from kdviz.experiments import grid as grid_module
from kdviz.experiments import load_experiment

QUICKSTART = [a.name for a in load_experiment("quickstart").arms]


@pytest.mark.slow
def test_quickstart_smoke_writes_every_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "qs"
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "100 labelled images" in printed and "kd_icc_mimic_from_icc_teacher" in printed and "test err %" in printed
    summary = pd.read_csv(out / "summary.csv", index_col="arm")
    assert list(summary.index) == QUICKSTART
    assert {"val_err", "test_err", "test_err_se", "diff_vs_baseline", "secondary_std"} <= set(summary.columns)
    assert summary["icc_distance"].notna().sum() == 3  # the three distilled students
    assert (
        "beat kd_from_ce_teacher" in (out / "verdict.txt").read_text()
        or "beats kd_from_ce_teacher" in (out / "verdict.txt").read_text()
    )
    pngs = {p.name for p in out.glob("*.png")}
    assert {f"icc_{name}.png" for name in QUICKSTART} <= pngs
    assert {"icc_diff_kd_from_ce_teacher.png", "error_curves_teachers.png", "error_curves_students.png"} <= pngs
    for name in QUICKSTART:
        assert (
            len(list((out / name).glob("*/seed_0/best.pt"))) == 1
            and len(list((out / name).glob("*/seed_0/metrics.csv"))) == 1
        )
    # Started again, it reuses every finished run (nothing trains), prints the same table and keeps
    # the figures drawn from those very runs.
    calls = []
    monkeypatch.setattr(grid_module, "train", lambda *a, **k: calls.append(k["output"].name))
    monkeypatch.setattr(quickstart_module, "_draw_figures", lambda *a: calls.append("figures"))
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert calls == []
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv", index_col="arm"), summary)
    # A run trained again (its result.json rewritten) has its figures drawn again.
    result = next(out.glob(f"{QUICKSTART[0]}/*/seed_0/result.json"))
    result.write_text(result.read_text() + "\n")
    monkeypatch.setattr(quickstart_module, "_draw_figures", lambda *a: calls.append("figures") or [])
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert calls == ["figures"]


@pytest.mark.slow
def test_train_distill_correlations_chain(tmp_path, capsys):
    t, s = tmp_path / "teacher", tmp_path / "student"
    common = ["--epochs", "2", "--no-progress", "--device", "cpu"]
    assert main(["train-teacher", "--out", str(t), "--model-kwargs", '{"width": 4}', *common]) == 0
    # Without --recipe: digits, cnn, CE + ICC regulariser, batch 64, lr 0.05, cosine (the flags given aside).
    config = json.loads((t / "config.json").read_text())
    assert (config["dataset"], config["model"]["name"], config["model"]["kwargs"]) == ("digits", "cnn", {"width": 4})
    assert (config["batch_size"], config["lr"], config["schedule"], config["seed"], config["epochs"]) == (
        64,
        0.05,
        "cosine",
        0,
        2,
    )
    assert set(config["objective"]) == {"ce", "icc_teacher"}
    assert (
        main(
            [
                "distill",
                "--teacher",
                str(t / "best.pt"),
                "--out",
                str(s),
                "--n-train",
                "100",
                "--teacher-cache",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--loss",
                "kd+icc_mimic",
                "--loss-params",
                '{"kd": {"tau": 2}}',
                *common,
            ]
        )
        == 0
    )
    config = json.loads((s / "config.json").read_text())
    assert config["objective"]["kd"] == {"weight": 0.9, "tau": 2} and config["teacher_cache"] is True
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert (config["model"]["name"], config["model"]["kwargs"], config["lr"]) == ("mlp", {"hidden": 32}, 0.05)
    assert (
        main(["correlations", str(s / "best.pt"), "--secondary", "--split", "val", "--out", str(tmp_path / "icc")]) == 0
    )
    frame = pd.read_csv(tmp_path / "icc" / "best_val_icc.csv", index_col=0)
    assert frame.shape == (10, 10)
    assert abs(frame.sum(axis=1) - 1).max() < 1e-6  # each row is a mean of probability vectors
    assert (tmp_path / "icc" / "best_val_secondary_icc.png").stat().st_size > 1000


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert (
        main(["train-teacher", "--out", str(tmp_path), "--model", "resnet9000", "--epochs", "1", "--no-progress"]) == 2
    )
    assert "valid choices: cnn, mlp" in capsys.readouterr().err
    assert main(["correlations", str(tmp_path / "missing.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "kdviz", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == 0
    for command in ("quickstart", "sweep", "train-teacher", "distill", "correlations"):
        assert command in done.stdout


def test_quickstart_table_shows_mean_and_standard_error_over_seeds():
    from kdviz.experiments import summarize
    from kdviz.quickstart import quickstart_table

    runs = pd.DataFrame(
        {
            "arm": ["teacher_ce", "kd", "kd", "kd", "alone", "alone", "alone"],
            "role": ["teacher"] + ["student"] * 6,
            "variant": ["default"] * 7,
            "seed": [0, 0, 1, 2, 0, 1, 2],
            "val_top1_err": [0.01, 0.06, 0.07, 0.08, 0.10, 0.11, 0.12],
            "test_top1_err": [0.004, 0.08, 0.09, 0.10, 0.10, 0.12, 0.14],
            "secondary_std": [0.06, 0.05, 0.05, 0.05, 0.1, 0.1, 0.1],
        }
    )
    table = quickstart_table(summarize(runs, "kd"))
    # kd: 8, 9, 10 %: mean 9, sd 1, se 1/sqrt(3) = 0.577; alone - kd: 2, 3, 4 points: mean 3, se 0.577.
    assert table.loc["kd", "test err %"] == "9.00 +- 0.58" and table.loc["alone", "test err %"] == "12.00 +- 1.15"
    assert (
        table.loc["alone", "diff vs baseline"] == "3.00 +- 0.58"
        and table.loc["kd", "diff vs baseline"] == "0.00 +- 0.00"
    )
    assert table.loc["teacher_ce", "test err %"] == "0.40" and table.loc["teacher_ce", "seeds"] == 1  # one seed: no se
    assert table.loc["teacher_ce", "diff vs baseline"] == ""
