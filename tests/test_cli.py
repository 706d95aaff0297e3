"""The command line: quickstart in its smoke form, and the train-teacher -> distill -> correlations chain."""
import json
import os
import subprocess
import sys

import pandas as pd

from kdviz.cli import main
from kdviz.quickstart import RUNS


def test_quickstart_smoke_writes_every_file(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "low-data setting" in printed and "kd_icc_mimic_from_icc_teacher" in printed
    table = pd.read_csv(out / "metrics.csv", index_col="model")
    assert list(table.index) == [name for name, *_ in RUNS]
    assert {"val_err_%", "test_err_%", "sigma2"} <= set(table.columns)
    assert table["icc_dist_to_teacher"].notna().sum() == 3  # the three distilled students
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "digits" and "setting" in config
    pngs = {p.name for p in out.glob("*.png")}
    assert {f"icc_{name}.png" for name, *_ in RUNS} <= pngs
    assert {"icc_diff_kd_from_ce_teacher.png", "error_curves_teachers.png", "error_curves_students.png"} <= pngs
    for name, *_ in RUNS:
        assert (out / name / "best.pt").exists() and (out / name / "metrics.csv").exists()
    # a second run with --resume reuses the finished runs and gives the same table
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--device", "cpu", "--resume"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv", index_col="model"), table)


def test_train_distill_correlations_chain(tmp_path, capsys):
    t, s = tmp_path / "teacher", tmp_path / "student"
    common = ["--epochs", "2", "--no-progress", "--device", "cpu"]
    assert main(["train-teacher", "--out", str(t), "--model-kwargs", '{"width": 4}', *common]) == 0
    # Without --recipe: digits, cnn, CE + ICC regulariser, batch 64, lr 0.05, cosine (the flags given aside).
    config = json.loads((t / "config.json").read_text())
    assert (config["dataset"], config["model"]["name"], config["model"]["kwargs"]) == ("digits", "cnn", {"width": 4})
    assert (config["batch_size"], config["lr"], config["schedule"], config["seed"], config["epochs"]) == (64, 0.05, "cosine", 0, 2)
    assert set(config["objective"]) == {"ce", "icc_teacher"}
    assert main(["distill", "--teacher", str(t / "best.pt"), "--out", str(s), "--n-train", "100", "--teacher-cache",
                 "--cache-dir", str(tmp_path / "cache"), "--loss", "kd+icc_mimic", "--loss-params", '{"kd": {"tau": 2}}', *common]) == 0
    config = json.loads((s / "config.json").read_text())
    assert config["objective"]["kd"] == {"weight": 0.9, "tau": 2} and config["teacher_cache"] is True
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert (config["model"]["name"], config["model"]["kwargs"], config["lr"]) == ("mlp", {"hidden": 32}, 0.05)
    assert main(["correlations", str(s / "best.pt"), "--secondary", "--split", "val", "--out", str(tmp_path / "icc")]) == 0
    frame = pd.read_csv(tmp_path / "icc" / "best_val_icc.csv", index_col=0)
    assert frame.shape == (10, 10)
    assert abs(frame.sum(axis=1) - 1).max() < 1e-6  # each row is a mean of probability vectors
    assert (tmp_path / "icc" / "best_val_secondary_icc.png").stat().st_size > 1000


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["train-teacher", "--out", str(tmp_path), "--model", "resnet9000", "--epochs", "1", "--no-progress"]) == 2
    assert "valid choices: cnn, mlp" in capsys.readouterr().err
    assert main(["correlations", str(tmp_path / "missing.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "kdviz", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0
    for command in ("quickstart", "train-teacher", "distill", "correlations"):
        assert command in done.stdout
