"""Public names that load on first use (PEP 562), so that importing a package costs nothing until a
name of it is used: `kdviz --help` answers without importing torch, and a notebook's
`import kdviz as kd` loads torch with its first `kd.` call, not before.

Each lazily loaded package writes `__getattr__, __dir__ = lazy_exports(__name__, {...})`; the
names it lists stay its public API (in `__all__`), and a name, once loaded, is an ordinary
attribute of the package.
"""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str]):
    """(__getattr__, __dir__) for `package`, whose public name N is the attribute N of its module
    exports[N] (relative to the package, e.g. "plots" or "train.loop")."""

    def __getattr__(name: str):
        if name not in exports:
            # An AttributeError (not another error) lets `from package import submodule` import it.
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
