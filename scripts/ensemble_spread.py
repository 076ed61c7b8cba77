"""Where an RM ensemble disagrees on the neural game: at the policy's mean or at the ideal.

    python scripts/ensemble_spread.py     # 16 seeds x 3999 rounds of rlhf-ensemble-mean, about a minute

The members are retrained on the outputs the policy plays; this prints their standard deviation
at the round's mean output over the run, and at the end at the policy's mean ``theta`` and at the
ideal ``y*`` (3999 rounds: the 4000th ends the episode and resets the copies).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import agents
import fpo_envs  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3999)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=args.seeds, **agents.spec("rlhf-ensemble-mean").env_kwargs)
    agent = agents.make("rlhf-ensemble-mean", env, seed=0, schedule_rounds=4000)
    history = agent.learn(args.rounds)
    rm, (ideal, peak) = env.unwrapped.reward_model, env.unwrapped.optimum()
    with torch.no_grad():
        at_ideal = rm.member_spread(torch.as_tensor(ideal, dtype=torch.float32).expand(args.seeds, -1)).numpy()
        at_theta = rm.member_spread(agent.theta).numpy()
    rounds = sorted({t for t in (0, 99, 999) if t < args.rounds} | {args.rounds - 1})
    print(f"rlhf-ensemble-mean, {args.seeds} seeds, {rm.size} RMs; medians over seeds")
    for t in rounds:
        print(f"  round {t + 1:>5}: spread at the round's mean output {np.median(history['ensemble_spread'][t]):.4f}")
    print(f"  end: spread at theta {np.median(at_theta):.5f}, at the ideal {np.median(at_ideal):.4f}")
    print(f"  end: final U / U(y*) {np.median(history['theta_true_utility'][-1]) / peak:.3f}")


if __name__ == "__main__":
    main()
