"""The model table: name -> factory `(num_classes, image_shape, **kwargs) -> nn.Module`.

It lives apart from the package's `__init__`, so that the modules of the zoo can register into it
without importing the package that imports them.
"""

from __future__ import annotations

from ..registry import Registry

MODELS: Registry = Registry("model")
