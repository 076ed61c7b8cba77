"""Learners from performative prediction, the feedback loop's closest relative (Perdomo et al.
2020; Izzo et al. 2021).

In performative prediction a deployed model shifts the distribution it is then retrained on.
Here the leader's output shifts the data the RM is retrained on, so the RM it will face is a
function ``phi'(y)`` of what it plays:

- ``rgd``, repeated gradient descent: one gradient step per round on the objective under the
  RM it faces, the RM's dependence on ``y`` ignored. This is exactly the ``rlhf`` update
  (tested: identical histories); registered under its own name so that the literature's
  method has its place on a leaderboard.
- ``rrm``, repeated risk minimisation: each round the leader *best-responds* to the RM it
  faces, ``y <- argmax_y r_phi(y) - c ||y||^2``. On the linear game that maximiser is closed
  form, ``clip(grad_y r / (2c))`` (the objective is a concave quadratic and separable within
  the box); on the neural game it is approximated by ``inner_steps`` policy steps per round
  (4x rlhf's). RRM and RGD converge to *performatively stable* points, optimal against the RM
  they themselves induced: the collapse.
- ``perfgd``, performative gradient descent: it ascends ``proxy_{phi'(y)}(y)`` with the
  follower's response estimated from what it has seen, ``grad_y proxy + steer * J^T
  grad_phi r_phi(y)``, where ``J ~ d phi' / d y`` is a ridge least-squares fit of the RM's
  observed parameter changes ``phi_{t+1} - phi_t`` against the outputs ``y_t`` it played over
  the last ``window`` rounds (centred, so the drift common to all rounds drops out). Unlike
  ``fpo-exact`` it needs no model of the follower's step, only the RM's parameters each round
  (the observation) and its parameter gradient; unlike the FPO penalties it needs no oracle.
  The linear leader's output is deterministic, so it plays ``y + explore * N(0, I)`` (from
  its own seeded generator) to see the response in every direction; the neural policy's
  samples vary already.

All three run on the linear and neural games (``rgd``, rlhf's update, on the token game too),
single and vector envs, and register through
the public registry (the ``performative`` entry point of ``fpo_envs.learners``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import agents
from agents.common.objectives import check_knob, check_no_penalty
from agents.families.gaussian import GaussianConfig, GaussianLeader
from agents.families.gradient import GradientConfig, GradientLeader


# RRM ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RRMGradientConfig(GradientConfig):
    """The gradient leader's settings; ``lr`` is unused: each round's output is the best
    response itself."""

    def __post_init__(self):
        super().__post_init__()
        check_no_penalty(self, "rrm")


class RRMGradientLeader(GradientLeader):
    """Repeated risk minimisation on the linear game: each round the exact maximiser of
    ``r_w(y) - c ||y||^2`` over the action box against the RM just retrained."""

    config_cls = RRMGradientConfig

    def best_response(self, rm, y) -> np.ndarray:
        """``clip(w / (2c))`` per coordinate (``w = grad_y r``, the same at every ``y`` of a
        linear RM; with ``c = 0``, the box's corner ``sign(w) * bound``)."""
        w = rm.grad_input(y)
        c = self._game().action_cost
        if c == 0:
            return self._clip(np.sign(w) * np.finfo(np.float64).max)
        return self._clip(w / (2.0 * c))

    def _update(self, obs, info):
        self.output = self.best_response(self._game().reward_model, self.output)

    def _predict(self, observation, deterministic=True):
        """The best response to the RM in ``observation``; the learner is left unchanged."""
        game = self._game()
        w, y = game.split_observation(observation)
        return self.best_response(game.reward_model.replace(w), y).astype(np.float32), None


@dataclass(frozen=True)
class RRMGaussianConfig(GaussianConfig):
    """The Gaussian leader's settings, with 4x rlhf's policy steps per round (the best
    response to the frozen RM, approximated)."""

    inner_steps: int = 60

    def __post_init__(self):
        super().__post_init__()
        check_no_penalty(self, "rrm")


class RRMGaussianLeader(GaussianLeader):
    """Repeated risk minimisation on the neural game: ``inner_steps`` policy steps per round
    towards the best response to the RM it faces."""

    config_cls = RRMGaussianConfig


# PerfGD ------------------------------------------------------------------------------------
def _check_perfgd(config) -> None:
    check_no_penalty(config, "perfgd")
    if isinstance(config.window, bool) or not isinstance(config.window, (int, np.integer)) or config.window < 2:
        raise ValueError(f"window must be a whole number >= 2 (rounds in the response fit), got {config.window!r}")
    check_knob("ridge", config.ridge, minimum=0.0, strict=True)
    check_knob("steer", config.steer, minimum=0.0)
    check_knob("explore", config.explore, minimum=0.0)


class _ResponseFit:
    """The last ``window`` rounds' outputs and RM parameter changes of every copy, and the
    ridge fit of ``J^T``, the transposed response ``d phi' / d y`` (``(*B, d, p)``), from them.

    A ring buffer with running sums (``sum y``, ``sum dphi``, ``sum y y^T``, ``sum y dphi^T``):
    a round costs ``O(d p)`` per copy, not ``O(window d p)``. Held in float64 numpy whatever
    the game's dtype."""

    def __init__(self, batch: tuple[int, ...], window: int, d: int, p: int, ridge: float):
        self.window, self.ridge = window, ridge
        self.y = np.zeros((*batch, window, d))
        self.dphi = np.zeros((*batch, window, p))
        self.count = np.zeros(batch, dtype=np.int64)
        self.position = 0  # the ring slot the next round is written to (the same for every copy)
        self.sums = {
            "y": np.zeros((*batch, d)),
            "dphi": np.zeros((*batch, p)),
            "yy": np.zeros((*batch, d, d)),
            "ydphi": np.zeros((*batch, d, p)),
        }
        self.jacobian_t = np.zeros((*batch, d, p))

    def clear(self, mask) -> None:
        """Forget the copies in ``mask`` (all: ``None``), as their episodes restart."""
        index = ... if mask is None else np.asarray(mask)
        self.count[index] = 0
        self.y[index] = 0.0
        self.dphi[index] = 0.0
        for total in self.sums.values():
            total[index] = 0.0
        self.jacobian_t[index] = 0.0

    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """The window's ``(y, dphi)`` in the order played, oldest first (slots not yet filled
        are zeros and come first)."""
        order = (np.arange(self.window) + self.position) % self.window
        return self.y[..., order, :], self.dphi[..., order, :]

    def push(self, y: np.ndarray, dphi: np.ndarray) -> None:
        """Add one round per copy (the oldest leaves a full window) and refit."""
        slot = self.position
        old_y, old_dphi = self.y[..., slot, :], self.dphi[..., slot, :]  # zeros until the window is full
        sums = self.sums
        sums["y"] += y - old_y
        sums["dphi"] += dphi - old_dphi
        sums["yy"] += y[..., :, None] * y[..., None, :] - old_y[..., :, None] * old_y[..., None, :]
        sums["ydphi"] += y[..., :, None] * dphi[..., None, :] - old_y[..., :, None] * old_dphi[..., None, :]
        self.y[..., slot, :], self.dphi[..., slot, :] = y, dphi
        self.position = (slot + 1) % self.window
        self.count = np.minimum(self.count + 1, self.window)
        # Centred over the window: sum (y - mean)(dphi - mean)^T = sum y dphi^T - n mean_y mean_dphi^T.
        n = np.maximum(self.count, 1)[..., None, None].astype(np.float64)
        mean_y = sums["y"][..., :, None] / n
        gram = sums["yy"] - n * mean_y * np.swapaxes(mean_y, -1, -2)
        cross = sums["ydphi"] - mean_y * sums["dphi"][..., None, :]
        d = gram.shape[-1]
        # The ridge is relative to the outputs' spread, so the fit does not depend on their scale.
        scale = np.trace(gram, axis1=-2, axis2=-1) / d
        reg = gram + (self.ridge * np.maximum(scale, 0.0) + 1e-12)[..., None, None] * np.eye(d)
        self.jacobian_t = np.where((self.count >= 2)[..., None, None], np.linalg.solve(reg, cross), 0.0)

    def state(self) -> dict:
        return {
            "y": self.y,
            "dphi": self.dphi,
            "count": self.count,
            "position": self.position,
            "jacobian_t": self.jacobian_t,
            **{f"sum_{k}": v for k, v in self.sums.items()},
        }

    @classmethod
    def from_state(cls, state: dict, ridge: float) -> "_ResponseFit":
        y = np.array(state["y"], dtype=np.float64)
        fit = cls(y.shape[:-2], y.shape[-2], y.shape[-1], np.shape(state["dphi"])[-1], ridge)
        fit.y, fit.dphi = y, np.array(state["dphi"], dtype=np.float64)
        fit.count = np.array(state["count"], dtype=np.int64)
        fit.position = int(state["position"])
        fit.jacobian_t = np.array(state["jacobian_t"], dtype=np.float64)
        fit.sums = {k: np.array(state[f"sum_{k}"], dtype=np.float64) for k in fit.sums}
        return fit


class _PerfGD:
    """Adds the estimated steering term ``steer * J^T grad_phi r(y)`` to the family's
    objective gradient and keeps the response fit up to date from the observations."""

    def _start(self, obs, mask):
        super()._start(obs, mask)
        params = np.asarray(self._game().split_observation(obs)[0], dtype=np.float64)
        if mask is None or not hasattr(self, "fit"):
            c = self.config
            self.fit = _ResponseFit(params.shape[:-1], c.window, self._game().dim, params.shape[-1], c.ridge)
            self._prev_params = params.copy()
        else:
            self.fit.clear(mask)
            self._prev_params[mask] = params[mask]

    def _push(self, obs, played: np.ndarray) -> None:
        params = np.asarray(self._game().split_observation(obs)[0], dtype=np.float64)
        self.fit.push(np.asarray(played, dtype=np.float64), params - self._prev_params)
        self._prev_params = params

    def steering(self, y, rm):
        """``J^T grad_phi r_phi(y)``: the output gradient's change through the RM's estimated
        response, shape of ``y``."""
        _, g = rm.reward_and_grad_params(y)
        jt = self.fit.jacobian_t
        if isinstance(g, torch.Tensor):
            cached = getattr(self, "_jt_torch", None)
            if cached is None or cached[0] is not jt or cached[1].dtype != g.dtype:
                self._jt_torch = (jt, torch.as_tensor(jt, dtype=g.dtype, device=g.device))  # once per fit, not per step
            jt = self._jt_torch[1]
        if y.ndim == jt.ndim:  # several outputs per copy: (*B, k, d)
            jt = jt[..., None, :, :]
        return (jt @ g[..., None])[..., 0]

    def objective_grad(self, y, rm):
        grad = super().objective_grad(y, rm)
        if self.config.steer == 0 or not hasattr(self, "fit"):
            return grad
        return grad + self.config.steer * self.steering(y, rm)

    def _state(self):
        state = super()._state()
        if hasattr(self, "fit"):
            state["fit"] = self.fit.state()
            state["prev_params"] = self._prev_params
        return state

    def _set_state(self, state):
        super()._set_state(state)
        if "fit" in state:
            self.fit = _ResponseFit.from_state(state["fit"], self.config.ridge)
            self._prev_params = np.array(state["prev_params"], dtype=np.float64)


@dataclass(frozen=True)
class PerfGDGradientConfig(GradientConfig):
    """The gradient leader's settings and PerfGD's: ``window`` (rounds in the response fit),
    ``ridge`` (relative to the outputs' spread), ``steer`` (the estimated term's weight; 1:
    the performative gradient itself) and ``explore`` (the played output's perturbation)."""

    window: int = 60
    ridge: float = 0.1
    steer: float = 1.0
    explore: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        _check_perfgd(self)


@dataclass(frozen=True)
class PerfGDGaussianConfig(GaussianConfig):
    """The Gaussian leader's settings and PerfGD's (see :class:`PerfGDGradientConfig`); the
    policy's own samples vary, so ``explore`` defaults to 0."""

    window: int = 60
    ridge: float = 0.1
    steer: float = 1.0
    explore: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        _check_perfgd(self)


class PerfGDGradientLeader(_PerfGD, GradientLeader):
    """PerfGD on the linear game: the gradient leader with the estimated steering term."""

    config_cls = PerfGDGradientConfig
    # One generator draws every copy's exploration: copy i is not the single learner s + i.
    copies_match_single_envs = False

    def _act(self):
        y = self.output
        if self.config.explore:
            y = self._clip(y + self.config.explore * self.rng.standard_normal(y.shape))
        self._played = y
        return y.copy()

    def _update(self, obs, info):
        self._push(obs, self._played)
        return super()._update(obs, info)

    def _state(self):
        state = super()._state()
        if hasattr(self, "_played"):
            state["played"] = self._played
        return state

    def _set_state(self, state):
        super()._set_state(state)
        if "played" in state:
            self._played = np.array(state["played"], dtype=np.float64)


class PerfGDGaussianLeader(_PerfGD, GaussianLeader):
    """PerfGD on the neural game: the Gaussian leader with the estimated steering term,
    fitted against the mean of each round's samples."""

    config_cls = PerfGDGaussianConfig

    def _act(self):
        samples = super()._act()
        if self.config.explore:
            noise = torch.randn(samples.shape, generator=self.generator).numpy()  # on the CPU, as the samples are
            samples = self._bounded(torch.as_tensor(samples + self.config.explore * noise)).numpy()
        return samples

    def _update(self, obs, info):
        if info is not None:  # after the step: the round's mean output and the RM's change
            self._push(obs, self._game().split_observation(obs)[1])
        return super()._update(obs, info)


agents.register("rgd", kwargs={"penalty": "none"}, games=("linear", "neural", "token"))
agents.register("rrm", {"linear": RRMGradientLeader, "neural": RRMGaussianLeader}, games=("linear", "neural"))
agents.register("perfgd", {"linear": PerfGDGradientLeader, "neural": PerfGDGaussianLeader}, games=("linear", "neural"))
