"""The scale of the built-in penalties against the proxy, per vector game: what ``gamma`` multiplies.

    python scripts/penalty_scales.py             # 16 seeds of rlhf per game, about half a minute

An ``rlhf`` run per game (16 seeds in one vector env) with a probe penalty of weight 1e-12, which
leaves the run as it is and records, at every output the learner judges, the median of ``|r|``
(the RM's score), of the practical penalty ``||grad_phi r||^2`` and of the relaxed one's size
``|r - U| ||grad_phi r||^2``; printed as means over the first and the last tenth of the calls,
with the paper's ``gamma`` times the practical penalty. The page "Write your own algorithm"
quotes it, for choosing ``gamma`` for a penalty of your own.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import agents
import fpo_envs  # noqa: F401
from agents.common.registration import temporary_registrations

GAMES = (("FPO/LinearRM-v0", "linear", 300), ("FPO/NeuralRM-v0", "neural", 1000), ("FPO/TokenRM-v0", "token", 600))


def _numpy(v):
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def scales(env_id: str, rounds: int, seeds: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Means over the first and the last tenth of the probe's calls of the medians of ``|r|``,
    ``||grad_phi r||^2`` and ``|r - U| ||grad_phi r||^2``."""
    records = []

    def probe(z):
        r, g2, u = _numpy(z.reward), _numpy(z.grad_sqnorm), _numpy(z.utility)
        records.append((np.median(np.abs(r)), np.median(g2), np.median(np.abs(r - u) * g2)))
        return 0 * z.reward

    with temporary_registrations():
        agents.register_penalty("scale-probe", probe)
        agents.make("rlhf", gym.make_vec(env_id, num_envs=seeds), seed=0, penalty="scale-probe", gamma=1e-12).learn(rounds)
    a = np.array(records)
    k = max(len(a) // 10, 1)
    return a[:k].mean(0), a[-k:].mean(0)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    print("| game | rounds | median abs(r) | practical R | relaxed abs(R) | paper gamma | gamma x practical R |")
    print("|---|---|---|---|---|---|---|")
    for env_id, game, rounds in GAMES:
        first, last = scales(env_id, rounds)
        g = agents.PAPER_GAMMA[game]
        cells = [f"{a:.3g} -> {b:.3g}" for a, b in zip(first, last)]
        print(f"| `{env_id}` | {rounds} | {' | '.join(cells)} | {g} | {g * first[1]:.3g} -> {g * last[1]:.3g} |")


if __name__ == "__main__":
    main()
