"""Write the text game's constrained prompts, ``fpo_envs/lm/data/gold_prompts.jsonl``.

Each built-in prompt (``fpo_envs/lm/data/prompts.jsonl``, its ``id`` and ``split`` kept)
gets one sentence appended that states three verifiable constraints, checked by
:mod:`fpo_envs.models.judge`: one on the content, one on the form, and a floor of
:data:`MIN_WORDS` words (``min_words``, a gate of the judge: it multiplies the other two's
mean, so a bare keyword, which meets a keyword and a word limit, does not pass).

- Content: ``list_items`` on :data:`LIST_SHARE` of the prompts where a list fits (3 for an
  instruction that asks for three things, "Name three ...", 2 to 4 for the adversarial
  questions: reasons or points), ``keyword`` on all the others: a colour or an animal
  (:data:`KEYWORDS`) that is not already a word of the prompt.
- Form: :data:`FORM_SHARES` of the prompts: ``max_words`` (10 to 20), ``start_word``
  (:data:`START_WORDS`) or ``end_phrase`` (:data:`END_PHRASES`).

The shares hold exactly within each split (largest-remainder rounding; which prompts get
which is a seeded shuffle). The first word and the last phrase are kept rare because
SmolLM2-135M almost never meets them (of 8 samples on each of 12 prompts carrying one of
them, 32 new tokens, none did), while the keyword, the word limit and the list leave
it room to climb. The floor is low enough for the game's short answers (24 new tokens are
about 18 words). ``avoid_char`` is left out: a letter to avoid is either trivially met
(``z``, ``q``) or unreasonable (``e``). The sentence states exactly what the checker checks. Every
draw comes from one ``random.Random(seed)``: the same seed and source write the same bytes.

Usage: ``python scripts/make_gold_prompts.py [--out PATH] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from fpo_envs.lm.prompts import BUILTIN, GOLD
from fpo_envs.models.judge import ConstraintJudge, check_constraints, words

KEYWORDS = ("green", "purple", "silver", "yellow", "tiger", "owl", "rabbit", "dolphin", "penguin", "fox")
"""Keywords related to none of the prompts in particular: colours and animals."""
END_PHRASES = ("That is all.", "Hope this helps.", "Thanks for asking.")
START_WORDS = ("Sure", "Well", "Okay")
ORDER = ("start_word", "keyword", "min_words", "max_words", "list_items", "end_phrase")
"""The order in which a sentence states its constraints (the start first, the end last)."""
LIST_SHARE = 0.4
"""The share of the prompts where a list fits whose content constraint is ``list_items``."""
FORM_SHARES = {"max_words": 0.6, "start_word": 0.2, "end_phrase": 0.2}
"""The share of the prompts of each form constraint."""
MAX_WORDS = (10, 20)
"""The range of the word limit (both ends included)."""
MIN_WORDS = 8
"""The floor every prompt states: at least this many words."""
ASKS_FOR_THREE = re.compile(r"\bthree\b", re.IGNORECASE)


def _phrase(name: str, value) -> str:
    return {
        "start_word": f'start your answer with the word "{value}"',
        "keyword": f'use the word "{value}"',
        "min_words": f"answer in at least {value} words",
        "max_words": f"answer in at most {value} words",
        "list_items": f'give a list of exactly {value} items (one per line, each starting with "-")',
        "end_phrase": f'end your answer with "{value}"',
    }[name]


def sentence(constraints: list) -> str:
    """The sentence stating ``constraints`` (in :data:`ORDER`), capitalised, with a final
    period unless it ends on a quotation that has its own."""
    ordered = sorted(constraints, key=lambda c: ORDER.index(c[0]))
    values = dict(ordered)
    phrases = []
    for n, v in ordered:
        if n == "min_words" and "max_words" in values:
            continue  # stated with the limit, as one range
        if n == "max_words" and "min_words" in values:
            phrases.append(f"answer in {values['min_words']} to {v} words")
        else:
            phrases.append(_phrase(n, v))
    text = phrases[-1] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    text = text[0].upper() + text[1:]
    return text if re.search(r'[.!?]"$', text) else text + "."


def _deck(shares: dict, n: int, rng: random.Random) -> list[str]:
    """``n`` names in ``shares`` (largest-remainder rounding), shuffled by ``rng``."""
    exact = {k: v * n for k, v in shares.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[: n - sum(counts.values())]:
        counts[k] += 1
    deck = [k for k in shares for _ in range(counts[k])]
    rng.shuffle(deck)
    return deck


def fits_list(row: dict) -> bool:
    """Whether a list answers the built-in ``row``: an adversarial question, or an
    instruction asking for three things."""
    return row["kind"] == "adversarial" or (row["kind"] == "instruction" and bool(ASKS_FOR_THREE.search(row["prompt"])))


def draw_value(name: str, row: dict, rng: random.Random):
    """The value of constraint ``name`` for the built-in ``row``, drawn from ``rng``."""
    if name == "keyword":
        prompt_words = {w.casefold() for w in words(row["prompt"])}
        return rng.choice([k for k in KEYWORDS if k not in prompt_words])
    if name == "list_items":
        return 3 if row["kind"] == "instruction" else rng.randint(2, 4)
    if name == "max_words":
        return rng.randint(*MAX_WORDS)
    if name == "min_words":
        return MIN_WORDS
    return rng.choice(START_WORDS if name == "start_word" else END_PHRASES)


def build(source: Path, seed: int) -> list[dict]:
    """The constrained rows of the built-in prompt file ``source``, in its order."""
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    content, form = {}, {}
    for split in ("train", "eval"):
        ids = [r["id"] for r in rows if r["split"] == split]
        listable = [r["id"] for r in rows if r["split"] == split and fits_list(r)]
        content.update(zip(listable, _deck({"list_items": LIST_SHARE, "keyword": 1 - LIST_SHARE}, len(listable), rng)))
        form.update(zip(ids, _deck(FORM_SHARES, len(ids), rng)))
    out = []
    for row in rows:
        chosen = sorted((content.get(row["id"], "keyword"), "min_words", form[row["id"]]), key=ORDER.index)
        constraints = [[name, draw_value(name, row, rng)] for name in chosen]
        check_constraints(constraints)
        out.append(
            {
                "id": row["id"],
                "prompt": f"{row['prompt'].strip()} {sentence(constraints)}",
                "constraints": constraints,
                "split": row["split"],
            }
        )
    return out


def write(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    out.write_text(text, encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLD, help="where to write (default: the package's file)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the constraints drawn (default 0)")
    args = parser.parse_args(argv)
    rows = build(BUILTIN, args.seed)
    write(rows, args.out)
    judge = ConstraintJudge()  # every constraint written must be one the judge reads
    for r in rows:
        judge.score("", r["constraints"])
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "eval")}
    print(f"wrote {len(rows)} prompts ({counts['train']} train, {counts['eval']} eval) to {args.out}")


if __name__ == "__main__":
    main()
