"""Numerical pieces every game shares."""

from __future__ import annotations

from typing import Any

import numpy as np


def sigmoid(x: Any) -> Any:
    """The logistic function of a float, numpy array or torch tensor (same type out)."""
    if isinstance(x, (np.ndarray, float, int, np.floating)):
        return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))
    return x.sigmoid()
