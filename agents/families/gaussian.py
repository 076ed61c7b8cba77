"""The paper's Gaussian-policy family for the neural game.

The policy is ``y = theta + sigma * eps``. Each round it takes ``inner_steps``
reparameterized single-sample gradient steps on the objective
``J(y) = r(y) - c ||y||^2 - gamma * R(y)`` (:class:`agents.common.objectives.Objective`) against
the RM it sees (the gradient clipped element-wise), then emits the round's fresh samples.
``sigma`` and the step size follow ``decay = 1 - progress^4`` over the run. The penalty is
built from the RM's per-sample parameter gradients (closed form, differentiable in ``y``)
and differentiated with respect to ``theta`` by autograd. ``rlhf``, ``fpo-practical`` and
``fpo-relaxed`` are this family with ``penalty`` ``none``, ``practical`` and ``relaxed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from agents.common import objectives
from agents.common.base import Agent
from agents.common.objectives import PAPER_GAMMA, Objective, ObjectiveConfig
from agents.common.penalties import oracle_grad

_CLOSED_FORM = {objectives.PENALTIES["practical"].fn: "practical", objectives.PENALTIES["relaxed"].fn: "relaxed"}
"""The built-in penalties (by their functions, so one a user registers under the same name is
differentiated by autograd) whose gradient an MLP RM gives in closed form."""


@dataclass(frozen=True)
class GaussianConfig(ObjectiveConfig):
    """Settings of the Gaussian leader (paper values as defaults)."""

    paper_gamma: ClassVar[float] = PAPER_GAMMA["neural"]

    oracle_gradient: bool = False
    """Let ``grad U`` flow into the penalty's gradient (the paper detaches ``U`` here): the
    leader would then know how the human's judgement changes with its output, which a real
    policy cannot observe (see :class:`agents.families.gradient.GradientConfig`)."""
    inner_steps: int = 15
    """Reparameterized single-sample policy steps per round."""
    sigma_start: float = 0.1
    """Policy standard deviation at the start of the schedule."""
    sigma_end: float = 0.001
    """... and at its end."""
    lr_start: float = 0.05
    """Policy step size at the start of the schedule."""
    lr_end: float = 0.001
    """... and at its end."""
    grad_clip: float = 1.0
    """Each gradient coordinate is clipped to ``[-grad_clip, grad_clip]``."""
    schedule_rounds: int | None = None
    """Rounds over which the schedules run. ``None``: they follow the run, as
    stable-baselines3's schedules follow ``total_timesteps``: each ``learn(n)`` call stretches
    them to end at its last round (``num_rounds + n``); before any ``learn``, the env's
    episode length. Give a number to fix them (e.g. to continue one run over several calls)."""

    def __post_init__(self):
        super().__post_init__()
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be at least 1, got {self.inner_steps}")
        for name in ("sigma_start", "sigma_end", "lr_start", "lr_end", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.schedule_rounds is not None and self.schedule_rounds < 1:
            raise ValueError(f"schedule_rounds must be at least 1, got {self.schedule_rounds}")


class GaussianLeader(Agent):
    """A Gaussian policy over outputs, mean ``theta`` (one per vector-env copy).

    Its history adds, besides the env's ``info`` (measured at the mean of the round's
    samples), the same metrics at its own mean ``theta`` (``theta_true_utility``,
    ``theta_proxy_reward``, ``theta_signal_norm``, ``theta_noise_norm``, ``theta_rm_error``)
    and ``theta`` itself, shape ``(rounds, [num_envs,] d)``.
    """

    config_cls = GaussianConfig
    games = ("neural",)
    # One generator draws every copy's noise (as the paper's batched runs): the copies are
    # independent learners, but copy i is not the single env and learner seeded s + i.
    copies_match_single_envs = False
    vector_copies_are_seeds = True
    # Its policy steps for a round run right before the round, against the RM it faces and on
    # the schedule of the learn call that plays it (which stretches to that call's end).
    update_before_act = True

    def __init__(self, env, seed=None, **config):
        super().__init__(env, seed=seed, **config)
        c = self.config
        self.objective = Objective(env.unwrapped, c.penalty, c.gamma, c.oracle_gradient)
        # The learner's own torch generator, seeded through the API from its numpy one.
        self.generator = torch.Generator().manual_seed(int(self.rng.integers(2**63 - 1)))
        game = env.unwrapped
        self._schedule_before_learn = (
            c.schedule_rounds
            or getattr(game, "max_episode_steps", None)
            or (env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 4000)
        )

    @property
    def schedule_rounds(self) -> int:
        """The rounds the schedules run over: the config's ``schedule_rounds``; without one, the
        end of the current (or last) ``learn`` call (``num_rounds + n`` as ``learn(n)`` started,
        at least 1); before any ``learn``, the env's episode length (or, for a loaded learner,
        what it had when saved)."""
        if self.config.schedule_rounds is not None:
            return self.config.schedule_rounds
        if self.learn_end is not None:
            return max(self.learn_end, 1)
        return self._schedule_before_learn

    def _game(self):
        return self.env.unwrapped

    def schedule(self, round_index: int) -> tuple[float, float]:
        """``(sigma, lr)`` at a round: ``end + (start - end) * (1 - progress^4)``."""
        c = self.config
        progress = min(round_index / self.schedule_rounds, 1.0)
        decay = 1.0 - progress**4
        return c.sigma_end + (c.sigma_start - c.sigma_end) * decay, c.lr_end + (c.lr_start - c.lr_end) * decay

    def objective_grad(self, y: torch.Tensor, rm) -> torch.Tensor:
        """``grad_y J`` (equal to ``grad_theta J`` under the reparameterization)."""
        game, penalty = self._game(), self.objective.penalty
        if penalty is None:  # no second derivatives needed: the RM's input gradient
            return game.proxy_grad(y, rm.grad_input(y))
        if penalty.fn in _CLOSED_FORM and hasattr(rm, "penalty_input_grads"):
            # The built-in penalties of an MLP RM in closed form: the gradient autograd would
            # give (tested), several times faster.
            r, n, grad_r, grad_n = rm.penalty_input_grads(y)
            gamma = self.objective.gamma
            if _CLOSED_FORM[penalty.fn] == "practical":
                return game.proxy_grad(y, grad_r) - gamma * grad_n
            u = game.oracle.utility(y)
            grad_residual = grad_r - oracle_grad(game.oracle, y, u) if self.objective.oracle_gradient else grad_r
            return game.proxy_grad(y, grad_r) - gamma * (grad_residual * n[..., None] + (r - u)[..., None] * grad_n)
        y = y.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.objective.value(y, rm).sum(), y)
        return grad

    @property
    def device(self) -> torch.device:
        """Where the learner's tensors live: the env's ``device`` (the CPU unless the vector
        env was made with one)."""
        return getattr(self._game(), "device", torch.device("cpu"))

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normal noise from the learner's generator, drawn on the CPU and moved to
        :attr:`device`: a seed draws the same noise on every device."""
        eps = torch.randn(shape, generator=self.generator)
        return eps if self.device.type == "cpu" else eps.to(self.device)

    def _improve(self, theta: torch.Tensor, rm, round_index: int) -> torch.Tensor:
        sigma, lr = self.schedule(round_index)
        clip = self.config.grad_clip
        for _ in range(self.config.inner_steps):
            eps = self.randn(theta.shape)
            grad = self.objective_grad(theta + sigma * eps, rm).clamp(-clip, clip)
            theta = theta + lr * grad
        return theta

    def _bounded(self, y: torch.Tensor) -> torch.Tensor:
        bound = float(self._game().single_action_space.high.max())
        return y.clamp(-bound, bound)

    def _start(self, obs, mask):
        _, start = self._game().split_observation(obs)
        start = torch.as_tensor(start, dtype=torch.float32, device=self.device)
        if mask is None:
            self.theta = start.clone()
        else:
            mask = torch.as_tensor(mask, device=self.device)
            self.theta[mask] = start[mask]

    def _update(self, obs, info):
        """Before each round (``info=None``): ``inner_steps`` policy steps from ``theta`` against
        the RM the round faces, at the round's place in the schedule. After it: nothing to
        learn; returns the metrics at ``theta`` recorded as the round was played."""
        if info is not None:
            return self._theta_metrics
        self.theta = self._bounded(self._improve(self.theta, self._game().reward_model, self.num_rounds))
        return None

    def _act(self):
        """The round's ``samples_per_round`` samples around ``theta`` (drawn from the learner's
        generator); records the metrics at ``theta``."""
        game = self._game()
        sigma, _ = self.schedule(self.num_rounds)
        k = game.samples_per_round
        eps = self.randn((*self.theta.shape[:-1], k, self.theta.shape[-1]))
        samples = self._bounded(self.theta[..., None, :] + sigma * eps)
        self._record_theta(game)
        return samples.cpu().numpy()

    def _record_theta(self, game):
        """The metrics at ``theta``, scored by the RM before this round's update."""
        s, theta = game.signal_dims, self.theta
        with torch.no_grad():
            r, u = game.reward_model.reward(theta), game.oracle.utility(theta)
            self._theta_metrics = {
                "theta_true_utility": u.cpu().double().numpy(),
                "theta_proxy_reward": game.proxy(theta, r).cpu().double().numpy(),
                "theta_signal_norm": theta[..., :s].norm(dim=-1).cpu().double().numpy(),
                "theta_noise_norm": theta[..., s:].norm(dim=-1).cpu().double().numpy(),
                "theta_rm_error": (r - u).cpu().double().numpy(),
                "theta": theta.cpu().double().numpy().copy(),
            }

    def _predict(self, observation, deterministic=True):
        """The next round's samples against the RM in ``observation``, from the current
        ``theta``, without changing the learner (``deterministic``: ``theta'`` repeated)."""
        game = self._game()
        params, _ = game.split_observation(observation)
        rm = game.reward_model.replace(torch.as_tensor(params, dtype=torch.float32, device=self.device))
        saved = self.generator.get_state()
        theta = self._bounded(self._improve(self.theta.clone(), rm, self.num_rounds))
        k = game.samples_per_round
        if deterministic:
            action = theta[..., None, :].expand(*theta.shape[:-1], k, theta.shape[-1])
        else:
            sigma, _ = self.schedule(self.num_rounds)
            action = self._bounded(theta[..., None, :] + sigma * self.randn((*theta.shape[:-1], k, theta.shape[-1])))
        self.generator.set_state(saved)
        return action.cpu().numpy().astype(np.float32), None

    def _state(self):
        state = {"generator": self.generator.get_state(), "schedule_rounds": self.schedule_rounds}
        if hasattr(self, "theta"):
            state["theta"] = self.theta
        return state

    def _set_state(self, state):
        self.generator.set_state(state["generator"])
        self._schedule_before_learn = int(state["schedule_rounds"])
        if "theta" in state:
            self.theta = state["theta"].clone()
