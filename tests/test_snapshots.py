"""Per-epoch ICC snapshots: an ICCReport saved and read back, the trainer's one file per epoch,
and a run directory read while it grows."""

import pickle

import pandas as pd
import pytest
import torch

from kdviz import train
from kdviz.correlation import ICCReport, icc_of_logits
from kdviz.inputs import open_runs
from kdviz.train.snapshots import RunRecord, snapshot_path


def _report(info, seed):
    g = torch.Generator().manual_seed(seed)
    return icc_of_logits(torch.randn(40, 4, generator=g), torch.arange(40) % 4, info)


def _same(a: ICCReport, b: ICCReport):
    assert (
        a.info == b.info
        and a.tau == b.tau
        and a.n == b.n
        and a.secondary_std == b.secondary_std
        and a.group_mass == b.group_mass
    )
    assert torch.equal(a.sums, b.sums) and torch.equal(a.counts, b.counts)


def test_report_round_trips_through_a_weights_only_file(tiny_info, tmp_path):
    r = _report(tiny_info, 0)
    r.save(tmp_path / "r.pt")
    torch.load(tmp_path / "r.pt", weights_only=True)  # plain tensors and builtins only
    _same(ICCReport.load(tmp_path / "r.pt"), r)
    (tmp_path / "bad.pt").write_bytes(b"not a file torch wrote")
    with pytest.raises(ValueError, match="not a readable ICC report"):
        ICCReport.load(tmp_path / "bad.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="kdviz-icc-report-1"):
        ICCReport.load(tmp_path / "other.pt")
    with open(tmp_path / "code.pt", "wb") as f:
        pickle.dump(pd.DataFrame(), f, protocol=2)  # a pickle that would build arbitrary objects is refused
    with pytest.raises(ValueError):
        ICCReport.load(tmp_path / "code.pt")


def test_top_confusions_are_the_largest_off_target_entries_of_the_row(tiny_info):
    # class a's images put secondary mass 0.6 on c, 0.3 on d, 0.1 on b: logits make that exact
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]] * 4 + [[0.25] * 4] * 4)
    labels = torch.tensor([0] * 4 + [1, 2, 3, 1])
    r = icc_of_logits(probs.log() * 4.0, labels, tiny_info, tau=4.0)  # softmax(log p * tau / tau) = p
    top = r.top_confusions("a", k=2)
    assert list(top.index) == ["c", "d"] and top.tolist() == pytest.approx([0.6, 0.3])
    with pytest.raises(KeyError, match="classes: \\['a', 'b', 'c', 'd'\\]"):
        r.top_confusions("z")


def test_trainer_writes_each_epochs_validation_icc(tiny_data, tmp_path):
    result = train(tiny_data, "mlp", "ce", epochs=3, out_dir=tmp_path / "run", progress=False)
    for epoch, snapshot in enumerate(result.icc_snapshots):
        _same(ICCReport.load(snapshot_path(tmp_path / "run", epoch)), snapshot)
    record = RunRecord("run", tmp_path / "run")
    assert record.epochs == [0, 1, 2] and record.best_epoch == result.best_epoch
    pd.testing.assert_frame_equal(
        record.history[["epoch", "val_top1_err"]],
        result.history[["epoch", "val_top1_err"]],
        check_exact=False,
        rtol=1e-12,
    )
    in_memory = RunRecord("mem", result)
    assert in_memory.epochs == [0, 1, 2] and in_memory.at(7)[0] == 2 and in_memory.best_epoch == result.best_epoch


def _write_epoch(run_dir, epoch, report, rows):
    """What the trainer leaves after `epoch`: its snapshot and the history so far."""
    snapshot_path(run_dir, epoch).parent.mkdir(exist_ok=True)
    report.save(snapshot_path(run_dir, epoch))
    pd.DataFrame(rows[: epoch + 1]).to_csv(run_dir / "metrics.csv", index=False)


def test_a_run_directory_is_read_again_as_it_grows(tiny_info, tmp_path):
    run = tmp_path / "live"
    run.mkdir()
    record = RunRecord("live", run)
    assert record.at(0) is None and "no finished epoch yet" in record.waiting()
    rows = [{"epoch": e, "val_top1_err": 0.5 - 0.1 * e, "seconds": 1.0} for e in range(3)]
    _write_epoch(run, 0, _report(tiny_info, 0), rows)
    assert record.refresh().epochs == [0] and list(record.history["epoch"]) == [0]
    _write_epoch(run, 1, _report(tiny_info, 1), rows)
    record.refresh()
    assert record.epochs == [0, 1] and record.at(5)[0] == 1 and record.at(0)[0] == 0
    _same(record.at(1)[1], _report(tiny_info, 1))
    # metrics.csv caught while it is rewritten: a row cut short is dropped, an empty file keeps the last read
    (run / "metrics.csv").write_text("epoch,val_top1_err,seconds\n0,0.5,1.0\n1,0.4")
    assert list(record.refresh().history["epoch"]) == [0]
    (run / "metrics.csv").write_text("")
    assert list(record.refresh().history["epoch"]) == [0]


def test_runs_are_named_and_missing_ones_refused(tmp_path):
    (tmp_path / "a").mkdir()
    assert list(open_runs([tmp_path / "a"])) == ["a"]
    with pytest.raises(FileNotFoundError, match="no run directory"):
        open_runs({"b": tmp_path / "b"})
    with pytest.raises(ValueError, match="no runs"):
        open_runs({})
    (tmp_path / "a" / "last.pt").write_bytes(b"")
    assert "older kdviz" in RunRecord("a", tmp_path / "a").waiting()
