"""A deterministic judge of instruction-following: verifiable constraints scored by code.

Each prompt of the text game's ``gold`` profile carries constraints, ``[[name, value], ...]``
(``[["keyword", "owl"], ["max_words", 15]]``), stated in its text. :data:`CONSTRAINTS` maps
each name to its checker, a pure function ``(response, value) -> float`` in ``[0, 1]``;
:class:`ConstraintJudge` scores a response by the weighted mean of its prompt's checkers;
:func:`guarded` multiplies a score by a fluency guard on an LM's NLL;
:func:`load_constrained_prompts` reads a prompt file with constraints
(``fpo_envs/lm/data/gold_prompts.jsonl``, written by ``scripts/make_gold_prompts.py``).

Conventions every checker shares:

- **Words** are the matches of :data:`WORD_PATTERN`, ``[^\\W_]+(?:['’][^\\W_]+)*``: maximal runs
  of Unicode letters and digits, joined across an apostrophe inside them (``don't`` and
  ``Earth’s`` are one word each). Everything else separates words and is not a word:
  punctuation, whitespace, underscores, symbols, so ``hard-boil`` is two words and ``3.5`` is
  two (``3``, ``5``), and ``**Owl**,`` is the word ``Owl``.
- **Case** is folded with :meth:`str.casefold` wherever a checker compares text.
- A checker never raises on any response (empty, whitespace, markdown); it raises on a
  value of the wrong type (``TypeError``) or out of range (``ValueError``), as
  :func:`check_constraint` does.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import types
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path

WORD_PATTERN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
"""What a word is: a maximal run of letters and digits, apostrophes inside it allowed."""

LIST_ITEM_PATTERN = re.compile(r"^[ \t]*(?:[-*•]|\d+[.)])[ \t]+\S", re.MULTILINE)
"""A list item: a line whose first non-blank characters are a marker (``-``, ``*``, ``•``, or a
number followed by ``.`` or ``)``), then at least one space or tab, then some text."""


def words(text: str) -> list[str]:
    """The words of ``text`` (:data:`WORD_PATTERN`), in order, as written (not case-folded)."""
    return WORD_PATTERN.findall(text)


# Values ---------------------------------------------------------------------------------------
def _word_value(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} takes a single word (a str), got {value!r}")
    if WORD_PATTERN.fullmatch(value) is None:
        raise ValueError(f"{name} takes a single word (letters and digits, as the checker reads words), got {value!r}")
    return value


def _count_value(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} takes a whole number (an int), got {value!r}")
    if value < 1:
        raise ValueError(f"{name} takes a whole number of at least 1, got {value!r}")
    return int(value)


def _char_value(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} takes a single character (a str of length 1), got {value!r}")
    if len(value) != 1 or value.isspace():
        raise ValueError(f"{name} takes a single character that is not whitespace, got {value!r}")
    return value


def _phrase_value(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} takes a phrase (a str), got {value!r}")
    if not words(value):
        raise ValueError(f"{name} takes a phrase with at least one word, got {value!r}")
    return value


def _strip_end(text: str) -> str:
    """``text`` without its trailing whitespace and punctuation (Unicode categories ``P*``:
    ``.``, ``!``, ``?``, quotes, closing brackets, ...)."""
    end = len(text)
    while end and (text[end - 1].isspace() or unicodedata.category(text[end - 1]).startswith("P")):
        end -= 1
    return text[:end]


# Checkers -------------------------------------------------------------------------------------
def keyword(response: str, value: str) -> float:
    """1 if the word ``value`` is one of the response's words, compared case-folded, else 0.

    A whole word only: ``owl`` is found in ``"An owl."`` and ``"OWL-like"`` (``-`` separates
    words) but not in ``"owls"`` or ``"bowl"``.
    """
    target = _word_value("keyword", value).casefold()
    return float(any(w.casefold() == target for w in words(response)))


def max_words(response: str, value: int) -> float:
    """1 if the response has at most ``value`` words; above, partial credit falling linearly
    to 0 at twice the limit: ``max(0, 1 - (w - n) / n)`` for ``w`` words and limit ``n``
    (``n = 10``: 12 words score 0.8, 20 or more score 0)."""
    n = _count_value("max_words", value)
    w = len(words(response))
    return 1.0 if w <= n else max(0.0, 1.0 - (w - n) / n)


def min_words(response: str, value: int) -> float:
    """1 if the response has at least ``value`` words; below, partial credit ``w / n`` for
    ``w`` words and minimum ``n`` (an empty response scores 0)."""
    n = _count_value("min_words", value)
    return min(1.0, len(words(response)) / n)


def list_items(response: str, value: int) -> float:
    """How close the response comes to a list of exactly ``value`` items:
    ``max(0, 1 - |k - n| / n)`` for ``k`` item lines and ``n`` asked (``n = 3``: 3 items
    score 1, 2 or 4 score 2/3, none score 0).

    An item line is one that :data:`LIST_ITEM_PATTERN` matches: after any leading spaces, a
    marker ``-``, ``*``, ``•``, or a number with ``.`` or ``)`` (``1.``, ``2)``), then a space
    or tab, then text. Other lines (an introduction, a closing sentence) are allowed and not
    counted; ``**bold**``, ``-5 degrees`` and ``1.5 cups`` are not items (no space after
    the marker).
    """
    n = _count_value("list_items", value)
    k = len(LIST_ITEM_PATTERN.findall(response))
    return max(0.0, 1.0 - abs(k - n) / n)


def avoid_char(response: str, value: str) -> float:
    """1 if the character ``value`` does not occur in the response, compared case-folded
    (avoiding ``z`` forbids ``Z`` too), else 0."""
    char = _char_value("avoid_char", value).casefold()
    return float(char not in response.casefold())


def end_phrase(response: str, value: str) -> float:
    """1 if the response ends with the phrase ``value``, else 0.

    Both are compared case-folded, with runs of whitespace read as one space and trailing
    whitespace and punctuation (Unicode ``P*``: ``.!?``, quotes, brackets) removed from each,
    so ``"That is all."`` is met by ``"... that is ALL!"``. The phrase must start a word: the
    character before it, if any, is not a letter or digit (``"what is all"`` does not end with
    ``"hat is all"``).
    """
    phrase = " ".join(_strip_end(_phrase_value("end_phrase", value)).casefold().split())
    text = " ".join(_strip_end(response).casefold().split())
    if not text.endswith(phrase):
        return 0.0
    before = text[: len(text) - len(phrase)]
    return float(not before or not before[-1].isalnum())


def start_word(response: str, value: str) -> float:
    """1 if the response's first word is ``value``, compared case-folded, else 0 (an empty
    response has none). Whatever precedes the first word is ignored: ``"**Sure**, ..."`` and
    ``"- Sure"`` start with ``Sure``."""
    target = _word_value("start_word", value).casefold()
    match = WORD_PATTERN.search(response)
    return float(match is not None and match.group().casefold() == target)


CONSTRAINTS: Mapping[str, Callable[[str, object], float]] = types.MappingProxyType(
    {
        "keyword": keyword,
        "max_words": max_words,
        "min_words": min_words,
        "list_items": list_items,
        "avoid_char": avoid_char,
        "end_phrase": end_phrase,
        "start_word": start_word,
    }
)
"""Every constraint the judge knows: name -> checker ``(response, value) -> float`` in ``[0, 1]``."""

_VALUES = {
    "keyword": _word_value,
    "max_words": _count_value,
    "min_words": _count_value,
    "list_items": _count_value,
    "avoid_char": _char_value,
    "end_phrase": _phrase_value,
    "start_word": _word_value,
}


def check_constraint(constraint) -> tuple[str, object]:
    """``(name, value)`` of one constraint ``[name, value]``, checked.

    Raises:
        TypeError: not a ``[name, value]`` pair, or a value of the wrong type for its checker.
        ValueError: an unknown name (the message lists the known ones), or a value out of range.
    """
    if isinstance(constraint, (str, bytes)) or not isinstance(constraint, (list, tuple)) or len(constraint) != 2:
        raise TypeError(f"a constraint is a [name, value] pair, e.g. ['keyword', 'owl'], got {constraint!r}")
    name, value = constraint
    if name not in CONSTRAINTS:
        raise ValueError(f"unknown constraint {name!r}: the known ones are {', '.join(CONSTRAINTS)}")
    _VALUES[name](name, value)
    return name, value


def check_constraints(constraints) -> list[tuple[str, object]]:
    """The ``(name, value)`` pairs of a prompt's constraints, each checked (:func:`check_constraint`).

    Raises:
        ValueError: no constraints (``[]``); and :func:`check_constraint`'s errors.
    """
    if isinstance(constraints, (str, bytes, Mapping)) or not isinstance(constraints, (list, tuple)):
        raise TypeError(f"constraints are a list of [name, value] pairs, got {constraints!r}")
    if not constraints:
        raise ValueError(
            "prompts without constraints under a constraint judge: every prompt needs at least one "
            "[name, value] constraint (or use the likelihood judge)"
        )
    return [check_constraint(c) for c in constraints]


class ConstraintJudge:
    """Scores a response by the verifiable constraints of its prompt.

    ``score(response, constraints) = prod_{j in G} c_j * sum_{i not in G} w(name_i) c_i /
    sum_{i not in G} w(name_i)``, ``c_i`` the checker value of constraint ``i``
    (:data:`CONSTRAINTS`), ``w`` its name's weight and ``G`` the prompt's constraints whose
    name is a *gate*: the weighted mean of the others, times the gates' values, in ``[0, 1]``
    (a prompt with gates only scores their product). Deterministic, with no model.

    A gate is a floor the rest cannot buy back. ``min_words`` is one by default: without it a
    bare keyword (``"Owl."``) meets both a keyword and a word limit, the hole a policy trained on
    this judge found first; with it, that answer keeps ``1 / n`` of its score under an
    ``n``-word minimum.

    Args:
        weights: optional ``{name: weight}``, each finite and ``>= 0``; names left out weigh 1
            (``None``: every constraint weighs 1, the plain mean). A gate's weight is not used.
        gates: the constraint names that multiply instead of averaging (default
            ``("min_words",)``; ``()``: the plain weighted mean of every constraint).

    Example:
        >>> judge = ConstraintJudge()
        >>> judge.score("An owl hoots at night.", [["keyword", "owl"], ["max_words", 4]])
        0.875
        >>> judge.score("Owl.", [["keyword", "owl"], ["min_words", 4]])
        0.25
    """

    utility_range = (0.0, 1.0)
    """The bounds of :meth:`score`."""

    def __init__(self, weights: Mapping[str, float] | None = None, gates=("min_words",)):
        if isinstance(gates, (str, bytes)) or not isinstance(gates, (list, tuple, set, frozenset)):
            raise TypeError(f"gates are a sequence of constraint names, e.g. ('min_words',), got {gates!r}")
        for name in gates:
            if name not in CONSTRAINTS:
                raise ValueError(f"gates name an unknown constraint {name!r}: the known ones are {', '.join(CONSTRAINTS)}")
        self.gates = frozenset(gates)
        """The constraint names whose values multiply the score."""
        weights = {} if weights is None else weights
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights are a mapping {{constraint name: weight}}, got {weights!r}")
        for name, w in weights.items():
            if name not in CONSTRAINTS:
                raise ValueError(f"weights name an unknown constraint {name!r}: the known ones are {', '.join(CONSTRAINTS)}")
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
                raise ValueError(f"the weight of {name!r} must be a finite number >= 0, got {w!r}")
        self.weights = types.MappingProxyType({name: float(weights.get(name, 1.0)) for name in CONSTRAINTS})
        """The weight of every constraint name (1 unless given)."""

    def score(self, response: str, constraints) -> float:
        """The weighted mean of the checker values of ``constraints`` on ``response``, in ``[0, 1]``.

        Args:
            response: the text judged.
            constraints: the prompt's ``[[name, value], ...]`` (at least one).

        Raises:
            TypeError: a non-string response, or :func:`check_constraints`'s type errors.
            ValueError: :func:`check_constraints`'s errors, or constraints whose weights are all 0.
        """
        if not isinstance(response, str):
            raise TypeError(f"the response must be a str, got {type(response).__name__}")
        pairs = check_constraints(constraints)
        gate = 1.0
        for name, value in pairs:
            if name in self.gates:
                gate *= CONSTRAINTS[name](response, value)
        rest = [(name, value) for name, value in pairs if name not in self.gates]
        if not rest:
            return gate
        total = sum(self.weights[name] for name, _ in rest)
        if total == 0:
            raise ValueError(f"every constraint of {rest!r} has weight 0: give one of them a positive weight")
        return gate * sum(self.weights[name] * CONSTRAINTS[name](response, value) for name, value in rest) / total

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.weights.items() if v != 1.0}
        args = [f"weights={changed}"] if changed else []
        if self.gates != {"min_words"}:
            args.append(f"gates={tuple(sorted(self.gates))}")
        return f"ConstraintJudge({', '.join(args)})"


def guarded(score: float, nll: float, floor: float, width: float) -> float:
    """``score * g``, a fluency guard ``g = clip(1 - (nll - floor) / width, 0, 1)``.

    ``nll`` is a frozen LM's mean negative log-likelihood per token of the response (nats):
    ``g`` is 1 up to ``floor`` and falls linearly to 0 at ``floor + width``, so text the LM
    finds gibberish earns nothing however many constraints it meets. The LM serves only as
    this floor, never as a reward to climb.

    Args:
        score: a judge's score in ``[0, 1]``.
        nll: the mean NLL per token; ``+inf`` gives ``g = 0``.
        floor: the NLL up to which the score is kept whole (finite).
        width: the NLL span over which it falls to 0 (finite, > 0).

    Raises:
        ValueError: any argument outside those ranges, or NaN.
    """
    for name, value in (("score", score), ("nll", nll), ("floor", floor), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must lie in [0, 1] (a judge's score), got {score!r}")
    if not math.isfinite(floor):
        raise ValueError(f"floor must be a finite NLL (nats per token), got {floor!r}")
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0 (nats per token), got {width!r}")
    g = min(1.0, max(0.0, 1.0 - (nll - floor) / width))
    return float(score * g)


def load_constrained_prompts(path: str | Path | None = None, split: str = "train") -> list[tuple[str, list]]:
    """``(prompt, constraints)`` for every row of a constrained prompt file in ``split``.

    The file is JSON lines, one object per line: ``prompt`` (text), ``constraints``
    (``[[name, value], ...]``, at least one, each checked by :func:`check_constraint`) and an
    optional ``split`` (``train`` or ``eval``; a row without one serves both). Blank lines
    are skipped; prompts are stripped, as :func:`fpo_envs.lm.prompts.load_prompts` strips them,
    and come in file order.

    Args:
        path: the file; ``None``: the package's ``fpo_envs/lm/data/gold_prompts.jsonl``.
        split: ``train`` or ``eval``.

    Returns:
        A list of ``(prompt, [(name, value), ...])``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a line that is not a JSON object, lacks a prompt or constraints, has a bad
            constraint or split (the message names the line), the same prompt twice with
            different constraints, or no prompt in ``split``.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if path is None:
        from fpo_envs.lm.prompts import GOLD

        path = GOLD
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no constrained prompt file at {path} (the built-in one is written by scripts/make_gold_prompts.py)"
        )
    rows, seen = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err})") from err
        if not isinstance(row, dict):
            raise ValueError(f"{where}: each line must be a JSON object with 'prompt' and 'constraints'")
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{where}: needs a non-empty 'prompt' string")
        if "constraints" not in row:
            raise ValueError(f"{where}: has no 'constraints' (a constraint judge needs [[name, value], ...] on every prompt)")
        try:
            constraints = check_constraints(row["constraints"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err
        row_split = row.get("split")
        if row_split not in (None, "", "train", "eval"):
            raise ValueError(f"{where}: split must be 'train' or 'eval' (or absent), got {row_split!r}")
        prompt = prompt.strip()
        if prompt in seen and seen[prompt][1] != constraints:
            raise ValueError(f"{where}: the prompt of line {seen[prompt][0]} again with different constraints")
        seen.setdefault(prompt, (number, constraints))
        if row_split in (None, "", split):
            rows.append((prompt, constraints))
    if not rows:
        raise ValueError(f"no {split} prompts in {path}")
    return rows
