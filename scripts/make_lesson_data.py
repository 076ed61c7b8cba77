"""The 64-seed runs that lesson 2 (``tutorials/02_blind_spot.ipynb``) reads instead of playing.

    python scripts/make_lesson_data.py        # writes tutorials/data/blind_spot.npz (about 5 minutes on 1 core)

RLHF and relaxed FPO on ``FPO/NeuralRM-v0`` for the paper's 4000 rounds, seeds 0-63, played as
four vector envs of ``BLOCK`` = 16 copies (``agents.make(learner, vec, seed=s)`` with
``s = 0, 16, 32, 48``: copy ``i`` of block ``s`` is seed ``s + i``), one torch thread, with
exactly the calls the lesson makes. Both learners together take about five minutes of CPU
(relaxed FPO four fifths of it), more than a lesson may; so the lesson plays block 0 of RLHF
live (it needs those runs' frames and reward models), prints how far they are from the file's
seeds 0-15, and replays the first 100 rounds of relaxed FPO's block 0 against the file.
``tests/tutorials/test_notebooks.py`` replays the first rounds of both learners' block 0
against the shipped file, so a change to the game or the learners that moves these runs fails
there until this script is run again.

The file holds, per learner, the true utility at the policy's mean ``theta`` (the history's
``theta_true_utility``) every ``STRIDE`` rounds and at the last round (``rows``), and per seed
its final and peak value over all rounds; for RLHF also each final RM's mean error on its
buffer and its error ``r(y*) - U(y*)`` at the ideal.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import agents
import fpo_envs  # noqa: F401  (registers the FPO/ environments)

OUT = Path(__file__).resolve().parents[1] / "tutorials" / "data" / "blind_spot.npz"
GAME = "FPO/NeuralRM-v0"
LEARNERS = ("rlhf", "fpo-relaxed")
ROUNDS = 4000
"""The paper's run length; the learners' schedules (noise, step size) span it."""
SEEDS = 64
BLOCK = 16
"""Copies per vector env: the lesson plays one block live."""
STRIDE = 20
"""Rounds between the stored rows of the curves (the figure needs no more)."""


def make_block(learner: str, first_seed: int, render_mode: str | None = None):
    """The vector env of seeds ``first_seed .. first_seed + BLOCK - 1`` and its learner, as the lesson makes them.

    The episode is one round longer than the run, so the last round does not reset the RMs;
    the schedules are fixed to ``ROUNDS``, so a shorter ``learn`` plays the full run's first rounds.
    """
    vec = gym.make_vec(GAME, num_envs=BLOCK, max_episode_steps=ROUNDS + 1, render_mode=render_mode)
    return vec, agents.make(learner, vec, seed=first_seed, schedule_rounds=ROUNDS)


def play(learner: str, first_seed: int, rounds: int = ROUNDS) -> dict[str, np.ndarray]:
    """One block's ``rounds`` rounds: ``true_utility`` of shape ``(rounds, BLOCK)``, and at the end
    ``buffer_error`` and ``error_at_ideal`` of shape ``(BLOCK,)``."""
    vec, agent = make_block(learner, first_seed)
    u = agent.learn(rounds)["theta_true_utility"]
    game = vec.unwrapped
    y_star, u_star = game.optimum()
    with torch.no_grad():
        at_ideal = game.reward_model.reward(torch.as_tensor(np.tile(y_star, (BLOCK, 1)), dtype=torch.float32)).double().numpy()
        on_data = game.reward_model.buffer_error().double().numpy()
    return {"true_utility": u, "buffer_error": on_data, "error_at_ideal": at_ideal - u_star}


def rows(rounds: int = ROUNDS) -> np.ndarray:
    """The rounds (0-based) whose true utility the file stores: every ``STRIDE``-th and the last."""
    return np.unique(np.r_[np.arange(0, rounds, STRIDE), rounds - 1])


def compute(seeds: int = SEEDS, rounds: int = ROUNDS, log=print) -> dict[str, np.ndarray]:
    """Every array of the file, for seeds ``0 .. seeds - 1`` (a multiple of ``BLOCK``)."""
    if seeds < BLOCK or seeds % BLOCK:
        raise ValueError(f"seeds must be a positive multiple of BLOCK={BLOCK}, got {seeds}")
    torch.set_num_threads(1)  # as the lesson: the runs are small, and a thread count can change float results
    out: dict[str, np.ndarray] = {
        "rows": rows(rounds),
        "rounds": np.array(rounds),
        "seeds": np.array(seeds),
        "block": np.array(BLOCK),
        "torch_version": np.array(torch.__version__),
    }
    for learner in LEARNERS:
        start = time.perf_counter()
        blocks = [play(learner, first, rounds) for first in range(0, seeds, BLOCK)]
        u = np.concatenate([b["true_utility"] for b in blocks], axis=1)  # (rounds, seeds)
        out[f"{learner}/true_utility"] = u[out["rows"]].astype(np.float32)
        out[f"{learner}/final"] = u[-1]
        out[f"{learner}/peak"] = u.max(0)
        if learner == "rlhf":
            for key in ("buffer_error", "error_at_ideal"):
                out[f"{learner}/{key}"] = np.concatenate([b[key] for b in blocks])
        log(f"{learner}: {seeds} seeds x {rounds} rounds in {time.perf_counter() - start:.0f} s")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the file to write (default {OUT})")
    args = parser.parse_args(argv)
    data = compute()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **data)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
