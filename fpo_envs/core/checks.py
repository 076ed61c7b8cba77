"""Checks of the values a game is given (actions, reset options, settings), each error naming the fix."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_finite_array(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Return ``value`` as a float64 array of ``shape``, or raise a clear ``ValueError``.

    ``value`` must hold real floating-point numbers: a float array of any width (float16,
    float32, float64), a torch float tensor, or a list of floats. Integer, bool and complex
    arrays are refused rather than cast: an integer array is refused by the float32 action
    spaces' own ``Box.contains`` (``np.can_cast(int64, float32)`` is false), a bool array is
    almost always a mask passed by mistake, and casting a complex one drops its imaginary part.
    """
    try:
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric (float) array of shape {shape}, got {value!r:.80}") from err
    if array.dtype.kind not in "biucf":
        raise ValueError(f"{name} must be a numeric (float) array of shape {shape}, got {value!r:.80}")
    if array.dtype.kind != "f":
        raise ValueError(
            f"{name} must be a float array of shape {shape}: pass np.asarray(x, dtype=np.float32); got dtype "
            f"{array.dtype} (integer, bool and complex values are refused, not cast, as Gymnasium's float32 Box.contains "
            "refuses integer arrays)"
        )
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf: {array}")
    return array


def check_bounded_array(value: Any, shape: tuple[int, ...], bound: float, name: str) -> np.ndarray:
    """:func:`check_finite_array`, and every coordinate within ``±bound`` (the action box);
    always a new array (the caller's is never kept)."""
    if isinstance(value, np.ndarray) and value.shape == shape and value.dtype.kind == "f":
        # The hot path of every step: one pass, which NaN and inf also fail.
        array = value.astype(np.float64, copy=True)
        limit = bound * (1 + 1e-6)
        if array.max(initial=0.0) <= limit and array.min(initial=0.0) >= -limit:  # NaN fails both
            return array
    array = check_finite_array(value, shape, name)
    if np.abs(array).max(initial=0.0) > bound * (1 + 1e-6):
        raise ValueError(f"{name} leaves the bounds ±{bound} of the action space (max |y| = {np.abs(array).max():.4g})")
    return array.copy() if np.shares_memory(array, value) else array


SETTING_KINDS = ("whole", "count", "positive", "non-negative", "real")
"""The kinds of a numeric game setting (:mod:`fpo_envs.core.params`): a whole number >= 1, a
whole number >= 0 (a count or a seed), or a finite real number that is > 0, >= 0, or anything.
A setting that names one of a few options is a :func:`fpo_envs.core.params.choice`."""


def check_setting(name: str, value: Any, kind: str) -> int | float:
    """Setting ``name`` as a plain ``int`` (kinds ``"whole"``, ``"count"``) or ``float`` (any
    other kind), or an error naming it.

    ``"whole"``: a whole number >= 1; ``"count"``: a whole number >= 0; ``"real"``: a finite real number; ``"positive"`` one > 0;
    ``"non-negative"`` one >= 0 (:data:`SETTING_KINDS`). A bool is not a number here.

    Raises:
        TypeError: a setting of the wrong type (``dim="50"``, ``dim=3.5``).
        ValueError: a setting out of its range.
    """
    if kind not in SETTING_KINDS:
        raise ValueError(f"unknown kind {kind!r} of setting {name}; kinds: {list(SETTING_KINDS)}")
    if kind in ("whole", "count"):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
        least = 1 if kind == "whole" else 0
        if value < least:
            raise ValueError(f"{name} must be at least {least}, got {value}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if kind == "positive" and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if kind == "non-negative" and not value >= 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return float(value)


def check_options(options: dict[str, Any] | None, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Return ``options`` (or ``{}``), raising ``ValueError`` on a key the game does not know."""
    options = {} if options is None else dict(options)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; this game accepts {sorted(allowed)}")
    return options
