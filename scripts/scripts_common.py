"""Helpers shared by the entry points in this folder."""

from __future__ import annotations

import ast


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs (``--set`` arguments); values are Python literals where they parse, else strings."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set needs key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out
