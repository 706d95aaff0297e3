"""Where dataset files are looked for, and the error that says how to get them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV_VAR = "KDVIZ_DATA"
# `data/` next to the kdviz package folder, i.e. at the top of a source checkout.
CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "data"


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """Data folders in priority order: `root` if given, else $KDVIZ_DATA if set, else <checkout>/data.

    Only the first that applies is used, so that an explicit choice is never silently overridden
    by files lying elsewhere.
    """
    if root is not None:
        return [_folder(Path(root).expanduser(), "the data root")]
    env = os.environ.get(ENV_VAR)
    if env:
        return [_folder(Path(env).expanduser(), ENV_VAR)]
    return [CHECKOUT_DATA]


def _folder(path: Path, what: str) -> Path:
    """`path`, unless it exists and is not a folder: then a loader would look for files under a file
    and give advice about downloading into it."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"{what} {path} is a file, not a folder; point it at the folder that holds the datasets"
        )
    return path


class MissingDataError(FileNotFoundError):
    """A dataset's files are not where they were looked for; the message lists every path tried
    and the commands that fetch the files."""

    def __init__(self, dataset: str, tried: Iterable[Path], commands: Iterable[str], note: str = ""):
        self.dataset = dataset
        self.tried = [Path(p) for p in tried]
        lines = [f"dataset {dataset!r}: files not found. Looked in:"]
        lines += [f"  {p}" for p in self.tried]
        lines.append("Get them with one of:")
        lines += [f"  {c}" for c in commands]
        if note:
            lines.append(note)
        super().__init__("\n".join(lines))
