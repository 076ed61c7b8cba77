"""Train the three learners on the text game, then evaluate them against the base model.

    python scripts/train_text.py                          # default preset, 200 rounds each
    python scripts/train_text.py --profile loop --rounds 100   # the loop profile, one seed
    python scripts/train_text.py --rounds 300 --n 8 --out results/text
    python scripts/train_text.py --resume                 # continue a killed run
    python scripts/train_text.py --set rm_lr=1e-4 --set max_new_tokens=16

Each learner trains in a fresh env, streams metrics to ``OUT/<learner>/metrics.csv`` and
``.jsonl`` (TensorBoard where installed), checkpoints every ``--checkpoint-every`` rounds
and saves its LoRA adapter to ``OUT/<learner>/adapter``. ``--resume`` picks each unfinished
learner up from its newest checkpoint. ``OUT/train_summary.md`` compares the first and
last rounds of each learner's metrics. Then greedy answers of every trained policy and of
the base model to the eval prompts are scored by the oracle: ``OUT/eval_table.md``,
``eval_table.csv``, ``eval_answers.jsonl``, ``eval.png``; ``--judge`` adds an LLM judge
(``FPO_JUDGE_BASE_URL``, ``FPO_JUDGE_MODEL``, ``FPO_JUDGE_API_KEY``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
from scripts_common import parse_overrides

import agents
import fpo_envs  # noqa: F401
from agents.families.text import TextLeader
from agents.tools.text_eval import evaluate, training_summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smollm2")
    parser.add_argument("--profile", default="paper", help="text-game profile (paper, loop)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="preset field override")
    parser.add_argument("--learners", nargs="+", default=list(agents.NAMES), choices=agents.NAMES)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--n", type=int, default=None, help="candidates per round (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", type=Path, default=Path("results/text"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--judge", action="store_true", help="also ask an LLM judge (see agents.tools.text_eval.llm_judge)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    learner_config = {k: overrides[k] for k in ("max_new_tokens", "min_new_tokens", "top_p", "temperature") if k in overrides}

    def make_env(split="train"):
        return gym.make("FPO/TextRM-v0", preset=args.preset, profile=args.profile, split=split, **overrides)

    for name in args.learners:
        run_dir = args.out / name
        if (run_dir / "done.json").exists() and args.resume:
            print(f"{name}: finished earlier, skipped")
            continue
        env = make_env()
        if args.resume and TextLeader.checkpoints(run_dir):
            agent = TextLeader.resume(run_dir, env)
            print(f"{name}: resumed at round {agent.num_rounds}")
        else:
            agent = agents.make(
                name,
                env,
                seed=args.seed,
                **({} if args.n is None else {"n_candidates": args.n}),
                run_dir=str(run_dir),
                checkpoint_every=args.checkpoint_every,
                **learner_config,
            )
        start = time.perf_counter()
        agent.learn(max(args.rounds - agent.num_rounds, 0), progress_bar=True)
        agent.save_adapter(run_dir / "adapter")
        (run_dir / "done.json").write_text(
            json.dumps({"rounds": agent.num_rounds, "seconds_this_run": time.perf_counter() - start})
        )
        del agent, env
    summary = training_summary({name: args.out / name for name in args.learners})
    (args.out / "train_summary.md").write_text(summary)
    print(summary)
    if not args.no_eval:
        policies = {"base": None, **{name: args.out / name / "adapter" for name in args.learners}}
        rows = evaluate(
            lambda: make_env("eval"), policies, args.out, judge=args.judge, max_new_tokens=overrides.get("eval_max_new_tokens")
        )
        print((args.out / "eval_table.md").read_text())
        del rows


if __name__ == "__main__":
    main()
