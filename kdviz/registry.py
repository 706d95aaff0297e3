"""A name -> factory table, so that datasets, models and loss terms are chosen by name.

A new entry is one decorated function; an unknown name raises an error that suggests the nearest
valid name and lists them all, which is what a notebook user needs after a typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable)


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the valid name closest to `name` (difflib), or '' when none is close."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: object, valid: Iterable[str], extra: str = "") -> UnknownNameError:
    """The error for a name that is not one of `valid`: all of them, then the nearest one."""
    valid = sorted(valid)
    return UnknownNameError(
        f"unknown {kind} {name!r}; valid choices: {', '.join(valid)}{extra}{did_you_mean(str(name), valid)}"
    )


def check_keywords(what: str, given: dict, valid: list[str]) -> None:
    """TypeError listing the valid keywords when `given` has others: typos in a notebook cell's
    settings fail loudly instead of being ignored."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        hints = "".join(did_you_mean(name, valid) for name in unknown)
        raise TypeError(f"{what} got unknown argument(s) {unknown}; valid: {sorted(valid) or 'none'}{hints}")


class Registry(Generic[F]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> F:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
