"""The gradient leader of the linear game: one gradient step per round on the objective.

The policy is its output ``y``; each round it ascends ``J(y) = r(y) - c ||y||^2 - gamma R(y)``
(:class:`agents.common.objectives.Objective`) against the RM it sees. ``rlhf``, ``fpo-practical``
and ``fpo-relaxed`` are this family with ``penalty`` ``none``, ``practical`` and ``relaxed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agents.common.base import Agent
from agents.common.objectives import PAPER_GAMMA, Objective, ObjectiveConfig

GRADIENT_MODES = ("analytic", "finite-difference")
"""The values of :attr:`GradientConfig.gradient`: how the leader differentiates ``J``."""


@dataclass(frozen=True)
class GradientConfig(ObjectiveConfig):
    """Settings of the gradient leader (paper values as defaults)."""

    paper_gamma: ClassVar[float] = PAPER_GAMMA["linear"]

    oracle_gradient: bool = True
    """Let ``grad U`` flow into the penalty's gradient (the paper's finite differences do).

    A penalty that reads ``U`` (the relaxed one) then tells the leader how the human's
    judgement changes with its output, a signal a real policy cannot observe; off, ``U`` is a
    constant label at the output and only the RM's gradients steer. The linear game's relaxed
    FPO owes its reach of the ideal to it (``docs/benchmark.md``, the ``paper`` suite)."""
    lr: float = 0.02
    """Step size of the one gradient-ascent step per round."""
    gradient: str = "analytic"
    """``analytic`` (fast; a user penalty without a registered gradient is differentiated by
    central differences) or ``finite-difference`` (the paper's forward differences of ``J``)."""
    fd_eps: float = 0.05
    """Forward-difference step, one coordinate at a time."""

    def __post_init__(self):
        super().__post_init__()
        if self.gradient not in GRADIENT_MODES:
            raise ValueError(f"gradient must be one of {GRADIENT_MODES}, got {self.gradient!r}")
        if not self.lr > 0 or not self.fd_eps > 0:
            raise ValueError(f"lr and fd_eps must be positive, got lr={self.lr}, fd_eps={self.fd_eps}")


class GradientLeader(Agent):
    """Deterministic leader whose policy is its output ``y``, improved by one step per round.

    The first round emits the starting output of the reset observation (``y = 0`` by
    default); each later round emits ``y + lr * grad J(y)`` with ``J`` evaluated on the RM
    after its latest update. Outputs are clipped to the action space. On a vector env every
    copy has its own ``y``: a vector env of ``n`` copies is ``n`` independent learners.
    """

    config_cls = GradientConfig
    games = ("linear",)
    copies_match_single_envs = True
    vector_copies_are_seeds = True

    def __init__(self, env, seed=None, **config):
        super().__init__(env, seed=seed, **config)
        c = self.config
        self.objective = Objective(env.unwrapped, c.penalty, c.gamma, c.oracle_gradient)

    def _game(self):
        return self.env.unwrapped

    def objective_grad(self, y: np.ndarray, rm: Any) -> np.ndarray:
        """``grad_y J`` at outputs ``y`` of shape ``(*B, d)`` under ``rm`` (params ``(*B, p)``)."""
        if self.config.gradient == "analytic":
            return self.objective.grad_numpy(y, rm)
        eps = self.config.fd_eps
        d = y.shape[-1]
        shifted = y[..., None, :] + eps * np.eye(d)  # (*B, d, d): row i moves coordinate i
        rm_b = rm.replace(rm.params[..., None, :])
        u = None
        if self.objective.penalty is not None and not self.config.oracle_gradient:
            u = np.broadcast_to(self._game().oracle.utility(y)[..., None], shifted.shape[:-1])
        return (self.objective.value(shifted, rm_b, u) - self.objective.value(y, rm)[..., None]) / eps

    def _clip(self, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "_bounds"):
            space = self._game().single_action_space
            low, high = space.low.astype(np.float64), space.high.astype(np.float64)
            # A box with one bound clips against scalars, several times faster than against arrays.
            uniform = (low == low.flat[0]).all() and (high == high.flat[0]).all()
            self._bounds = (float(low.flat[0]), float(high.flat[0])) if uniform else (low, high)
        return np.clip(y, *self._bounds, out=out)

    def _start(self, obs, mask):
        _, y0 = self._game().split_observation(obs)
        if mask is None:
            self.output = y0.copy()
        else:
            self.output[mask] = y0[mask]

    def _act(self):
        return self.output  # the env copies an action (it never keeps the caller's array)

    def _update(self, obs, info):
        """One step on ``J`` against the RM the round just retrained: the next round's output."""
        rm = self._game().reward_model  # the live RM, in float64
        step = self.config.lr * self.objective_grad(self.output, rm)  # ours: moved and clipped in place
        step += self.output
        self.output = self._clip(step, out=step)

    def _predict(self, observation, deterministic=True):
        """The next output for ``observation`` (``[w, y]``): one step on ``J`` under the RM
        ``w`` from ``y``; the learner is left unchanged."""
        game = self._game()
        w, y = game.split_observation(observation)
        rm = game.reward_model.replace(w)
        action = self._clip(y + self.config.lr * self.objective_grad(y, rm))
        return action.astype(np.float32), None

    def _state(self):
        return {"output": self.output} if hasattr(self, "output") else {}

    def _set_state(self, state):
        if "output" in state:
            self.output = np.array(state["output"], dtype=np.float64)
