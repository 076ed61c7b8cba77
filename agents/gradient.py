"""The paper's leader for games whose output is a vector: one gradient step per round.

``rlhf`` ascends the proxy objective ``r(y) - c ||y||^2``; ``fpo-practical`` and
``fpo-relaxed`` subtract ``gamma * R(y)`` with the penalty from :mod:`agents.penalties`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agents import penalties
from agents.base import Agent

GRADIENT_MODES = ("analytic", "finite-difference")


@dataclass(frozen=True)
class RLHFConfig:
    """Settings of the gradient leader (paper values as defaults)."""

    lr: float = 0.02
    """Step size of the one gradient-ascent step per round."""
    gradient: str = "analytic"
    """``analytic`` (fast) or ``finite-difference`` (the paper's forward differences)."""
    fd_eps: float = 0.05
    """Forward-difference step, one coordinate at a time."""

    def __post_init__(self):
        if self.gradient not in GRADIENT_MODES:
            raise ValueError(f"gradient must be one of {GRADIENT_MODES}, got {self.gradient!r}")
        if not self.lr > 0 or not self.fd_eps > 0:
            raise ValueError("lr and fd_eps must be positive")


@dataclass(frozen=True)
class PracticalFPOConfig(RLHFConfig):
    """RLHF settings plus the penalty weight."""

    gamma: float = 0.1
    """Weight of the penalty in ``r - c ||y||^2 - gamma * R``."""


@dataclass(frozen=True)
class RelaxedFPOConfig(PracticalFPOConfig):
    """Practical-FPO settings plus the oracle-gradient switch."""

    oracle_gradient: bool = True
    """Let ``grad U`` flow into the penalty's gradient (the paper's finite differences do)."""


class GradientLeader(Agent):
    """Deterministic leader whose policy is its output ``y``, improved by one step per round.

    The first round emits the starting output of the reset observation (``y = 0`` by
    default); each later round emits ``y + lr * grad J(y)`` with ``J`` evaluated on the RM
    after its latest update. Outputs are clipped to the action space. On a vector env every
    copy has its own ``y``.
    """

    penalty: str | None = None

    def _game(self):
        return self.env.unwrapped

    def objective(self, y: np.ndarray, rm: Any, u: np.ndarray | None = None) -> np.ndarray:
        """``J(y) = r(y) - c ||y||^2 - gamma * R(y)``; ``u`` replaces ``U(y)`` inside ``R`` if given."""
        game = self._game()
        value = rm.reward(y) - game.action_cost * (y * y).sum(-1)
        if self.penalty is None:
            return value
        if self.penalty == "practical" or u is None:
            return value - self.config.gamma * penalties.penalty(self.penalty, rm, game.oracle, y)
        g = rm.grad_params(y)
        return value - self.config.gamma * penalties.relaxed_penalty(g, penalties.overconfidence(rm.reward(y), u))

    def objective_grad(self, y: np.ndarray, rm: Any) -> np.ndarray:
        """``grad_y J`` at outputs ``y`` of shape ``(*B, d)`` under ``rm`` (params ``(*B, p)``)."""
        game = self._game()
        if self.config.gradient == "finite-difference":
            eps = self.config.fd_eps
            d = y.shape[-1]
            shifted = y[..., None, :] + eps * np.eye(d)  # (*B, d, d): row i moves coordinate i
            rm_b = rm.replace(rm.params[..., None, :])
            u = None
            if self.penalty == "relaxed" and not self.config.oracle_gradient:
                u = np.broadcast_to(game.oracle.utility(y)[..., None], shifted.shape[:-1])
            return (self.objective(shifted, rm_b, u) - self.objective(y, rm)[..., None]) / eps
        grad = rm.grad_input(y) - 2.0 * game.action_cost * y
        if self.penalty is not None:
            oracle_gradient = getattr(self.config, "oracle_gradient", True)
            _, d_pen = penalties.penalty_grad(self.penalty, rm, game.oracle, y, oracle_gradient)
            grad = grad - self.config.gamma * d_pen
        return grad

    def _clip(self, y: np.ndarray) -> np.ndarray:
        space = self._game().single_action_space
        return np.clip(y, space.low.astype(np.float64), space.high.astype(np.float64))

    def _start(self, obs, mask):
        _, y0 = self._game().split_observation(obs)
        if mask is None:
            self.output = y0.copy()
        else:
            self.output[mask] = y0[mask]

    def _act(self):
        return self.output.copy()

    def _observe(self, obs):
        rm = self._game().reward_model  # the live RM, in float64
        self.output = self._clip(self.output + self.config.lr * self.objective_grad(self.output, rm))

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        game = self._game()
        w, y = game.split_observation(observation)
        rm = game.reward_model.replace(w)
        action = self._clip(y + self.config.lr * self.objective_grad(y, rm))
        return action.astype(np.float32), None

    def _state(self):
        return {"output": self.output} if hasattr(self, "output") else {}

    def _set_state(self, arrays):
        if "output" in arrays:
            self.output = arrays["output"]


class RLHF(GradientLeader):
    """Standard iterative RLHF: ascend the RM's current score."""

    name = "rlhf"
    config_cls = RLHFConfig


class PracticalFPO(GradientLeader):
    """FPO with the practical penalty ``||grad_phi r||^2`` (no oracle needed)."""

    name = "fpo-practical"
    config_cls = PracticalFPOConfig
    penalty = "practical"


class RelaxedFPO(GradientLeader):
    """FPO with the relaxed penalty ``(r - U) ||grad_phi r||^2`` (uses the oracle)."""

    name = "fpo-relaxed"
    config_cls = RelaxedFPOConfig
    penalty = "relaxed"
