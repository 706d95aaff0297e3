"""The results kdviz ships as package data, read through kd.bundled_results."""

import json

import pandas as pd
import pytest

import kdviz as kd
from kdviz.experiments import summarize
from kdviz.results import HERE


def test_the_study_reads_with_its_summary():
    runs = kd.bundled_results("expressive-digits")
    assert len(runs) == 620 and runs["seed"].nunique() == 10 and "secondary_std" in runs and "sigma2" not in runs
    committed = kd.bundled_results("expressive-digits", "summary")
    pd.testing.assert_frame_equal(summarize(runs, "kd")[committed.columns], committed, check_dtype=False)


def test_gpu_epochs_are_the_measured_kdviz_arms_of_each_json():
    epochs = kd.bundled_results("gpu-epochs")
    files = sorted(HERE.glob("gpu/*.json"))
    measured = [
        (a["model"], a["median_seconds"])
        for f in files
        for a in json.loads(f.read_text())["arms"]
        if a["kind"] == "kdviz" and a["measured"]
    ]
    assert list(zip(epochs["model"], epochs["s/epoch"])) == measured and measured
    teacher = epochs[(epochs["model"] == "resnet32x4") & (epochs["arm"] == "teacher_ce")].iloc[0]
    assert teacher["card"] == "NVIDIA H200" and teacher["date"] == "2026-11-27" and teacher["images"] == 50_000
    assert teacher["s/epoch"] == pytest.approx(10.67, abs=0.01)


def test_an_unknown_name_or_table_says_what_exists():
    with pytest.raises(ValueError, match="expressive-digits"):
        kd.bundled_results("nope")
    with pytest.raises(ValueError, match="summary"):
        kd.bundled_results("expressive-digits", "nope")
