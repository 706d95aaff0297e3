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


def test_the_planted_study_reads_and_its_summary_and_truth_table_follow_from_its_runs():
    """summary.csv and truth.csv are what summarize and truth_table compute from the committed runs."""
    from kdviz.experiments import load_experiment
    from kdviz.experiments.truth import truth_table

    runs = kd.bundled_results("expressive-planted")
    assert len(runs) == 360 and runs["seed"].nunique() == 10 and "teacher_truth_distance" in runs
    committed = kd.bundled_results("expressive-planted", "summary")
    pd.testing.assert_frame_equal(summarize(runs, "kd_ce")[committed.columns], committed, check_dtype=False)
    truth = kd.bundled_results("expressive-planted", "truth")
    pd.testing.assert_frame_equal(
        truth_table(load_experiment("expressive-planted"), runs)[truth.columns], truth, check_dtype=False
    )


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
