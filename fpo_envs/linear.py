"""The linear blind-spot game ``FPO/LinearRM-v0`` (ARCHITECTURE.md, section 2, LinearRM)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from fpo_envs.core import (
    CostProxy,
    FeedbackLoopEnv,
    FeedbackLoopVectorEnv,
    check_bounded_array,
    check_finite_array,
    check_settings,
    game_arguments,
)
from fpo_envs.ensemble import RewardModelEnsemble

PARAM_BOUND = 1e6
"""RM parameters beyond this magnitude (or non-finite) end the episode as diverged."""


class LinearRewardModel:
    """The linear RM ``r_w(y) = w . y`` trained by regression on the oracle's labels.

    Every method broadcasts over leading batch dimensions: ``w`` has shape ``(*B, d)`` and
    an output ``y`` shape ``(*B, d)`` (or anything that broadcasts against ``w``).
    The follower step on a labelled output ``(y, u)`` is the paper's
    ``w <- (1 - weight_decay) w - lr * grad_w (w . y - u)^2``.

    Args:
        w: the parameters, shape ``(*B, d)``; held by reference (the env's live state).
        lr: the follower's step size ``eta_F``.
        weight_decay: the multiplicative shrinkage applied at every step.
    """

    loss_kind = "regression"

    def __init__(self, w: np.ndarray, lr: float = 0.005, weight_decay: float = 1e-4):
        self.w = w
        self.lr = lr
        self.weight_decay = weight_decay

    @property
    def params(self) -> np.ndarray:
        """The parameters ``phi = w``, shape ``(*B, p)`` with ``p = d``."""
        return self.w

    def replace(self, params: np.ndarray) -> "LinearRewardModel":
        """The same RM with other parameters (e.g. from an observation, or expanded for a
        batch). A torch tensor is kept as it is, so the RM's methods stay differentiable."""
        if not isinstance(params, np.ndarray) and hasattr(params, "requires_grad"):
            return LinearRewardModel(params, self.lr, self.weight_decay)
        return LinearRewardModel(np.asarray(params, dtype=np.float64), self.lr, self.weight_decay)

    def with_params(self, params: np.ndarray) -> "LinearRewardModel":
        """:meth:`replace`: the linear RM keeps no optimizer state or buffer to carry over."""
        return self.replace(params)

    def reward(self, y: np.ndarray) -> np.ndarray:
        """``r_w(y)``, shape ``(*B,)``."""
        return (self.w * y).sum(-1)

    def grad_params(self, y: np.ndarray) -> np.ndarray:
        """``grad_w r_w(y) = y``, shape ``(*B, p)``."""
        return np.broadcast_to(y, np.broadcast_shapes(np.shape(y), np.shape(self.w))).copy()

    def reward_and_grad_params(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(r_w(y), grad_w r_w(y))`` in one call, as every regression RM offers."""
        return self.reward(y), self.grad_params(y)

    def grad_input(self, y: np.ndarray) -> np.ndarray:
        """``grad_y r_w(y) = w``, shape ``(*B, d)``."""
        return np.broadcast_to(self.w, np.broadcast_shapes(np.shape(y), np.shape(self.w))).copy()

    def grad_params_vjp(self, y: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``grad_y <grad_w r_w(y), v>`` with ``v`` held fixed, shape ``(*B, d)``.

        The mixed second derivative that carries the practical penalty's gradient to the
        output: here ``d(grad_w r)/dy`` is the identity, so the product is ``v``.
        """
        return np.broadcast_to(v, np.broadcast_shapes(np.shape(y), np.shape(v))).copy()

    def loss(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The follower loss ``(r_w(y) - u)^2``, shape ``(*B,)``."""
        return (self.reward(y) - u) ** 2

    def loss_grad(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``grad_w (r_w(y) - u)^2 = 2 (r_w(y) - u) y``, shape ``(*B, p)``."""
        return 2.0 * (self.reward(y) - u)[..., None] * y

    def preview_update(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The parameters after one follower step on ``(y, u)``, without applying it."""
        return (1.0 - self.weight_decay) * self.w - self.lr * self.loss_grad(y, u)

    def stepped(self, y, u, steps: int = 1) -> "LinearRewardModel":
        """The RM after ``steps`` follower steps on ``(y, u)``, not applied: the env's own step
        repeated. With torch tensors (parameters from :meth:`replace`) it is differentiable in
        ``y`` and ``u``, so a learner can differentiate through the follower (``fpo-exact``)."""
        rm = self
        for _ in range(steps):
            rm = rm.replace(rm.preview_update(y, u))
        return rm

    def update(self, y: np.ndarray, u: np.ndarray, reward: np.ndarray | None = None) -> None:
        """Take the follower step in place (the env's state changes); ``reward``, if given,
        is ``r_w(y)`` already computed (it saves the env a second pass)."""
        if reward is None:
            self.w[...] = self.preview_update(y, u)
        else:
            self.w[...] = (1.0 - self.weight_decay) * self.w - self.lr * (2.0 * (reward - u)[..., None] * y)


class GaussianBumpOracle:
    """The human's true utility ``U(y) = peak * exp(-width * ||y - y*||^2)``.

    Args:
        ideal: the human ideal ``y*``, shape ``(d,)``.
        peak: ``U(y*)``.
        width: the bump's curvature.
    """

    def __init__(self, ideal: np.ndarray, peak: float = 10.0, width: float = 0.3):
        self.ideal = np.asarray(ideal, dtype=np.float64)
        self.peak = peak
        self.width = width

    def _ideal_like(self, y):
        if isinstance(y, np.ndarray) or np.isscalar(y):
            return self.ideal
        import torch  # the neural game passes torch tensors, possibly requiring grad

        return torch.as_tensor(self.ideal, dtype=y.dtype, device=y.device)

    def utility(self, y):
        """``U(y)``, shape ``(*B,)``; numpy or torch (differentiable) in, the same out."""
        scaled = -self.width * ((y - self._ideal_like(y)) ** 2).sum(-1)
        return self.peak * (np.exp(scaled) if isinstance(scaled, (np.ndarray, float)) else scaled.exp())

    def grad(self, y):
        """``grad_y U(y) = -2 width U(y) (y - y*)``, shape ``(*B, d)``."""
        return (-2.0 * self.width * self.utility(y))[..., None] * (y - self._ideal_like(y))

    def label(self, y: np.ndarray) -> np.ndarray:
        """The oracle's label for the follower's regression: ``U(y)``."""
        return self.utility(y)

    def optimum(self) -> tuple[np.ndarray, float]:
        """The human ideal ``y*`` and ``U(y*)``."""
        return self.ideal.copy(), float(self.peak)


class LinearGame(CostProxy):
    """The linear game's hooks, shared by the single and the vector environment (and the
    class learners recognise the game by)."""

    reset_options = ("rm_params", "output")

    def _setup(
        self,
        dim: int,
        signal_dims: int,
        ideal_value: float,
        utility_peak: float,
        utility_width: float,
        rm_lr: float,
        rm_weight_decay: float,
        rm_init_noise: float,
        action_cost: float,
        output_bound: float,
        label_noise: float = 0.0,
        rm_ensemble: int = 1,
    ) -> None:
        check_settings(
            {"utility_width": utility_width, "rm_lr": rm_lr, "output_bound": output_bound},
            {
                "rm_weight_decay": rm_weight_decay,
                "rm_init_noise": rm_init_noise,
                "action_cost": action_cost,
                "label_noise": label_noise,
            },
            integers={"dim": dim, "signal_dims": signal_dims, "rm_ensemble": rm_ensemble},
            real={"ideal_value": ideal_value, "utility_peak": utility_peak},
        )
        self.rm_ensemble = rm_ensemble
        self.oracle = bump_oracle(dim, signal_dims, ideal_value, utility_peak, utility_width, output_bound)
        self.dim = dim
        self.signal_dims = signal_dims
        self.action_cost = action_cost
        self.rm_init_noise = rm_init_noise
        self.label_noise = float(label_noise)
        self._rm_lr, self._rm_weight_decay = rm_lr, rm_weight_decay
        self.single_action_space = spaces.Box(-output_bound, output_bound, (dim,), np.float32)
        # An RM parameter beyond PARAM_BOUND counts as diverged, so the observation stays in its box.
        self.num_params = p = dim * rm_ensemble
        low = np.concatenate([np.full(p, -PARAM_BOUND), self.single_action_space.low]).astype(np.float32)
        high = np.concatenate([np.full(p, PARAM_BOUND), self.single_action_space.high]).astype(np.float32)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        # Until the first reset the RM sits at its unperturbed start, so it can be inspected.
        w0 = np.zeros(self._member_shape)
        w0[..., :signal_dims] = 1.0
        self._load_state({"w": np.broadcast_to(w0, self.batch_shape + w0.shape), "y": np.zeros(self.batch_shape + (dim,))})

    @property
    def _member_shape(self) -> tuple[int, ...]:
        """One copy's RM parameters: ``(d,)``, or ``(K, d)`` for an ensemble of ``K``."""
        return (self.dim,) if self.rm_ensemble == 1 else (self.rm_ensemble, self.dim)

    def optimum(self) -> tuple[np.ndarray, float]:
        """The human ideal ``y*`` and its true utility ``U(y*)``."""
        return self.oracle.optimum()

    def _draw_initial(self, rng, options, index):
        d = self.dim
        shape = self._member_shape
        if "rm_params" in options:
            w = _per_copy(options["rm_params"], shape, index, "rm_params")
        else:
            # Member k's draw follows member k-1's, so member 0 is the single RM of the same seed.
            w = np.zeros(shape)
            w[..., : self.signal_dims] = 1.0
            w = w + rng.normal(0.0, self.rm_init_noise, shape)
        y = (
            _per_copy(options["output"], (d,), index, "output", self.single_action_space.high[0])
            if "output" in options
            else np.zeros(d)
        )
        return {"w": w, "y": y}

    def _get_state(self):
        rm = self.reward_model
        w = rm.stacked.w if isinstance(rm, RewardModelEnsemble) else rm.w
        return {"w": w.copy(), "y": self._output.copy()}

    def _load_state(self, state):
        rm = LinearRewardModel(state["w"].copy(), self._rm_lr, self._rm_weight_decay)
        self.reward_model = rm if self.rm_ensemble == 1 else RewardModelEnsemble(rm)
        self._output = state["y"].copy()

    def _check_action(self, action):
        return check_bounded_array(action, self.batch_shape + (self.dim,), float(self.single_action_space.high[0]), "action")

    def _play(self, y):
        s = self.signal_dims
        r = self.reward_model.reward(y)
        u = self.oracle.label(y)
        spread = self.reward_model.member_spread(y) if self.rm_ensemble > 1 else None  # before the update, as rm_error
        self.reward_model.update(y, self._noisy_labels(u), reward=r)
        self._output = y
        proxy = self.proxy(y, r)
        squares = y * y
        info = {
            "true_utility": u,
            "proxy_reward": proxy,
            "signal_norm": np.sqrt(squares[..., :s].sum(-1)),
            "noise_norm": np.sqrt(squares[..., s:].sum(-1)),
            "rm_error": r - u,
        }
        if self.rm_ensemble > 1:
            info["ensemble_spread"] = spread
        diverged = ~(np.abs(self.reward_model.params) <= PARAM_BOUND).all(-1)  # NaN compares False
        return proxy, info, diverged

    def _observation(self):
        return np.concatenate([self.reward_model.params, self._output], axis=-1).astype(np.float32)

    def split_observation(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split an observation into the RM parameters ``w`` (an ensemble's members flattened,
        ``K * d``) and the last output ``y``."""
        obs = np.asarray(obs, dtype=np.float64)
        return obs[..., : self.num_params], obs[..., self.num_params :]


def _per_copy(value, shape, index, name, bound=None):
    """Reset option ``name`` for copy ``index`` (given once for all copies, or per copy); a
    float array, as an action is (:func:`fpo_envs.core.check_finite_array`)."""
    array = np.asarray(value)
    if index is not None and array.ndim == len(shape) + 1:
        array = array[index]
    if bound is None:
        return check_finite_array(array, shape, f"reset option {name!r}")
    return check_bounded_array(array, shape, float(bound), f"reset option {name!r}")


def bump_oracle(
    dim: int, signal_dims: int, ideal_value: float, peak: float, width: float, output_bound: float
) -> GaussianBumpOracle:
    """The oracle of a vector game: a bump around ``y* = (ideal_value, ..., 0, ...)`` whose
    first ``signal_dims`` coordinates are signal, checked to lie inside the action bounds."""
    if not 0 < signal_dims <= dim:
        raise ValueError(f"signal_dims must be in [1, dim={dim}], got {signal_dims}")
    ideal = np.zeros(dim)
    ideal[:signal_dims] = ideal_value
    if np.abs(ideal).max() >= output_bound:
        raise ValueError(f"output_bound={output_bound} must exceed the ideal's coordinates ({ideal_value})")
    return GaussianBumpOracle(ideal, peak, width)


class LinearRMEnv(LinearGame, FeedbackLoopEnv):
    """The linear blind-spot game: a linear reward model retrained on the policy's outputs.

    ## Description
    The policy (leader) emits an output ``y`` in ``R^d``. The first ``signal_dims``
    coordinates are *signal*, the rest *noise*. The human's true utility is a bump around
    the ideal ``y* = (2, 2, 2, 0, ..., 0)``: ``U(y) = 10 exp(-0.3 ||y - y*||^2)``. The
    reward model (follower) is linear, ``r_w(y) = w . y``, starts near ``(1, 1, 1, 0, ...)``
    and is retrained each round on the output and its label:
    ``w <- (1 - 1e-4) w - 0.005 * 2 (w . y - U(y)) y``. Because a linear RM cannot
    represent the bump, maximizing ``w . y`` pushes outputs into directions where the RM
    is wrong and, through the retraining, entrenches them: proxy up, true utility down.

    ## Action Space
    ``Box(-output_bound, output_bound, (dim,), float32)``: the output ``y`` of this round.
    An action of the wrong shape, with NaN/inf, outside the bounds, or not of floats (an
    integer, bool or complex array; a float array of any width or a list of floats plays)
    raises ``ValueError``.

    ## Observation Space
    ``Box((2 * dim,), float32)``: ``[w, y]``, the RM's parameters *after* this round's
    update (the RM is part of the state; within ``±PARAM_BOUND = 1e6``) and the output just emitted (at reset,
    the starting output, which a leader emits in its first round). ``split_observation``
    splits it.

    ## Rewards
    The proxy objective ``w . y - action_cost * ||y||^2``, scored with the RM before its update.

    ## Info
    ``true_utility`` ``U(y)``, ``proxy_reward`` (the reward), ``signal_norm`` ``||y[:3]||``,
    ``noise_norm`` ``||y[3:]||``, ``rm_error`` ``w . y - U(y)`` (before the update),
    ``diverged``.

    ## Starting State
    ``w = (1, ..., 1, 0, ..., 0) + N(0, rm_init_noise^2)`` per coordinate, ``y = 0``.
    ``reset(options={"rm_params": w, "output": y})`` starts from given values instead.

    ## Episode End
    Truncation after 300 rounds (``max_episode_steps``). Termination when the RM update
    is not finite or leaves ``±PARAM_BOUND`` (``info["diverged"] = True``; the update is rolled back).

    ## Arguments
    - ``dim`` (50): output dimension ``d``.
    - ``signal_dims`` (3): how many leading coordinates are signal.
    - ``ideal_value`` (2.0): each signal coordinate of the ideal ``y*``.
    - ``utility_peak`` (10.0), ``utility_width`` (0.3): ``U(y*)`` and the bump's curvature.
    - ``rm_lr`` (0.005), ``rm_weight_decay`` (1e-4): the follower's step size and decay.
    - ``rm_init_noise`` (0.1): standard deviation of the RM's initial perturbation.
    - ``action_cost`` (0.1): ``c`` in the proxy objective.
    - ``output_bound`` (10.0): bound of the action space.
    - ``label_noise`` (0.0): standard deviation of Gaussian noise added to each label the RM is
      trained on (human labels are noisy observations, not ``U`` itself), drawn from the env's
      seeded generator; ``info["true_utility"]`` and ``rm_error`` stay noise-free. 0 draws
      nothing, so runs without noise are unchanged.
    - ``rm_ensemble`` (1): the number ``K`` of RMs. With ``K >= 2`` the env trains an ensemble
      (:class:`fpo_envs.ensemble.RewardModelEnsemble`): ``K`` linear RMs, each with its own
      initial perturbation (member 0 is the single RM of the same seed), each taking the
      follower step on the same labelled output. ``reward_model`` is the ensemble; the reward
      and ``rm_error`` use the members' mean; ``info["ensemble_spread"]`` is the members'
      standard deviation at the output (before the update); the observation is
      ``[w_1, ..., w_K, y]``, ``(K + 1) * dim`` long, and the ``rm_params`` reset option takes
      shape ``(K, dim)``. One RM (the default) is the game as before.
    - ``render_mode`` (None or ``"rgb_array"``; needs matplotlib): a labelled frame of the
      phase portrait, signal magnitude (x) against noise magnitude (y) over the best true
      utility at those magnitudes, with the episode's trajectory, the round, this round's
      ``U`` and proxy, and a strip of both by round (:class:`fpo_envs.render.PhasePortrait`).

    ## Example
    >>> import gymnasium as gym, fpo_envs
    >>> env = gym.make("FPO/LinearRM-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample() * 0)
    >>> round(info["true_utility"], 3)
    0.273

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        dim: int = 50,
        signal_dims: int = 3,
        ideal_value: float = 2.0,
        utility_peak: float = 10.0,
        utility_width: float = 0.3,
        rm_lr: float = 0.005,
        rm_weight_decay: float = 1e-4,
        rm_init_noise: float = 0.1,
        action_cost: float = 0.1,
        output_bound: float = 10.0,
        label_noise: float = 0.0,
        rm_ensemble: int = 1,
        render_mode: str | None = None,
    ):
        self._setup(
            dim,
            signal_dims,
            ideal_value,
            utility_peak,
            utility_width,
            rm_lr,
            rm_weight_decay,
            rm_init_noise,
            action_cost,
            output_bound,
            label_noise,
            rm_ensemble,
        )
        self._set_render_mode(render_mode)
        self.action_space = self.single_action_space
        self.observation_space = self.single_observation_space


class LinearRMVectorEnv(LinearGame, FeedbackLoopVectorEnv):
    """``num_envs`` independent copies of :class:`LinearRMEnv` as one batched numpy state.

    Made by ``gym.make_vec("FPO/LinearRM-v0", num_envs=n)``; takes the same arguments as
    :class:`LinearRMEnv`. With ``render_mode="rgb_array"``, ``render()`` returns a tuple of
    ``num_envs`` frames, each the one its single env draws. Actions have shape ``(num_envs, dim)``;
    the ``reset`` options ``rm_params`` and ``output`` take shape ``(dim,)`` (shared) or
    ``(num_envs, dim)`` (per copy). ``reward_model`` is batched: ``w`` has shape
    ``(num_envs, dim)``. ``autoreset_mode`` (Gymnasium's ``NEXT_STEP`` by default,
    ``SAME_STEP``, ``DISABLED``) and ``reset(options={"reset_mask": mask})`` are
    :class:`fpo_envs.core.FeedbackLoopVectorEnv`'s. Copy ``i`` seeded ``s`` equals the single
    env seeded ``s + i`` exactly, observation, reward and ``info`` (numpy sums each copy's row
    as the single env sums its array; tested).
    """

    metadata = {**FeedbackLoopVectorEnv.metadata, "render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = 300,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ):
        params = game_arguments(LinearRMEnv, kwargs)
        FeedbackLoopVectorEnv.__init__(self, num_envs, max_episode_steps, render_mode, autoreset_mode)
        self._setup(**params)
        self.action_space = spaces.Box(
            np.broadcast_to(self.single_action_space.low, (num_envs, self.dim)),
            np.broadcast_to(self.single_action_space.high, (num_envs, self.dim)),
            dtype=np.float32,
        )
        self.observation_space = spaces.Box(
            np.broadcast_to(self.single_observation_space.low, (num_envs, self.num_params + self.dim)),
            np.broadcast_to(self.single_observation_space.high, (num_envs, self.num_params + self.dim)),
            dtype=np.float32,
        )
