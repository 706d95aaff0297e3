"""A name -> factory table, so that datasets, models and loss terms are chosen by name.

A new entry is one decorated function; an unknown name raises an error that lists the valid
choices, which is what a notebook user needs after a typo.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

F = TypeVar("F", bound=Callable)


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


def check_keywords(what: str, given: dict, valid: list[str]) -> None:
    """TypeError listing the valid keywords when `given` has others: typos in a notebook cell's
    settings fail loudly instead of being ignored."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise TypeError(f"{what} got unknown argument(s) {unknown}; valid: {sorted(valid) or 'none'}")


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
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
