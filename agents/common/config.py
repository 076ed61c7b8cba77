"""Checks of a learner's config, seed and round count: each error names the field and the fix."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np


class ConfigError(TypeError, ValueError):
    """A config value of the wrong type or out of range. Both a ``TypeError`` and a
    ``ValueError`` (as numpy's ``AxisError`` is both a ``ValueError`` and an ``IndexError``),
    so code catching either kind of bad argument sees it."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


_SIMPLE = {
    bool: ("True or False", lambda v: isinstance(v, (bool, np.bool_))),
    int: ("a whole number (int)", _is_int),
    float: ("a number (float)", _is_real),
    str: ("a string", lambda v: isinstance(v, str)),
}


def _field_check(hint: Any) -> tuple[str, Any] | None:
    """``(what the annotation takes, a test of a value)``; ``None`` for a type this check does
    not know (the dataclass's own checks then judge the value)."""
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        checks = [_field_check(a) for a in args if a is not type(None)]
        if any(c is None for c in checks):
            return None
        optional = type(None) in args
        text = " or ".join(c[0] for c in checks) + (" or None" if optional else "")
        return text, lambda v: (optional and v is None) or any(c[1](v) for c in checks)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _field_check(args[0])
        if item is None:
            return None
        return f"a list (each item {item[0]})", lambda v: isinstance(v, (tuple, list)) and all(map(item[1], v))
    return None


def _hints(config_cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_cls)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: the dataclass judges its values alone
        return {}


def check_fields(config_cls: type, config: Mapping[str, Any]) -> None:
    """Check each value of ``config`` against the type of its field in the dataclass
    ``config_cls``: a ``float`` field takes any real number (ints too), an ``int``
    field a whole number, a ``bool`` field only ``True``/``False``, a ``str`` field a string,
    ``X | None`` also ``None``, ``tuple[X, ...]`` a list or tuple of ``X``; other annotations
    are left to the dataclass. A :class:`ConfigError` names the field, what it takes and the
    value given (``GradientConfig.lr must be a number (float), got 'x' (str)``)."""
    hints = _hints(config_cls)
    for name, value in config.items():
        check = _field_check(hints.get(name))
        where = f"{config_cls.__name__}.{name}"
        if check is not None and not check[1](value):
            raise ConfigError(f"{where} must be {check[0]}, got {value!r} ({type(value).__name__})")


def build_config(config_cls: type, config: dict[str, Any]) -> Any:
    """Build the frozen config dataclass: an unknown key is a ``TypeError`` naming the known
    ones (and the class's ``unknown_key_hint``, where it has one); each value is checked
    against its field's type (:func:`check_fields`) before the dataclass checks its range, and a
    ``float`` field given an infinite or NaN value is a :class:`ConfigError` after them."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        hint = getattr(config_cls, "unknown_key_hint", "")  # e.g. PPO's: gamma is not stable-baselines3's discount
        raise TypeError(
            f"unknown config key(s) {unknown} for {config_cls.__name__}; known: {sorted(known)}" + (f"; {hint}" if hint else "")
        )
    check_fields(config_cls, config)
    built = config_cls(**config)
    # After the dataclass's own checks, which may say more (``gamma must be a finite number >= 0``).
    hints = _hints(config_cls)
    for name in config:
        value, hint = getattr(built, name), hints.get(name)
        if (hint is float or float in typing.get_args(hint)) and _is_real(value) and not math.isfinite(value):
            raise ConfigError(f"{config_cls.__name__}.{name} must be finite, got {value!r}")
    return built


def check_seed(seed: Any) -> None:
    """A learner's seed: ``None`` or an integer >= 0 (what numpy's generators take); a
    :class:`ConfigError` otherwise."""
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")


def check_rounds(total_rounds: Any) -> None:
    """``learn``'s argument: a whole number of rounds >= 0 (a ``TypeError`` for another type,
    a ``ValueError`` for a negative number)."""
    message = f"total_rounds must be a non-negative whole number (int), got {total_rounds!r}"
    if not _is_int(total_rounds):
        raise TypeError(message + (" (a string: convert it with int(...))" if isinstance(total_rounds, str) else ""))
    if total_rounds < 0:
        raise ValueError(message)
