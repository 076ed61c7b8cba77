"""Evaluate trained text-game policies against each other and the base model.

    python scripts/evaluate_text.py results/text/rlhf results/text/fpo-relaxed --out results/text
    python scripts/evaluate_text.py results/text/* --judge    # add an LLM judge

Each positional argument is a run folder holding ``adapter/`` (as ``train_text.py`` writes).
Greedy answers to the eval prompts, scored by the oracle: mean quality, answer length and
pairwise win rates, written to ``OUT/eval_table.md``, ``eval_table.csv``,
``eval_answers.jsonl`` and ``eval.png``. ``--judge`` also asks an LLM judge through any
OpenAI-compatible endpoint (``FPO_JUDGE_BASE_URL``, ``FPO_JUDGE_MODEL``,
``FPO_JUDGE_API_KEY``); nothing else needs a key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym

import fpo_envs  # noqa: F401
from agents.tools.text_eval import evaluate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with an adapter/ inside")
    parser.add_argument("--preset", default="smollm2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="preset field override")
    parser.add_argument("--out", type=Path, default=Path("results/text"))
    parser.add_argument("--judge", action="store_true")
    parser.add_argument("--no-base", action="store_true", help="leave the base model out")
    args = parser.parse_args(argv)
    from scripts_common import parse_overrides

    overrides = parse_overrides(args.set)
    policies = {} if args.no_base else {"base": None}
    for run in args.runs:
        if not (run / "adapter" / "adapter_config.json").exists():
            raise SystemExit(f"{run} has no adapter/ (train it with scripts/train_text.py)")
        policies[run.name] = run / "adapter"
    evaluate(
        lambda: gym.make("FPO/TextRM-v0", preset=args.preset, split="eval", **overrides),
        policies,
        args.out,
        judge=args.judge,
        max_new_tokens=overrides.get("eval_max_new_tokens"),
    )
    print((args.out / "eval_table.md").read_text())


if __name__ == "__main__":
    main()
