"""The neural game on a GPU: seeds x rounds per second at 4096 and 65,536 seeds, against the CPU.

    python scripts/gpu_benchmark.py                        # cuda against the CPU, the defaults below
    python scripts/gpu_benchmark.py --device cpu --sizes 8 16 --rounds 3   # the script's path on a CPU

For each number of seeds, one vector env (``gym.make_vec("FPO/NeuralRM-v0", num_envs=n,
device=...)``) plays ``--rounds`` rounds of each learner after ``--warmup`` rounds (CUDA's kernels
load and its allocator fills during those), timed with the device synchronised; the CPU plays
the same learner at the same number of seeds for ``--cpu-rounds`` rounds (a CPU round at
65,536 seeds takes seconds) with ``--cpu-threads`` torch threads. Printed per learner and size:
seeds x rounds per second on each, and the ratio. The learners' noise is drawn on the CPU from
their seeded generators, so both devices play the same draws.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch

import agents
import fpo_envs  # noqa: F401
from fpo_envs.games.neural import torch_device


def seed_rounds_per_second(learner: str, seeds: int, device: str, rounds: int, warmup: int) -> float:
    """Seeds x rounds per second of ``learner`` on ``seeds`` copies on ``device``."""
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=seeds, device=device)
    agent = agents.make(learner, env, seed=0, schedule_rounds=4000)
    agent.learn(warmup)

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    start = time.perf_counter()
    agent.learn(rounds)
    sync()
    return seeds * rounds / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device to measure (default cuda)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 65536], help="numbers of seeds")
    parser.add_argument("--learners", nargs="+", default=["rlhf", "fpo-relaxed"])
    parser.add_argument("--rounds", type=int, default=50, help="timed rounds on the device")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    parser.add_argument("--cpu-rounds", type=int, default=3, help="timed rounds on the CPU")
    parser.add_argument("--cpu-threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    for name in ("sizes", "rounds", "cpu_rounds", "cpu_threads"):
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        device = torch_device(args.device)
    except ValueError as err:
        parser.exit(2, f"gpu_benchmark.py: {err}\n")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"FPO/NeuralRM-v0 on {name} against the CPU ({args.cpu_threads} torch threads), seeds x rounds per second")
    print(f"{'learner':<14}{'seeds':>8}{'device':>14}{'cpu':>12}{'ratio':>9}")
    for learner in args.learners:
        for seeds in args.sizes:
            torch.set_num_threads(args.cpu_threads)
            on_device = seed_rounds_per_second(learner, seeds, str(device), args.rounds, args.warmup)
            on_cpu = seed_rounds_per_second(learner, seeds, "cpu", args.cpu_rounds, 1)
            print(f"{learner:<14}{seeds:>8}{on_device:>14,.0f}{on_cpu:>12,.0f}{on_device / on_cpu:>8.1f}x", flush=True)


if __name__ == "__main__":
    main()
