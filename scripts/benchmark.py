"""Time the learners: gradient modes, and batched seeds against one env per seed.

    python scripts/benchmark.py                  # both games, printed side by side
    python scripts/benchmark.py --game linear --seeds 1000 --single-envs 50
    python scripts/benchmark.py --game neural --neural-seeds 16 --neural-rounds 200

Everything is timed in this one process, so the printed ratios compare like with like
on a noisy machine. Targets: linear, 1000 seeds of one learner for 300 rounds in under
2 s through ``gym.make_vec`` (batched numpy); neural, a 16-seed batch at least 8 times
cheaper per seed than a single-seed run (torch, one thread for both).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import agents
import fpo_envs  # noqa: F401


def _timed_learn(env, name: str, rounds: int, **config) -> float:
    agent = agents.make(name, env, seed=0, **config)
    start = time.perf_counter()
    agent.learn(rounds)
    return time.perf_counter() - start


def best_of(repeats: int, fn) -> float:
    return min(fn() for _ in range(repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", choices=["linear", "neural", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=1000, help="copies in the batched vector env")
    parser.add_argument("--single-envs", type=int, default=50, help="single envs timed one after another")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--neural-seeds", type=int, default=16)
    parser.add_argument("--neural-rounds", type=int, default=200)
    args = parser.parse_args(argv)
    if args.game in ("linear", "all"):
        linear(args)
    if args.game in ("neural", "all"):
        neural(args)


def neural(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    r, n = args.neural_rounds, args.neural_seeds
    env_id = "FPO/NeuralRM-v0"
    print(f"\n{env_id}: {r} rounds, a {n}-seed vector env vs a single-seed env (1 torch thread)")
    print(f"{'learner':<15}{'single ms/round':>17}{f'{n} seeds ms/round':>19}{'per-seed speed-up':>19}{'  target >= 8x':>15}")
    for name in agents.NAMES:
        t_one = best_of(args.repeats, lambda name=name: _timed_learn(gym.make(env_id), name, r))
        t_vec = best_of(args.repeats, lambda name=name: _timed_learn(gym.make_vec(env_id, num_envs=n), name, r))
        speedup = n * t_one / t_vec
        verdict = "met" if speedup >= 8 else "MISSED"
        print(f"{name:<15}{1e3 * t_one / r:>17.2f}{1e3 * t_vec / r:>19.2f}{speedup:>18.1f}x{verdict:>15}")


def linear(args: argparse.Namespace) -> None:
    r = args.rounds
    args.env_id = "FPO/LinearRM-v0"

    print(f"{args.env_id}: per-round cost of one seed, analytic vs finite-difference gradient")
    print(f"{'learner':<15}{'analytic ms':>13}{'fin.-diff. ms':>15}{'ratio':>8}")
    for name in agents.NAMES:
        t_an = best_of(args.repeats, lambda name=name: _timed_learn(gym.make(args.env_id), name, r))
        t_fd = best_of(args.repeats, lambda name=name: _timed_learn(gym.make(args.env_id), name, r, gradient="finite-difference"))
        print(f"{name:<15}{1e3 * t_an / r:>13.3f}{1e3 * t_fd / r:>15.3f}{t_fd / t_an:>7.1f}x")

    print(f"\n{args.env_id}: {args.seeds} seeds x {r} rounds, one batched vector env vs one env per seed")
    print(f"{'learner':<15}{'batched s':>11}{'per seed ms':>13}{'single ms/seed':>16}{'speed-up':>10}{'  target < 2 s':>14}")
    for name in agents.NAMES:
        t_vec = best_of(args.repeats, lambda name=name: _timed_learn(gym.make_vec(args.env_id, num_envs=args.seeds), name, r))

        def singles(name=name):
            return sum(_timed_learn(gym.make(args.env_id), name, r) for _ in range(args.single_envs))

        t_one = best_of(args.repeats, singles) / args.single_envs
        per_seed = t_vec / args.seeds
        print(
            f"{name:<15}{t_vec:>11.3f}{1e3 * per_seed:>13.3f}{1e3 * t_one:>16.2f}{t_one / per_seed:>9.0f}x"
            f"{'met' if t_vec < 2.0 else 'MISSED':>14}"
        )


if __name__ == "__main__":
    main()
