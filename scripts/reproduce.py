"""Reproduce the paper's figures and tables: every learner over many seeds on each game.

    python scripts/reproduce.py                          # both games, built-in defaults
    python scripts/reproduce.py --game linear --gradient finite-difference
    python scripts/reproduce.py --game neural --seeds 32 --rounds 1000

Writes under ``--out/<game>/``: ``table.md`` / ``table.csv`` (peak and final true
utility, final proxy, signal and noise norms: mean ± std (median) over seeds, and the
collapse rate), ``curves.png`` (true utility and noise magnitude against rounds, median
and interquartile band), and a phase portrait: signal against noise magnitude over the
true-utility contours (linear), or the policy means' trajectories on their 2-D PCA plane
over the true-utility landscape (neural, ``pca_portrait.png``).

Each learner runs all its seeds in one vector env; the neural game's learners run in
``--workers`` processes with one torch thread each (float results depend on the thread
count, so keep it fixed to repeat a run exactly).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import gymnasium as gym

import agents
from agents.tools import report


@dataclass(frozen=True)
class Game:
    env_id: str
    rounds: int
    seeds: int
    learners: tuple[tuple[str, str, dict], ...]
    """(label, learner, config); relaxed FPO twice, since the oracle-gradient switch changes the result."""
    metric_prefix: str = ""
    """History keys the table and curves read (``theta_``: at the Gaussian policy's mean, as the paper)."""
    schedule: bool = False
    """Whether ``--rounds`` also sets the learners' ``schedule_rounds``."""
    extra: dict = field(default_factory=dict)


GAMES = {
    "linear": Game(
        "FPO/LinearRM-v0",
        rounds=300,
        seeds=20,
        learners=(
            ("rlhf", "rlhf", {}),
            ("fpo-practical", "fpo-practical", {}),
            ("fpo-relaxed", "fpo-relaxed", {}),
            ("fpo-relaxed (no oracle grad)", "fpo-relaxed", {"oracle_gradient": False}),
        ),
    ),
    "neural": Game(
        "FPO/NeuralRM-v0",
        rounds=4000,
        seeds=16,
        metric_prefix="theta_",
        schedule=True,
        learners=(
            ("rlhf", "rlhf", {}),
            ("fpo-practical", "fpo-practical", {}),
            ("fpo-relaxed", "fpo-relaxed", {}),
            ("fpo-relaxed (oracle grad)", "fpo-relaxed", {"oracle_gradient": True}),
        ),
    ),
}

METRICS = ("true_utility", "proxy_reward", "signal_norm", "noise_norm")


def run_learner(
    env_id: str, name: str, config: dict, seeds: int, seed: int, rounds: int, threads: int | None
) -> tuple[dict, float]:
    """One learner over ``seeds`` copies of one vector env; returns (history, seconds)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    env = gym.make_vec(env_id, num_envs=seeds)
    start = time.perf_counter()
    history = agents.make(name, env, seed=seed, **config).learn(rounds)
    return history, time.perf_counter() - start


def run_game(game_name: str, args: argparse.Namespace) -> list[dict]:
    game = GAMES[game_name]
    rounds, seeds = args.rounds or game.rounds, args.seeds or game.seeds
    jobs = {}
    for label, name, config in game.learners:
        config = dict(config)
        if game_name == "linear":
            config["gradient"] = args.gradient
        if game.schedule:
            config["schedule_rounds"] = rounds
        jobs[label] = (game.env_id, name, config, seeds, args.seed, rounds, 1 if game_name != "linear" else None)
    if game_name == "linear" or args.workers <= 1:
        results = {label: run_learner(*job) for label, job in jobs.items()}
    else:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = {label: pool.submit(run_learner, *job) for label, job in jobs.items()}
            results = {label: f.result() for label, f in futures.items()}
    runs = {}
    for label, (history, seconds) in results.items():
        print(f"{game_name:>7} {label:<28} {seeds} seeds x {rounds} rounds in {seconds:.1f}s")
        runs[label] = {**history, **{k: history[game.metric_prefix + k] for k in METRICS}}
    env = gym.make(game.env_id).unwrapped
    optimum = env.optimum()[1]
    rows = [report.summarize(label, history, optimum) for label, history in runs.items()]
    where = " at the policy mean theta" if game.metric_prefix == "theta_" else ""
    title = (
        f"{game.env_id}, {seeds} seeds, {rounds} rounds"
        + (f", {args.gradient} gradient" if game_name == "linear" else "")
        + where
    )
    folder = args.out / game_name
    folder.mkdir(parents=True, exist_ok=True)
    report.write_table(rows, folder / "table", title)
    report.plot_curves(runs, ("true_utility", "noise_norm"), folder / "curves.png", optimum)
    if "theta" in next(iter(runs.values())):
        report.plot_pca_portrait(runs, env.oracle, folder / "pca_portrait.png", title)
    else:
        report.plot_phase_portrait(runs, env.oracle, env.signal_dims, folder / "phase_portrait.png", title)
    print(report.markdown_table(rows, title))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", choices=[*GAMES, "all"], default="all")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per learner (default: linear 20, neural 16)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; copy i uses seed + i")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default: the paper's, 300 / 4000)")
    parser.add_argument("--gradient", choices=["analytic", "finite-difference"], default="analytic", help="linear game only")
    parser.add_argument("--workers", type=int, default=2, help="processes for the neural game's learners")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    for game in GAMES if args.game == "all" else [args.game]:
        run_game(game, args)


if __name__ == "__main__":
    main()
