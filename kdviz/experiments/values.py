"""Typed reading of an experiment file's TOML values, each check naming the value and what it
must be: TOML's types are strict, so `lr = "0.05"` is a mistake worth naming, not a string to
convert. kdviz.experiments.load builds an Experiment with them."""

from __future__ import annotations

from dataclasses import fields

from ..registry import check_keywords
from ..train import TrainConfig


def table(raw: dict, key: str, required: bool = False, name: str | None = None) -> dict:
    """raw[key], a TOML table; `name` is its dotted name in the file, for messages."""
    name = name or key
    if key not in raw and not required:
        return {}
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"needs a table [{name}]" if value is None else f"{name} must be a table, got {value!r}")
    return value


def list_of_tables(value) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"arms must be a list of [[arms]] tables, got {value!r}")
    return value


def required(table: dict, where: str, key: str):
    if key not in table:
        raise ValueError(f"{where} needs {key!r}")
    return table[key]


def folder_name(value, what: str) -> str:
    """A name that becomes a folder (an experiment's output, an arm's runs): a non-empty string
    that is one path component."""
    if not (isinstance(value, str) and value.strip() and value not in (".", "..")) or any(c in value for c in "/\\\0"):
        raise ValueError(f"{what} must be a non-empty string without / or \\ (it names a folder), got {value!r}")
    return value


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(value, what: str) -> float:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    return float(value)


def seed_list(value, what: str) -> tuple[int, ...]:
    if not (isinstance(value, list) and value and all(is_int(s) and s >= 0 for s in value)):
        raise ValueError(f"{what} must be a non-empty list of whole numbers >= 0, got {value!r}")
    return tuple(value)


def fits(value, default) -> bool:
    """Whether a TOML value has the type of a TrainConfig field with this default (TOML's types are
    strict, so `lr = "0.05"` is a mistake worth naming, not a string to convert)."""
    if isinstance(default, bool) or default is None:  # None: a true/false setting kdviz decides when unset
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return is_int(value)
    if isinstance(default, tuple):
        return isinstance(value, list) and all(is_int(v) for v in value)
    return isinstance(value, type(default))


def train_settings(where: str, table: dict, base: dict, extra_keys: tuple[str, ...] = ()) -> dict:
    """The TrainConfig fields of `table` (keys in `extra_keys` left out), checked for names,
    types and, on top of `base`, TrainConfig's own ranges."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    check_keywords(where, table, [*extra_keys, *defaults])
    settings = {k: v for k, v in table.items() if k not in extra_keys}
    for key, value in settings.items():
        if not fits(value, defaults[key]):
            like = (
                "true or false" if defaults[key] is None else f"like {defaults[key]!r} ({type(defaults[key]).__name__})"
            )
            raise TypeError(f"{where} {key} must be {like}, got {value!r}")
    TrainConfig(**{**base, **settings})  # its range checks
    return settings
