"""How good is FPO's first-order penalty? The exact foresight correction against it, along runs.

    python scripts/exact_accuracy.py                 # both vector games, writes docs/figures/exact/accuracy.md
    python scripts/exact_accuracy.py --games linear  # one game

Along RLHF and relaxed-FPO runs of each vector game (many seeds), at states every few rounds,
it compares two output-gradients at the learner's own outputs:

- the **exact correction** ``C = grad_y proxy_{phi'(y)}(y) - grad_y proxy_phi(y)``: what looking
  through one follower step (the env's own, previewed by ``rm.stepped``) adds to RLHF's gradient,
  the steering term included;
- FPO's **first-order terms** ``-gamma grad_y R(y)`` for the relaxed and the practical penalty.

For a follower that takes one SGD step on ``(r(y) - U(y))^2`` with step ``eta``, first order in
``eta`` gives ``C ~ -2 eta grad_y R_relaxed`` (the linear game's step, where it is exact apart from
the weight decay's ``-wd grad_y r``). The neural game's follower is Adam on a 50-sample buffer,
not SGD, so there FPO's penalty is a first-order term of a different step; the script also
reports the first-order term of the actual step, ``grad_y <grad_phi r(y), phi'(y) - phi>``.

Per state and copy it reports the cosine between ``C`` and each term, and the relative error
``|C - a T| / |C|`` at the first-order scale (``a = 2 eta`` for the relaxed penalty on the
linear game; 1 for the actual step's first-order term) and at the least-squares scale. A
second table shrinks the follower's step size at fixed states, where the first-order term of
the actual step must become exact. The best scale's spread says whether one ``gamma`` can match
the exact correction everywhere.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import agents
import fpo_envs  # noqa: F401
from agents.common.objectives import Objective
from agents.learners import exact

OUT = Path("docs/figures/exact/accuracy.md")


def _flat(t: torch.Tensor, batch: int) -> np.ndarray:
    return t.detach().reshape(batch, -1).double().numpy()


def _grad(fn, y: torch.Tensor) -> torch.Tensor:
    y = y.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(y).sum(), y)
    return g


def terms(game, rm, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The exact correction and the first-order terms at outputs ``y`` (float64 tensors).

    ``y``: ``(B, d)`` on the linear game, ``(B, k, d)`` on the neural one; ``rm`` in float64
    torch (the linear RM's parameters a tensor, so autograd sees the follower step).
    """
    linear = hasattr(rm, "w")
    proxy_now = _grad(lambda v: game.proxy(v, rm.reward(v)), y)
    full = _grad(lambda v: exact.exact_objective(game, rm, v, 1, True), y)

    def first_order(v):  # <grad_phi r(v), phi'(v) - phi>: the actual step, to first order
        step = rm.stepped(v, game.oracle.utility(v), 1).params - rm.params
        g = v if linear else rm.reward_and_grad_params(v)[1]  # the linear RM's grad_w r is y
        return (g * (step if linear else step[..., None, :])).sum(-1)

    out = {"exact": full - proxy_now, "first order of the step": _grad(first_order, y)}
    for name in ("relaxed", "practical"):
        objective = Objective(game, name, 1.0, oracle_gradient=True)
        if linear:  # the penalties' analytic numpy gradients, on the numpy RM
            numpy_rm = game.reward_model.replace(rm.w.detach().numpy())
            grad = objective.penalty.grad(objective.outputs(y.detach().numpy(), numpy_rm))
            out[name] = -torch.as_tensor(grad)
        else:
            out[name] = -_grad(lambda v, o=objective: o.penalty_value(o.outputs(v, rm)), y)
    return out


def agreement(c: np.ndarray, t: np.ndarray, scale: float | None) -> dict[str, np.ndarray]:
    """Per row: cosine, relative error at ``scale`` and at the least-squares scale."""
    norm_c, norm_t = np.linalg.norm(c, axis=1), np.linalg.norm(t, axis=1)
    keep = (norm_c > 1e-12) & (norm_t > 1e-12)
    c, t, norm_c, norm_t = c[keep], t[keep], norm_c[keep], norm_t[keep]
    dot = (c * t).sum(1)
    best = dot / norm_t**2
    out = {
        "cosine": dot / (norm_c * norm_t),
        "rel err (best scale)": np.linalg.norm(c - best[:, None] * t, axis=1) / norm_c,
        "best scale": best,
    }
    if scale is not None:
        out["rel err (first-order scale)"] = np.linalg.norm(c - scale * t, axis=1) / norm_c
    return out


def _rm64(game):
    rm = game.reward_model
    if hasattr(rm, "w"):
        return rm.replace(torch.as_tensor(rm.w, dtype=torch.float64))
    return rm.to(torch.float64)


def states(game_name: str, learner: str, seeds: int, rounds: int, every: int, seed: int = 0):
    """Yield ``(round, game, rm64, y)`` along a run: the learner's outputs at those rounds."""
    env_id = {"linear": "FPO/LinearRM-v0", "neural": "FPO/NeuralRM-v0"}[game_name]
    vec = gym.make_vec(env_id, num_envs=seeds, max_episode_steps=rounds + 1)
    config = {"schedule_rounds": rounds} if game_name == "neural" else {}
    agent = agents.make(learner, vec, seed=seed, **config)
    game = vec.unwrapped
    done = 0
    while done < rounds:
        agent.learn(every)
        done += every
        if game_name == "linear":
            y = torch.as_tensor(agent.output, dtype=torch.float64)
        else:  # the round's k samples the follower would be trained on, around theta
            sigma, _ = agent.schedule(agent.num_rounds)
            g = torch.Generator().manual_seed(done)
            eps = torch.randn((seeds, game.samples_per_round, game.dim), generator=g, dtype=torch.float64)
            y = agent.theta.double()[:, None, :] + sigma * eps
        yield done, game, _rm64(game), y


def summarize(values: np.ndarray, scientific: bool = False) -> str:
    q = np.percentile(values, [10, 50, 90])
    f = (lambda v: f"{v:.2g}") if scientific else (lambda v: f"{v:.3f}")  # noqa: E731
    return f"{f(q[1])} [{f(q[0])}, {f(q[2])}]"


def run(games: list[str], seeds: dict[str, int]) -> str:
    settings = {"linear": (300, 30), "neural": (4000, 400)}
    lines = [
        "# How good is FPO's first-order penalty?",
        "",
        "Written by `python scripts/exact_accuracy.py`. Per (state, seed): the exact correction `C` (one",
        "follower step, the env's own, with the oracle's gradient) against each term `T`; median and",
        "[10th, 90th percentile] over states and seeds. Relative error `|C - a T| / |C|`; best scale: the",
        "least-squares `a` (for the relaxed penalty, the `gamma` that would match `C`; the first-order",
        "scale of the linear game's SGD step is `2 eta = 0.01`).",
        "",
    ]
    fixed = {}
    for name in games:
        rounds, every = settings[name]
        n = seeds[name]
        lines += [
            f"## {'FPO/LinearRM-v0' if name == 'linear' else 'FPO/NeuralRM-v0'}: {n} seeds, a state every {every} rounds",
            "",
        ]
        head = "| run | term | cosine | rel err (first-order scale) | rel err (best scale) | best scale |"
        lines += [head, "|---|---|---|---|---|---|"]
        for learner in ("rlhf", "fpo-relaxed"):
            start = time.perf_counter()
            rows: dict[str, dict[str, list]] = {}
            for done, game, rm, y in states(name, learner, n, rounds, every):
                t = terms(game, rm, y)
                batch = y.shape[0]
                c = _flat(t["exact"], batch)
                eta = float(rm.lr)
                for term, scale in (
                    ("relaxed", 2 * eta if name == "linear" else None),
                    ("practical", None),
                    ("first order of the step", 1.0),
                ):
                    for k, v in agreement(c, _flat(t[term], batch), scale).items():
                        rows.setdefault(term, {}).setdefault(k, []).append(v)
                if learner == "rlhf" and done == rounds // 2:
                    fixed[name] = (game, rm, y)
            for term, stats in rows.items():
                keys = ("cosine", "rel err (first-order scale)", "rel err (best scale)", "best scale")
                cells = [summarize(np.concatenate(stats[k]), k == "best scale") if k in stats else "-" for k in keys]
                lines.append(f"| {learner} | {term} | " + " | ".join(cells) + " |")
            print(f"{name} {learner}: {time.perf_counter() - start:.1f} s", flush=True)
        lines.append("")
    lines += [
        "## The follower's step size shrinking, at fixed states (RLHF, mid-run)",
        "",
        "The RM's learning rate scaled by `s` at the same states; the relative error of `C` against the",
        "first-order term of the actual step (scale 1), and against FPO's relaxed penalty at its",
        "least-squares scale. The first must go to 0 with `s`; the second measures what FPO's form misses.",
        "",
        "| game | s | first order of the step: rel err | relaxed: cosine | relaxed: rel err (best scale) |",
        "|---|---|---|---|---|",
    ]
    for name, (game, rm, y) in fixed.items():
        base = float(rm.lr)
        for s in (1.0, 0.1, 0.01, 0.001):
            rm.lr = base * s
            t = terms(game, rm, y)
            batch = y.shape[0]
            c = _flat(t["exact"], batch)
            step = agreement(c, _flat(t["first order of the step"], batch), 1.0)
            relaxed = agreement(c, _flat(t["relaxed"], batch), None)
            lines.append(
                f"| {name} | {s:g} | {summarize(step['rel err (first-order scale)'])} | "
                f"{summarize(relaxed['cosine'])} | {summarize(relaxed['rel err (best scale)'])} |"
            )
        rm.lr = base
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", nargs="+", choices=["linear", "neural"], default=["linear", "neural"])
    parser.add_argument("--linear-seeds", type=int, default=100)
    parser.add_argument("--neural-seeds", type=int, default=64)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    text = run(args.games, {"linear": args.linear_seeds, "neural": args.neural_seeds})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
