"""RLHF against an ensemble of reward models with a conservative aggregate (Coste et al., ICLR
2024, "Reward Model Ensembles Help Mitigate Overoptimization"; Eisenstein et al. 2023).

The env trains ``K`` RMs on the same data from different initialisations
(``gym.make(id, rm_ensemble=K)``, :mod:`fpo_envs.models.ensemble`); the learner ascends
``A(r_1(y), ..., r_K(y)) - c ||y||^2`` for an aggregate ``A``:

- ``rlhf-ensemble-mean``: the members' mean (what the env's reward already is).
- ``rlhf-ensemble-worst``: the worst case ``min_k r_k(y)`` (its gradient: the lowest member's).
- ``rlhf-ensemble-uwo``: uncertainty-weighted optimisation, ``mean_k r_k(y) - beta * std_k r_k(y)``:
  where the members disagree (outputs none of them was trained near) the score is discounted.

They need an ensemble (``K`` times the RM training), nothing of the oracle or of the initial
policy. They run on the linear and neural games, single and vector envs, and register
through the public registry (the ``ensemble`` entry point of ``fpo_envs.learners``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import agents
from agents.common.objectives import check_knob, check_no_penalty
from agents.families.gaussian import GaussianConfig, GaussianLeader
from agents.families.gradient import GradientConfig, GradientLeader
from fpo_envs.models.ensemble import RewardModelEnsemble, member_std

AGGREGATES = ("mean", "worst", "uwo")
"""The ensemble aggregates a config's ``aggregate`` may name (module docstring)."""


def _check(config, learner: str) -> None:
    if config.aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {config.aggregate!r}")
    check_knob("beta", config.beta, minimum=0.0)
    check_no_penalty(config, learner)


def aggregate_grad(rewards, grads, aggregate: str, beta: float):
    """``grad_y A`` from the members' rewards ``(..., K)`` and input gradients ``(..., K, d)``
    (numpy or torch), for the aggregates of :data:`AGGREGATES`.

    ``uwo``: ``grad std = sum_k (r_k - mean)(g_k - g_mean) / (K std)``, taken as 0 where the
    members agree exactly (``std = 0``, where the standard deviation has no gradient).
    """
    mean_grad = grads.mean(-2)
    if aggregate == "mean":
        return mean_grad
    if aggregate == "worst":
        if isinstance(rewards, np.ndarray):
            lowest = np.argmin(rewards, axis=-1)[..., None, None]
            return np.take_along_axis(grads, lowest, axis=-2)[..., 0, :]
        lowest = rewards.argmin(-1)[..., None, None].expand(*grads.shape[:-2], 1, grads.shape[-1])
        return grads.gather(-2, lowest)[..., 0, :]
    centred = rewards - rewards.mean(-1)[..., None]
    std = (centred * centred).mean(-1) ** 0.5
    covariance = (centred[..., None] * (grads - mean_grad[..., None, :])).mean(-2)
    safe = std + (std == 0)  # 1 where std = 0; the numerator is 0 there
    return mean_grad - beta * covariance / safe[..., None]


def aggregate_value(rewards, aggregate: str, beta: float):
    """``A`` itself from the members' rewards ``(..., K)``."""
    if aggregate == "mean":
        return rewards.mean(-1)
    if aggregate == "worst":
        return rewards.min(-1) if isinstance(rewards, np.ndarray) else rewards.min(-1).values
    return rewards.mean(-1) - beta * member_std(rewards)


class _Ensembled:
    """Replaces the RM's (mean) score in the objective by the aggregate of the members."""

    def __init__(self, env, seed=None, **config):
        super().__init__(env, seed=seed, **config)
        if not isinstance(env.unwrapped.reward_model, RewardModelEnsemble):
            raise ValueError(
                "the rlhf-ensemble learners need an ensemble of reward models: "
                f"make the env with rm_ensemble >= 2, e.g. gym.make({_env_id(env)!r}, rm_ensemble=5)"
            )

    def objective_grad(self, y, rm):
        # The family's own objective gradient uses the RM's mean; swap in the aggregate's.
        grad = super().objective_grad(y, rm)
        c = self.config
        if c.aggregate == "mean":
            return grad
        grads = rm.member_grad_input(y)
        return grad - grads.mean(-2) + aggregate_grad(rm.member_rewards(y), grads, c.aggregate, c.beta)

    def aggregate(self, y, rm=None):
        """The aggregate score ``A`` at outputs ``y`` under ``rm`` (default: the env's ensemble)."""
        rm = self.env.unwrapped.reward_model if rm is None else rm
        return aggregate_value(rm.member_rewards(y), self.config.aggregate, self.config.beta)


def _env_id(env) -> str:
    spec = getattr(env, "spec", None) or getattr(env.unwrapped, "spec", None)
    return spec.id if spec is not None else "FPO/LinearRM-v0"


@dataclass(frozen=True)
class EnsembleGradientConfig(GradientConfig):
    """The gradient leader's settings, the ``aggregate`` of the members and ``beta`` (``uwo``'s
    weight on their standard deviation)."""

    aggregate: str = "mean"
    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-ensemble")


@dataclass(frozen=True)
class EnsembleGaussianConfig(GaussianConfig):
    """The Gaussian leader's settings, the ``aggregate`` of the members and ``beta``."""

    aggregate: str = "mean"
    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-ensemble")


class EnsembleGradientLeader(_Ensembled, GradientLeader):
    """The linear game's gradient leader on an aggregate of the RM ensemble."""

    config_cls = EnsembleGradientConfig


class EnsembleGaussianLeader(_Ensembled, GaussianLeader):
    """The neural game's Gaussian leader on an aggregate of the RM ensemble."""

    config_cls = EnsembleGaussianConfig


ENSEMBLE_SIZE = 5
"""The members the benchmark's envs train for these learners (Coste et al. use five)."""

_FAMILIES = {"linear": EnsembleGradientLeader, "neural": EnsembleGaussianLeader}
for _aggregate in AGGREGATES:
    agents.register(
        f"rlhf-ensemble-{_aggregate}",
        _FAMILIES,
        kwargs={"aggregate": _aggregate},
        games=("linear", "neural"),
        env_kwargs={"rm_ensemble": ENSEMBLE_SIZE},
    )
