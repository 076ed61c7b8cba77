"""Reproduce the paper's figures and tables: every learner over many seeds on each game.

    python scripts/reproduce.py                      # built-in defaults, writes results/
    python scripts/reproduce.py --seeds 32 --gradient finite-difference

Writes, per game, under ``--out/<game>/``: ``phase_portrait.png``, ``curves.png``
(true utility and noise magnitude against rounds, median and interquartile band) and
``table.md`` / ``table.csv`` (peak and final true utility, final proxy, signal and noise
norms: mean ± std (median) over seeds, and the collapse rate).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym

import agents
import fpo_envs  # noqa: F401
from fpo_envs import report

# (label, learner, config) run on each game; relaxed FPO twice, since whether the oracle's
# gradient flows into the penalty's gradient changes the result.
LEARNERS = (
    ("rlhf", "rlhf", {}),
    ("fpo-practical", "fpo-practical", {}),
    ("fpo-relaxed", "fpo-relaxed", {}),
    ("fpo-relaxed (no oracle grad)", "fpo-relaxed", {"oracle_gradient": False}),
)

GAMES = {"linear": {"env_id": "FPO/LinearRM-v0", "rounds": 300}}


def run_game(game: str, seeds: int, rounds: int | None, seed: int, gradient: str, out: Path) -> list[dict]:
    spec = GAMES[game]
    rounds = rounds or spec["rounds"]
    runs, rows = {}, []
    for label, name, config in LEARNERS:
        env = gym.make_vec(spec["env_id"], num_envs=seeds)
        start = time.perf_counter()
        runs[label] = agents.make(name, env, seed=seed, gradient=gradient, **config).learn(rounds)
        optimum = env.unwrapped.optimum()[1]
        rows.append(report.summarize(label, runs[label], optimum))
        print(f"{game:>7} {label:<30} {seeds} seeds x {rounds} rounds in {time.perf_counter() - start:.2f}s")
    game_env = env.unwrapped
    folder = out / game
    folder.mkdir(parents=True, exist_ok=True)
    title = f"{spec['env_id']}, {seeds} seeds, {rounds} rounds, {gradient} gradient"
    report.write_table(rows, folder / "table", title)
    report.plot_phase_portrait(runs, game_env.oracle, game_env.signal_dims, folder / "phase_portrait.png", title)
    report.plot_curves(runs, ("true_utility", "noise_norm"), folder / "curves.png", optimum)
    print(report.markdown_table(rows, title))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", choices=[*GAMES, "all"], default="all")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per learner (one vector env)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; copy i uses seed + i")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default: the paper's)")
    parser.add_argument("--gradient", choices=["analytic", "finite-difference"], default="analytic")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    for game in GAMES if args.game == "all" else [args.game]:
        run_game(game, args.seeds, args.rounds, args.seed, args.gradient, args.out)


if __name__ == "__main__":
    main()
