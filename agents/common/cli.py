"""What the commands (``fpo-bench``, ``fpo-animate``) share: how they import a user's
module, and argument types whose errors are one argparse line (``argument --reps: must be at
least 1, got 0``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from agents.common.registration import import_module


def prepare_imports(modules: Sequence[str] = ()) -> None:
    """Put the working folder first on ``sys.path``, as ``python -m`` does, so a learner id
    ``my_algo:my-id`` finds ``my_algo.py`` there, then import each of ``modules`` (``--import``);
    a module that fails is an ``ImportError`` naming it."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module in modules:
        import_module(module, f"--import {module}")


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse
