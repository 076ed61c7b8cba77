"""Time one round of the text game against its floor: generating the round's N + 1 responses.

    python scripts/benchmark_text.py                    # default preset, N = 8, 32 tokens
    python scripts/benchmark_text.py --learner rlhf --n 4 --tokens 16 --rounds 5
    python scripts/benchmark_text.py --profile loop --threads 1   # the loop profile's round

The floor is what a round cannot avoid: the policy's N candidates (one batched
generation) and the oracle's reference (one generation). A round adds the RM and oracle
scoring, the penalty, the SFT step and the RM update. Both are timed in this process on the
same warm models, after warm-up rounds; target: a round at most 1.25x the floor. Peak
memory is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import resource
import time

import gymnasium as gym
import numpy as np

import agents
import fpo_envs  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smollm2")
    parser.add_argument("--learner", default="fpo-relaxed", choices=agents.NAMES)
    parser.add_argument("--profile", default="paper", help="text-game profile (paper, loop, gold)")
    parser.add_argument("--n", type=int, default=None, help="candidates per round (default: the profile's)")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per response (default: the profile's)")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = {} if args.tokens is None else {"max_new_tokens": args.tokens}
    env = gym.make("FPO/TextRM-v0", preset=args.preset, profile=args.profile, **tokens)
    n = {} if args.n is None else {"n_candidates": args.n}
    agent = agents.make(args.learner, env, seed=0, **n, **tokens)
    agent.learn(args.warmup)
    game = env.unwrapped
    rounds, floors = [], []
    for _ in range(args.rounds):
        prompt = agent._obs["prompt"]
        start = time.perf_counter()
        agent.candidates(prompt)
        game.oracle.generate_reference([prompt], torch.Generator().manual_seed(0))
        floors.append(time.perf_counter() - start)
        start = time.perf_counter()
        agent.learn(1)
        rounds.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    floor, round_ = float(np.median(floors)), float(np.median(rounds))
    print(
        f"preset {args.preset}, profile {args.profile}, learner {args.learner}, N = {agent.config.n_candidates}, "
        f"{agent.config.max_new_tokens} new tokens, "
        f"torch threads {torch.get_num_threads()}, median of {args.rounds} rounds"
    )
    print(f"floor (N + 1 generations): {floor:.2f} s")
    print(f"round:                     {round_:.2f} s")
    print(
        f"round / floor:             {round_ / floor:.2f}x   (target <= 1.25x: {'met' if round_ / floor <= 1.25 else 'MISSED'})"
    )
    print(f"peak RSS:                  {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
