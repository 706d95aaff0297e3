"""Checks of the parameters that several loss functions (and kdviz.correlation) share."""

from __future__ import annotations

import math
import numbers


def check_tau(tau: float, name: str = "tau") -> None:
    """A temperature is a finite number > 0: tau = inf makes every softmax uniform and tau^2 * 0 NaN."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise ValueError(f"temperature {name} must be a number > 0, got {tau!r}")
    if not tau > 0:
        raise ValueError(f"temperature {name} must be > 0, got {tau!r}")
    if tau == math.inf:
        raise ValueError(f"temperature {name} must be finite, got {tau!r}")
