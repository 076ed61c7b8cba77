"""Prompt sets for the text game: the built-in set, local files, Hugging Face datasets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

BUILTIN = Path(__file__).parent / "data" / "prompts.jsonl"
"""180 instructions and questions written for this project (80 instructions, 50 factual,
50 adversarial in the style of TruthfulQA) with a fixed split: every fifth of each kind is
``eval`` (36), the rest ``train`` (144)."""
GOLD = Path(__file__).parent / "data" / "gold_prompts.jsonl"
"""The built-in instructions with verifiable constraints appended (``constraints`` per row,
the same split): the prompts of the text game's ``gold`` profile, written by
``scripts/make_gold_prompts.py``."""


def load_prompts(source: str, split: str) -> list[str]:
    """The prompts of ``source`` for ``split`` (``train`` or ``eval``).

    Args:
        source: ``builtin``; ``gold`` (:data:`GOLD`); a local ``.jsonl`` (a ``prompt`` field, optional ``split``) or
            ``.csv`` (a ``prompt`` column, optional ``split``) file, whose rows without a split
            serve both; or ``hf:NAME[:CONFIG]:SPLIT:COLUMN`` for a Hugging Face dataset (needs
            ``pip install datasets`` and a reachable hub).
        split: which split of the built-in set or of a file with a ``split`` field.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if source.startswith("hf:"):
        prompts = _load_hf(source)
    else:
        path = {"builtin": BUILTIN, "gold": GOLD}.get(source) or Path(source)
        if not path.exists():
            raise FileNotFoundError(f"prompt file {path} does not exist (use 'builtin', a .jsonl/.csv file or hf:...)")
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        elif path.suffix == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
        else:
            raise ValueError(f"prompt files must be .jsonl or .csv, got {path}")
        if rows and "prompt" not in rows[0]:
            raise ValueError(f"{path}: every row needs a 'prompt' field")
        prompts = [r["prompt"] for r in rows if r.get("split") in (None, "", split)]
    prompts = [p.strip() for p in prompts if p and p.strip()]
    if not prompts:
        raise ValueError(f"no {split} prompts in {source!r}")
    return prompts


def _load_hf(source: str) -> list[str]:
    parts = source[len("hf:") :].split(":")
    if len(parts) == 3:
        name, config, (split, column) = parts[0], None, parts[1:]
    elif len(parts) == 4:
        name, config, split, column = parts
    else:
        raise ValueError(f"expected hf:NAME[:CONFIG]:SPLIT:COLUMN, got {source!r}")
    try:
        import datasets
    except ImportError as err:
        from gymnasium.error import DependencyNotInstalled

        raise DependencyNotInstalled(f"{source} needs the datasets package: pip install datasets") from err
    try:
        data = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the hub being unreachable surfaces as many error types
        raise OSError(
            f"could not load the dataset {name!r} from the Hugging Face hub ({err.__class__.__name__}: {err}); "
            "the hub is unreachable from here: use prompts 'builtin' or a local .jsonl/.csv file"
        ) from err
    return [str(x) for x in data[column]]
