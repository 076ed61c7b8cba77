"""A user's alignment algorithm, written outside the package against its public API only:
a penalty of its own on the built-in policy families, and a policy family of its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import agents
from agents.families.gradient import GradientConfig, GradientLeader


def abs_relaxed(z):
    """``|r - U| ||grad_phi r||^2``: self-influence penalized wherever the RM is wrong, either way."""
    return abs(z.reward - z.utility) * (z.grad_params * z.grad_params).sum(-1)


agents.register_penalty("abs-relaxed", abs_relaxed)
agents.register("abs-fpo", kwargs={"penalty": "abs-relaxed"}, games=("linear", "neural"))


@dataclass(frozen=True)
class MomentumConfig(GradientConfig):
    momentum: float = 0.5
    """Heavy-ball momentum on the output's gradient steps."""


class MomentumLeader(GradientLeader):
    """The gradient leader with heavy-ball momentum: its velocity is learned state."""

    config_cls = MomentumConfig

    def _start(self, obs, mask):
        super()._start(obs, mask)
        if mask is None:
            self.velocity = np.zeros_like(self.output)
        else:
            self.velocity[mask] = 0.0

    def _update(self, obs, info):
        rm = self._game().reward_model
        self.velocity = self.config.momentum * self.velocity + self.objective_grad(self.output, rm)
        self.output = self._clip(self.output + self.config.lr * self.velocity)

    def _state(self):
        return {**super()._state(), "velocity": getattr(self, "velocity", None)}

    def _set_state(self, state):
        super()._set_state(state)
        if state.get("velocity") is not None:
            self.velocity = np.array(state["velocity"])


agents.register("momentum-fpo", MomentumLeader, kwargs={"penalty": "practical"})
