"""Names kdviz has replaced, kept for one release: a warning that says what to use instead, and the
old column names of results written before (metrics.csv, runs.csv, summary.csv, result.json).

The spread of the secondary probabilities was called sigma2, which reads as a variance; it is a
standard deviation, now `secondary_std` (docs/method.md §4). kdviz 0.2 drops the old names.
"""

from __future__ import annotations

import functools
import warnings

import pandas as pd

OLD_COLUMNS = {
    "sigma2": "secondary_std",
    "teacher_sigma2": "teacher_secondary_std",
    "val_sigma2": "val_secondary_std",
}


def warn_renamed(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and will be removed in kdviz 0.2: use {new}", DeprecationWarning, stacklevel=3)


def renamed(old: str, function):
    """`function` under its old name `old`, warning at each call."""

    @functools.wraps(function)
    def alias(*args, **kwargs):
        warn_renamed(old, function.__name__)
        return function(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"Deprecated alias of {function.__name__} (kdviz 0.2 removes it)."
    return alias


def with_new_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the old column names of results written by earlier kdviz renamed to today's."""
    return frame.rename(columns={k: v for k, v in OLD_COLUMNS.items() if k in frame and v not in frame})


def with_new_keys(row: dict) -> dict:
    """A result row (result.json, a history row) with the old keys renamed to today's."""
    return {OLD_COLUMNS.get(k, k) if OLD_COLUMNS.get(k) not in row else k: v for k, v in row.items()}
