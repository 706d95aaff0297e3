"""The CRD CIFAR-100 rows kdviz has a recipe for: each published top-1 beside kdviz's own, with its command.

One table, `ROWS`, feeds docs/published_teachers.md (tests/test_published_table.py checks that every row
is there) and `published_table()`, which the paper-scale notebook displays: it reads each row's run
folder, so a finished run's test top-1 appears beside the published number, and "not run yet" (or the
epochs done so far) otherwise.

Sources of the published numbers: KD, FitNet, AT and CRD from CRD's table (RepDistiller README); DKD
from the DKD paper's code (mdistiller README); DIST from the DIST paper (Huang et al. 2022, as
docs/method.md §7 quotes it); KD + logit_std and DKD + logit_std from the logit-standardization paper's
code (sunshangquan/logit-standardization-KD README). Every command trains with the `crd-cifar100` recipe
from the published teacher file (docs/published_teachers.md), as the published rows did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CRD, DKD, DIST, LS = "RepDistiller (CRD)", "mdistiller (DKD)", "DIST paper", "logit-standardization-KD"
TEACHERS = "cifar_teachers"  # where mdistiller's cifar_teachers.tar unpacks


@dataclass(frozen=True)
class Row:
    """One student of one published teacher. loss: the `kdviz distill` flags of the method."""

    teacher: str
    student: str
    method: str
    published_top1: float
    source: str
    loss: str

    @property
    def out(self) -> str:
        """The run folder's name: <teacher>-<student>-<method>, e.g. resnet32x4-resnet8x4-dkd+logit_std."""
        return f"{self.teacher}-{self.student}-{self.method.lower().replace(' ', '')}"

    def command(self, runs: str = "runs/crd", teachers: str = TEACHERS) -> str:
        checkpoint = f"{teachers}/{self.teacher}_vanilla/ckpt_epoch_240.pth"
        return (
            f"kdviz distill --recipe crd-cifar100 --teacher-checkpoint {checkpoint} --teacher-format mdistiller "
            f"--teacher-model {self.teacher} --model {self.student} {self.loss} --out {runs}/{self.out}"
        )


def _pair(teacher, student, dkd_beta, kd, fitnet, at, crd, dkd, dist, kd_ls, dkd_ls) -> list[Row]:
    beta = "" if dkd_beta == 8 else f""" --loss-params '{{"dkd": {{"beta": {dkd_beta}}}}}'"""
    methods = [
        ("KD", kd, CRD, "--loss kd"),
        ("FitNet", fitnet, CRD, "--loss fitnet"),
        ("AT", at, CRD, "--loss at"),
        ("CRD", crd, CRD, "--loss crd"),
        ("DKD", dkd, DKD, f"--loss dkd{beta}"),
        ("DIST", dist, DIST, "--loss dist"),
        ("KD+logit_std", kd_ls, LS, "--loss kd+logit_std"),
        ("DKD+logit_std", dkd_ls, LS, "--loss dkd+logit_std"),
    ]
    return [Row(teacher, student, m, top1, src, loss) for m, top1, src, loss in methods if top1 is not None]


# DKD's beta per pair as its authors' configs set it (mdistiller configs/cifar100/dkd/); with logit_std
# their tools/train.py sets beta = 8 * 9 for every pair, which the preset dkd+logit_std holds.
ROWS: tuple[Row, ...] = (
    *_pair("resnet32x4", "resnet8x4", 8, 73.33, 73.50, 73.44, 75.51, 76.32, 76.31, 76.62, 77.01),
    *_pair("wrn_40_2", "wrn_16_2", 6, 74.92, 73.58, 74.08, 75.48, 76.23, None, 76.11, 76.39),
    *_pair("resnet56", "resnet20", 2, 70.66, 69.21, 70.55, 71.16, 71.97, 71.75, 71.43, 72.32),
    *_pair("resnet32x4", "shufflenetv2_1_0", 8, 74.45, 73.54, 72.73, 75.65, 77.07, 76.08, 75.56, 77.37),
)


def measured_top1(run_dir: str | Path) -> float | str:
    """The test top-1 (%) of a finished run in `run_dir`, at the epoch chosen on validation; "not run
    yet" without one, "running (e/E epochs)" for an unfinished one."""
    run_dir = Path(run_dir)
    metrics, config = run_dir / "metrics.csv", run_dir / "config.json"
    if not (metrics.is_file() and config.is_file()):
        return "not run yet"
    history = pd.read_csv(metrics)
    epochs = json.loads(config.read_text())["epochs"]
    if len(history) < epochs:
        return f"running ({len(history)}/{epochs} epochs)"
    chosen = history.sort_values(["val_top1_err", "val_loss"], kind="stable").iloc[0]  # as train() chooses
    err = chosen["test_top1_err"]
    return "not run yet" if isinstance(err, float) and math.isnan(err) else round(100 * (1 - float(err)), 2)


def published_table(runs: str | Path = "runs/crd", teachers: str = TEACHERS) -> pd.DataFrame:
    """The CRD CIFAR-100 rows (`ROWS`) as a DataFrame: teacher, student, method, published top-1 (%),
    its source, kdviz's top-1 (%) read from runs/<run> (or "not run yet"), the run folder's name, and
    the command that trains the row (the teacher file under `teachers`)."""
    return pd.DataFrame(
        [
            {
                "teacher": r.teacher,
                "student": r.student,
                "method": r.method,
                "published top-1": r.published_top1,
                "source": r.source,
                "kdviz top-1": measured_top1(Path(runs) / r.out),
                "run": r.out,
                "command": r.command(str(runs), teachers),
            }
            for r in ROWS
        ]
    )
