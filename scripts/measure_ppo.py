"""What stable-baselines3's PPO does on a vector game, with and without the FPO reward wrapper.

    python scripts/measure_ppo.py                        # FPO/LinearRM-v0, 10 seeds
    python scripts/measure_ppo.py --seeds 3 --rounds 3000 --workers 1

Each seed trains one PPO model (``ppo``, ``ppo-fpo-practical``, ``ppo-fpo-relaxed``, their
default config) on a vector env of ``--copies`` copies for ``--rounds`` rounds per copy,
then plays one evaluation episode (the game's episode length) on a fresh env with its
deterministic action. Per seed it records the true utility at the last training round
(mean over copies, stochastic actions), and in the evaluation episode the final and peak
true utility and the final noise magnitude; the table gives mean ± std (median) over seeds
and the collapse rate (share of seeds whose evaluation ends below half the optimum).
Writes ``--out/<game>/ppo_table.{md,csv}`` and ``ppo_per_seed.csv``.
"""

from __future__ import annotations

import argparse
import csv
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import gymnasium as gym
import numpy as np

GAMES = {"linear": "FPO/LinearRM-v0", "neural": "FPO/NeuralRM-v0"}
LEARNERS = ("ppo", "ppo-fpo-practical", "ppo-fpo-relaxed")
EVAL_SEED_OFFSET = 10_000


def run_seed(env_id: str, learner: str, seed: int, rounds: int, copies: int) -> dict:
    """Train one PPO model and evaluate it; returns its per-seed record."""
    import torch

    import agents
    import fpo_envs  # noqa: F401

    torch.set_num_threads(1)
    start = time.perf_counter()
    agent = agents.make(learner, gym.make_vec(env_id, num_envs=copies), seed=seed)
    history = agent.learn(rounds)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=EVAL_SEED_OFFSET + seed)
    utilities, info = [], {}
    for _ in range(env.spec.max_episode_steps):
        action, _ = agent.predict(obs)
        obs, _, terminated, truncated, info = env.step(action)
        utilities.append(info["true_utility"])
        if terminated or truncated:
            break
    return {
        "learner": learner,
        "seed": seed,
        "train_final_true_utility": float(history["true_utility"][-1].mean()),
        "train_diverged_rounds": int(history["diverged"].sum()),
        "eval_final_true_utility": float(utilities[-1]),
        "eval_peak_true_utility": float(max(utilities)),
        "eval_final_noise_norm": float(info["noise_norm"]),
        "eval_final_signal_norm": float(info["signal_norm"]),
        "seconds": time.perf_counter() - start,
    }


COLUMNS = ("train_final_true_utility", "eval_peak_true_utility", "eval_final_true_utility", "eval_final_noise_norm")


def table(records: list[dict], optimum: float, title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| learner | seeds | " + " | ".join(COLUMNS) + " | collapse rate |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for learner in LEARNERS:
        rows = [r for r in records if r["learner"] == learner]
        if not rows:
            continue
        cells = []
        for key in COLUMNS:
            v = np.array([r[key] for r in rows])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f} ({np.median(v):.3f})")
        collapse = np.mean([r["eval_final_true_utility"] < 0.5 * optimum for r in rows])
        lines.append(f"| {learner} | {len(rows)} | " + " | ".join(cells) + f" | {collapse:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", choices=list(GAMES), default="linear")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9000, help="training rounds per env copy (30 episodes of 300)")
    parser.add_argument("--copies", type=int, default=8, help="vector-env copies one PPO model trains on")
    parser.add_argument("--workers", type=int, default=2, help="processes, one torch thread each")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    env_id = GAMES[args.game]
    jobs = [(env_id, learner, seed, args.rounds, args.copies) for learner in LEARNERS for seed in range(args.seeds)]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        records = list(pool.map(run_seed, *zip(*jobs)))
    import fpo_envs  # noqa: F401

    optimum = gym.make(env_id).unwrapped.optimum()[1]
    title = (
        f"PPO on {env_id}: {args.seeds} seeds, {args.copies} copies x {args.rounds} training rounds each, "
        f"deterministic evaluation episode"
    )
    text = table(records, optimum, title)
    folder = args.out / args.game
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ppo_table.md").write_text(text)
    with open(folder / "ppo_per_seed.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    print(text)
    print(f"{len(jobs)} runs in {time.perf_counter() - start:.0f} s with {args.workers} workers")


if __name__ == "__main__":
    main()
