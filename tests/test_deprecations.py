"""sigma2 is now secondary_std (a standard deviation, not a variance): the old names still work for
one release, with a DeprecationWarning, and results written with the old column names still read."""

import json

import pandas as pd
import pytest
import torch

import kdviz as kd
from kdviz.correlation import secondary_std_per_sample, sigma2_per_sample
from kdviz.deprecations import with_new_columns
from kdviz.experiments import summarize
from kdviz.train.snapshots import RunRecord


def test_old_function_names_warn_and_give_the_new_result():
    logits, labels = torch.tensor([[2.0, 1.0, 0.0, -1.0]]), torch.tensor([0])
    with pytest.warns(DeprecationWarning, match="secondary_std_per_sample"):
        old = sigma2_per_sample(logits, labels)
    assert torch.equal(old, secondary_std_per_sample(logits, labels))
    with pytest.warns(DeprecationWarning, match="plot_error_vs_secondary_std"):
        kd.plot_error_vs_sigma2(
            pd.DataFrame(
                {
                    "arm": ["a"] * 3,
                    "role": ["student"] * 3,
                    "variant": ["v"] * 3,
                    "teacher_sigma2": [0.1, 0.2, 0.3],
                    "val_top1_err": [0.1, 0.2, 0.3],
                    "test_top1_err": [0.1, 0.2, 0.3],
                }
            )
        )


def test_an_icc_report_keeps_sigma2_as_a_warning_alias_and_reads_old_files(tmp_path):
    info = kd.load_dataset("digits").info
    report = kd.icc_of_logits(torch.randn(20, 10), torch.arange(20) % 10, info)
    with pytest.warns(DeprecationWarning, match="ICCReport.secondary_std"):
        assert report.sigma2 == report.secondary_std
    old = report.to_dict()
    old["sigma2"] = old.pop("secondary_std")  # as kdviz 0.1.0 saved it
    torch.save(old, tmp_path / "epoch_0000.pt")
    assert kd.ICCReport.load(tmp_path / "epoch_0000.pt").secondary_std == report.secondary_std


def test_old_result_columns_are_read_under_their_new_names(tmp_path):
    old = pd.DataFrame({"sigma2": [0.1], "teacher_sigma2": [0.2], "val_sigma2": [0.3], "other": [1]})
    assert list(with_new_columns(old).columns) == [
        "secondary_std",
        "teacher_secondary_std",
        "val_secondary_std",
        "other",
    ]
    runs = pd.DataFrame(
        {
            "arm": ["a", "a"],
            "role": ["student"] * 2,
            "variant": ["v", "v"],
            "seed": [0, 1],
            "val_top1_err": [0.1, 0.2],
            "test_top1_err": [0.1, 0.3],
            "sigma2": [0.04, 0.06],
        }
    )
    assert summarize(runs, None).loc["a", "secondary_std"] == pytest.approx(0.05)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,val_top1_err,val_sigma2\n0,0.5,0.07\n")
    (run / "config.json").write_text(json.dumps({}))
    assert RunRecord("old", run).history["val_secondary_std"].tolist() == [0.07]
