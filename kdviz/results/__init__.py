"""Results kdviz ships as package data, read through `bundled_results` (so they are found the same way
in a checkout and in an installed wheel):

- expressive-digits/: the expressive-teacher study on digits (docs/study.md):
  runs.csv (one row per run, 620 runs), summary.csv (one row per arm), verdict.txt and the figure;
  written by `kdviz sweep expressive-digits` and copied here.
- expressive-planted/: the study on `planted`, whose true ICC is known (docs/planted.md): runs.csv
  (360 runs), summary.csv, truth.csv (one row per student: its teacher's distance to the truth, the
  gain over the student alone, the share of the Bayes teacher's gain), verdict.txt and two figures;
  written by `kdviz sweep expressive-planted` and copied here.
- gpu/: bench_distill's JSON of each GPU measurement (benchmarks/bench_distill.py --suite gpu, which
  writes to benchmarks/results/; a result joins the package when it is moved here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..deprecations import with_new_columns

HERE = Path(__file__).resolve().parent
STUDIES = {"expressive-digits": ("runs", "summary"), "expressive-planted": ("runs", "summary", "truth")}
GPU = "gpu-epochs"


def bundled_results(name: str, table: str = "runs") -> pd.DataFrame:
    """A table of results kdviz ships.

    bundled_results("expressive-digits") -> the study's runs (one row per run: arm, variant, seed,
    val/test top-1 error, secondary_std, the teacher's, ...); table="summary" -> one row per arm, as
    kdviz.experiments.summarize writes it (indexed by arm).
    bundled_results("expressive-planted", table) -> the same for the study on `planted`, and
    table="truth" -> kdviz.experiments.truth.truth_table's rows (indexed by student arm).
    bundled_results("gpu-epochs") -> one row per measured training epoch time on a GPU: card, date
    (UTC, of the measurement), torch, model, what trained (arm, label, teacher), images per epoch,
    seconds per epoch (median of the timed epochs; training only, no evaluation), images/s, and
    data (the benchmark trains on random images of CIFAR-100's shape, so no accuracy is measured).
    """
    if name == GPU:
        return _gpu_epochs()
    if name not in STUDIES:
        raise ValueError(f"no bundled results named {name!r}; kdviz ships {sorted([*STUDIES, GPU])}")
    if table not in STUDIES[name]:
        raise ValueError(f"{name} has no table {table!r}; it has {list(STUDIES[name])}")
    frame = with_new_columns(pd.read_csv(HERE / name / f"{table}.csv"))
    index = {"summary": "arm", "truth": "student"}.get(table)
    return frame if index is None else frame.set_index(index)


def _gpu_epochs() -> pd.DataFrame:
    rows = []
    for path in sorted((HERE / "gpu").glob("*.json")):
        result = json.loads(path.read_text())
        machine = result["machine"]
        for arm in result["arms"]:
            if arm["kind"] != "kdviz" or not arm["measured"]:
                continue  # the reference loop is a benchmark baseline, not a kdviz run
            rows.append(
                {
                    "card": machine["device_name"],
                    "date": result["created"][:10],
                    "torch": machine["torch"],
                    "model": arm["model"],
                    "arm": arm["arm"],
                    "label": arm["label"],
                    "teacher": arm["teacher"],
                    "images": arm["n_images"],
                    "s/epoch": arm["median_seconds"],
                    "images/s": arm["images_per_s"],
                    "data": result["data"]["source"],
                    "file": path.name,
                }
            )
    return pd.DataFrame(rows)
