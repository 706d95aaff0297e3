"""The experiment files that ship with kdviz, found by name, and read without a check or torch.

The command line builds its parser (names, and the `default` recipe's values in its help) from
this module alone, so that `kdviz --help` answers without importing torch; kdviz.experiments.load
reads and checks a file in full when a command runs.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from ..registry import unknown_name


def _bundled() -> dict[str, Path]:
    folder = resources.files(__package__)
    return {f.name.removesuffix(".toml"): Path(str(f)) for f in folder.iterdir() if f.name.endswith(".toml")}


def experiment_names() -> list[str]:
    """The experiments that ship with kdviz (recipes, the quickstart and the studies)."""
    return sorted(_bundled())


def experiment_path(name_or_path: str | Path) -> Path:
    """A bundled experiment's file by name, or a .toml file of one's own."""
    bundled = _bundled()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    if Path(name_or_path).is_file():
        return Path(name_or_path)
    if Path(name_or_path).suffix == ".toml":
        raise FileNotFoundError(
            f"no experiment file at {name_or_path}; check the path, or use a named experiment "
            f"({', '.join(sorted(bundled))})"
        )
    raise unknown_name("experiment", str(name_or_path), bundled, ", or the path of a .toml file")


def recipe_values(name: str, role: str) -> dict:
    """The values the bundled experiment `name` gives its `role` ("teacher" or "student"): its
    [train] table with its [role] table over it, and its dataset, as the file writes them."""
    raw = tomllib.loads(experiment_path(name).read_text(encoding="utf-8"))
    return {"dataset": raw.get("dataset"), **raw.get("train", {}), **raw.get(role, {})}
