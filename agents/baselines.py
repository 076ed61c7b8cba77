"""Standard mitigations of reward over-optimisation, as learners to compare FPO with.

- ``rlhf-anchor``: RLHF with a distance penalty anchoring the policy to where it started,
  ``- anchor * ||y - y_0||^2`` (the vector games' analogue of the KL penalty to the initial
  policy of Ziegler et al. 2019 and InstructGPT; for the Gaussian policy ``y_0`` is the mean it
  started from). It needs the initial policy, nothing of the oracle.
- ``rlhf-cap``: RLHF on the capped reward ``min(r(y), cap) - c ||y||^2`` (reward clipping): the
  policy gains nothing from pushing the RM's score above ``cap``. It needs a cap on the RM's
  scale, nothing of the oracle.

Both run on the linear and the neural game, single and vector envs, and register through the
public registry as an outside author's learners would (this module is the ``baselines`` entry
point of the ``fpo_envs.learners`` group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import agents
from agents.gaussian import GaussianConfig, GaussianLeader
from agents.gradient import GradientConfig, GradientLeader


def _check(config, learner: str) -> None:
    """The checks every baseline config shares: its knob's range, and no FPO penalty on top."""
    knob = "anchor" if hasattr(config, "anchor") else "cap"
    value = getattr(config, knob)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise ValueError(f"{knob} must be finite, got {value!r}")
    if knob == "anchor" and value < 0:
        raise ValueError(f"anchor must be >= 0, got {value}")
    if config.penalty != "none":
        raise ValueError(f"{learner} is RLHF with its own change; penalty must be 'none', got {config.penalty!r}")


class _Anchored:
    """Adds ``- anchor * ||y - y_0||^2`` to the objective; ``y_0`` is each copy's starting output."""

    def _start(self, obs, mask):
        super()._start(obs, mask)
        start = self.output if hasattr(self, "output") else self.theta
        if mask is None or not hasattr(self, "anchor_point"):
            self.anchor_point = start.clone() if hasattr(start, "clone") else start.copy()
        elif isinstance(start, np.ndarray):
            self.anchor_point[mask] = start[mask]
        else:  # the Gaussian family's torch mean
            import torch

            self.anchor_point[torch.as_tensor(mask)] = start[torch.as_tensor(mask)]

    def objective_grad(self, y, rm):
        return super().objective_grad(y, rm) - 2.0 * self.config.anchor * (y - self.anchor_point)

    def _state(self):
        state = super()._state()
        if hasattr(self, "anchor_point"):
            state["anchor_point"] = self.anchor_point
        return state

    def _set_state(self, state):
        super()._set_state(state)
        if "anchor_point" in state:
            point = state["anchor_point"]
            self.anchor_point = point.clone() if hasattr(point, "clone") else np.array(point, dtype=np.float64)


class _Capped:
    """Ascends ``min(r(y), cap) - c ||y||^2``: above the cap the RM's slope no longer pulls."""

    def objective_grad(self, y, rm):
        grad = super().objective_grad(y, rm)
        over = rm.reward(y) >= self.config.cap
        if not over.any():
            return grad
        return grad - over[..., None] * rm.grad_input(y)


@dataclass(frozen=True)
class AnchorGradientConfig(GradientConfig):
    """The gradient leader's settings and ``anchor``, the distance penalty's weight."""

    anchor: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-anchor")


@dataclass(frozen=True)
class AnchorGaussianConfig(GaussianConfig):
    """The Gaussian leader's settings and ``anchor``, the distance penalty's weight."""

    anchor: float = 0.005

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-anchor")


@dataclass(frozen=True)
class CapGradientConfig(GradientConfig):
    """The gradient leader's settings and ``cap``, the most RM score the objective counts."""

    cap: float = 5.0

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-cap")


@dataclass(frozen=True)
class CapGaussianConfig(GaussianConfig):
    """The Gaussian leader's settings and ``cap``, the most RM score the objective counts."""

    cap: float = 5.0

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-cap")


class AnchoredGradientLeader(_Anchored, GradientLeader):
    """The linear game's gradient leader with a distance anchor to its starting output."""

    config_cls = AnchorGradientConfig


class AnchoredGaussianLeader(_Anchored, GaussianLeader):
    """The neural game's Gaussian leader with a distance anchor to its starting mean."""

    config_cls = AnchorGaussianConfig


class CappedGradientLeader(_Capped, GradientLeader):
    """The linear game's gradient leader on the capped reward."""

    config_cls = CapGradientConfig


class CappedGaussianLeader(_Capped, GaussianLeader):
    """The neural game's Gaussian leader on the capped reward."""

    config_cls = CapGaussianConfig


agents.register("rlhf-anchor", {"linear": AnchoredGradientLeader, "neural": AnchoredGaussianLeader}, games=("linear", "neural"))
agents.register("rlhf-cap", {"linear": CappedGradientLeader, "neural": CappedGaussianLeader}, games=("linear", "neural"))
