"""The linear blind-spot game ``FPO/LinearRM-v0`` (ARCHITECTURE.md, section 2, LinearRM)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from fpo_envs.core import FeedbackLoopEnv, FeedbackLoopVectorEnv
from fpo_envs.core.checks import check_bounded_array, check_settings, game_arguments
from fpo_envs.games.vector import PARAM_BOUND, CostProxy, per_copy
from fpo_envs.models.ensemble import RewardModelEnsemble
from fpo_envs.models.linear import LinearRewardModel
from fpo_envs.models.oracles import bump_oracle


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
            w = per_copy(options["rm_params"], shape, index, "rm_params")
        else:
            # Member k's draw follows member k-1's, so member 0 is the single RM of the same seed.
            w = np.zeros(shape)
            w[..., : self.signal_dims] = 1.0
            w = w + rng.normal(0.0, self.rm_init_noise, shape)
        y = (
            per_copy(options["output"], (d,), index, "output", self.single_action_space.high[0])
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
      (:class:`fpo_envs.models.ensemble.RewardModelEnsemble`): ``K`` linear RMs, each with its own
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
