"""Named training recipes: one small TOML file each in this folder, or a user's own file.

    recipe = load_recipe("crd-cifar100")                     # or load_recipe("my/recipe.toml")
    data = load_dataset(recipe.dataset, n_train=recipe.n_train)
    teacher = train(data, **recipe.train_kwargs("teacher"), out_dir="runs/teacher")
    student = train(data, teacher=teacher, **recipe.train_kwargs("student", "shufflenetv2_1_0"))  # at lr 0.01

A recipe file has a `description` and the tables
  [data]         dataset, n_train (optional: a stratified subset of the training images)
  [train]        any TrainConfig field (epochs, batch_size, lr, schedule, milestones, amp, ...)
  [teacher]      model, model_kwargs (optional), loss (a preset, "ce=0.1,kd=0.9", or a table
  [student]      {term = weight or {weight = ..., tau = ...}})
  [lr_by_model]  optional: model-name prefix = lr, for models trained at another lr than [train]'s
The whole file is checked when it is loaded, so a typo fails before a long run starts, not after it.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..data import DATASETS
from ..losses import Objective
from ..models import MODELS
from ..registry import check_keywords, unknown_name
from ..train import TrainConfig

ROLES = ("teacher", "student")
_TOP_LEVEL = ("description", "data", "train", "lr_by_model", *ROLES)
_DATA_KEYS = ("dataset", "n_train")
_ROLE_KEYS = ("model", "model_kwargs", "loss")


@dataclass(frozen=True)
class Role:
    """The model a teacher or student trains, and its objective (anything kdviz.train accepts)."""

    model: str
    loss: str | dict
    model_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str  # the file it was read from
    description: str
    dataset: str
    n_train: int | None
    train: dict  # TrainConfig fields
    teacher: Role
    student: Role
    lr_by_model: dict[str, float] = field(default_factory=dict)

    def lr_for(self, model: str) -> float | None:
        """The [lr_by_model] lr of the longest name prefix of `model`; None when none matches."""
        matches = [prefix for prefix in self.lr_by_model if model.startswith(prefix)]
        return self.lr_by_model[max(matches, key=len)] if matches else None

    def train_kwargs(self, role: str, model: str | None = None) -> dict:
        """Keywords of kdviz.train for `role` ("teacher" or "student") training `model` (default: the
        recipe's): model, model_kwargs, objective and the TrainConfig fields, lr by [lr_by_model].

        Another model than the recipe's gets no model_kwargs: they are the recipe model's own arguments."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        part: Role = getattr(self, role)
        model = model or part.model
        settings = copy.deepcopy(self.train)
        lr = self.lr_for(model)
        if lr is not None:
            settings["lr"] = lr
        model_kwargs = dict(part.model_kwargs) if model == part.model else {}
        return {"model": model, "model_kwargs": model_kwargs, "objective": copy.deepcopy(part.loss), **settings}


def _bundled() -> dict[str, Traversable]:
    return {f.name.removesuffix(".toml"): f for f in resources.files(__name__).iterdir() if f.name.endswith(".toml")}


def recipe_names() -> list[str]:
    """The recipes that ship with kdviz."""
    return sorted(_bundled())


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A bundled recipe by name (see recipe_names()), or a .toml file by path, checked in full."""
    bundled = _bundled()
    if str(name_or_path) in bundled:
        name, file = str(name_or_path), bundled[str(name_or_path)]
    elif Path(name_or_path).is_file():
        name, file = Path(name_or_path).stem, Path(name_or_path)
    elif Path(name_or_path).suffix == ".toml":
        raise FileNotFoundError(f"no recipe file at {name_or_path}; check the path, or use a named recipe ({', '.join(sorted(bundled))})")
    else:
        raise unknown_name("recipe", str(name_or_path), bundled, ", or the path of a .toml file")
    source = str(file)
    try:
        return _parse(tomllib.loads(file.read_text(encoding="utf-8")), name, source)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"recipe {source} is not valid TOML: {e}") from None
    except (ValueError, TypeError) as e:  # UnknownNameError included: every message names the file
        raise type(e)(f"recipe {source}: {e}") from None


def _parse(raw: dict, name: str, source: str) -> Recipe:
    check_keywords("the top level", raw, list(_TOP_LEVEL))
    data = _table(raw, "data", required=True)
    check_keywords("[data]", data, list(_DATA_KEYS))
    dataset = _required(data, "data", "dataset")
    DATASETS.get(dataset)
    n_train = data.get("n_train")
    if n_train is not None and not (_is_int(n_train) and n_train >= 1):
        raise ValueError(f"[data] n_train must be a whole number >= 1, got {n_train!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise TypeError(f"description must be a string, got {description!r}")
    train = _train_settings(_table(raw, "train"))
    lr_by_model = _lr_by_model(_table(raw, "lr_by_model"), train)
    teacher, student = (_role(_table(raw, role, required=True), role) for role in ROLES)
    return Recipe(name, source, description, dataset, n_train, train, teacher, student, lr_by_model)


def _table(raw: dict, key: str, required: bool = False, name: str | None = None) -> dict:
    """raw[key], a TOML table; `name` is its dotted name in the file, for messages."""
    name = name or key
    if key not in raw and not required:
        return {}
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"needs a table [{name}]" if value is None else f"{name} must be a table, got {value!r}")
    return value


def _required(table: dict, table_name: str, key: str):
    if key not in table:
        raise ValueError(f"[{table_name}] needs {key!r}")
    return table[key]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(value, default) -> bool:
    """Whether a TOML value has the type of a TrainConfig field with this default (TOML's types are
    strict, so `lr = "0.05"` is a mistake worth naming, not a string to convert)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return _is_int(value)
    if isinstance(default, tuple):
        return isinstance(value, list) and all(_is_int(v) for v in value)
    return isinstance(value, type(default))


def _train_settings(train: dict) -> dict:
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    check_keywords("[train]", train, list(defaults))
    for key, value in train.items():
        if not _fits(value, defaults[key]):
            raise TypeError(f"[train] {key} must be like {defaults[key]!r} ({type(defaults[key]).__name__}), got {value!r}")
    TrainConfig(**train)  # its range checks
    return train


def _lr_by_model(table: dict, train: dict) -> dict[str, float]:
    for prefix, lr in table.items():
        if not any(name.startswith(prefix) for name in MODELS.names()):
            raise ValueError(f"[lr_by_model] {prefix!r} is the start of no model name; models: {', '.join(MODELS.names())}")
        if not _fits(lr, 0.0):
            raise TypeError(f"[lr_by_model] {prefix} must be a number, got {lr!r}")
        TrainConfig(**{**train, "lr": lr})
    return dict(table)


def _role(table: dict, role: str) -> Role:
    check_keywords(f"[{role}]", table, list(_ROLE_KEYS))
    model, loss = _required(table, role, "model"), _required(table, role, "loss")
    MODELS.get(model)
    model_kwargs = _table(table, "model_kwargs", name=f"{role}.model_kwargs")
    if isinstance(loss, str):
        Objective.parse(loss)
    elif isinstance(loss, dict):
        Objective(loss)
    else:
        raise TypeError(f"[{role}] loss must be a preset, a 'ce=0.1,kd=0.9' string or a table, got {loss!r}")
    return Role(model, loss, model_kwargs)


__all__ = ["ROLES", "Recipe", "Role", "load_recipe", "recipe_names"]
