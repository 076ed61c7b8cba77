"""The linear blind-spot game ``FPO/LinearRM-v0`` (ARCHITECTURE.md, section 2, LinearRM)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from fpo_envs.core import FeedbackLoopEnv, FeedbackLoopVectorEnv
from fpo_envs.core.params import setting
from fpo_envs.games.vector import PARAM_BOUND, VectorGame, VectorParams
from fpo_envs.models.linear import LinearRewardModel


@dataclasses.dataclass(frozen=True)
class LinearParams(VectorParams):
    """The linear game's settings; each default is the paper's value (:class:`LinearRMEnv`'s
    Arguments say what each does)."""

    RENAMED = {"rm_init_noise": "rm_init_std"}

    dim: int = setting(50, "whole", "output dimension d")
    signal_dims: int = setting(3, "whole", "how many leading coordinates are signal")
    ideal_value: float = setting(2.0, "real", "each signal coordinate of the ideal y*")
    utility_peak: float = setting(10.0, "real", "U(y*)")
    utility_width: float = setting(0.3, "positive", "the bump's curvature")
    rm_lr: float = setting(0.005, "positive", "the follower's step size")
    rm_weight_decay: float = setting(1e-4, "non-negative", "the follower's multiplicative decay")
    rm_init_std: float = setting(0.1, "non-negative", "standard deviation of the RM's initial perturbation")
    action_cost: float = setting(0.1, "non-negative", "c in the proxy objective")
    output_bound: float = setting(10.0, "positive", "bound of the action space")
    label_noise: float = setting(0.0, "non-negative", "standard deviation of the noise on each label")
    rm_ensemble: int = setting(1, "whole", "the number K of RMs")


class LinearGame(VectorGame):
    """The linear game's hooks, shared by the single and the vector environment (and the
    class learners recognise the game by)."""

    params_class = LinearParams
    split_dtype = np.float64

    @property
    def _rm_num_params(self) -> int:
        return self.dim

    @property
    def _output_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def _rm_start(self) -> np.ndarray:
        # The unperturbed start (1, ..., 1, 0, ..., 0) of every member.
        w = np.zeros(self._member_shape)
        w[..., : self.signal_dims] = 1.0
        return w

    def _draw_rm(self, rng):
        # One draw of the whole (K, d) block, so member k's draw follows member k-1's and
        # member 0 is the single RM of the same seed. The start is made once per env (a
        # thousand copies' reset draws a thousand RMs).
        start = self.__dict__.get("_start_w")
        if start is None:
            start = self._start_w = self._rm_start()
        return start + rng.normal(0.0, self.rm_init_std, start.shape)

    def _initial_state(self, params, output):
        return {"w": params, "y": output}

    def _get_state(self):
        return {"w": self._stacked_rm.w.copy(), "y": self._output.copy()}

    def _load_state(self, state):
        self._set_reward_model(LinearRewardModel(state["w"].copy(), self.rm_lr, self.rm_weight_decay))
        self._output = state["y"].copy()

    def _snapshot(self):
        # A round replaces w and y with new arrays (LinearRewardModel.update), so the arrays
        # held now are the state before it, without a copy.
        return {"w": self._stacked_rm.w, "y": self._output}

    def _play(self, y):
        s = self.signal_dims
        r = self.reward_model.reward(y)
        u = self.oracle.label(y)
        spread = self.reward_model.member_spread(y) if self.rm_ensemble > 1 else None  # before the update, as rm_error
        self.reward_model.update(y, self._noisy_labels(u), reward=r)
        self._output = y
        squares = y * y
        signal_sq, noise_sq = squares[..., :s].sum(-1), squares[..., s:].sum(-1)
        proxy = r - self.action_cost * (signal_sq + noise_sq)  # self.proxy(y, r), from the norms' sums
        info = {
            "true_utility": u,
            "proxy_reward": proxy,
            "signal_norm": np.sqrt(signal_sq),
            "noise_norm": np.sqrt(noise_sq),
            "rm_error": r - u,
        }
        if self.rm_ensemble > 1:
            info["ensemble_spread"] = spread
        w = self.reward_model.params
        # Two whole-array reductions settle the common case; the per-copy test runs only if they fail.
        if w.max(initial=0.0) <= PARAM_BOUND and w.min(initial=0.0) >= -PARAM_BOUND:  # a NaN fails both
            diverged = np.zeros(self.batch_shape, dtype=bool)
        else:
            diverged = ~(np.abs(w).max(-1) <= PARAM_BOUND).reshape(self.batch_shape)
        return proxy, info, diverged

    def _observation(self):
        params = self.reward_model.params
        obs = np.empty((*self.batch_shape, self.num_params + self.dim), dtype=np.float32)
        obs[..., : self.num_params] = params.reshape(*self.batch_shape, -1)  # an ensemble's members flattened
        obs[..., self.num_params :] = self._output
        return obs


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
    ``w = (1, ..., 1, 0, ..., 0) + N(0, rm_init_std^2)`` per coordinate, ``y = 0``.
    ``reset(options={"rm_params": w, "output": y})`` starts from given values instead.

    ## Episode End
    Truncation after 300 rounds (``max_episode_steps``). Termination when the RM update
    is not finite or leaves ``±PARAM_BOUND`` (``info["diverged"] = True``; the update is rolled back).

    ## Arguments
    Keyword-only. The settings below are the fields of :class:`LinearParams` (the env's
    ``params``, each also an attribute of the env), each checked by its kind: a ``TypeError``
    or ``ValueError`` names the setting.

    - ``dim`` (50): output dimension ``d``.
    - ``signal_dims`` (3): how many leading coordinates are signal.
    - ``ideal_value`` (2.0): each signal coordinate of the ideal ``y*``.
    - ``utility_peak`` (10.0), ``utility_width`` (0.3): ``U(y*)`` and the bump's curvature.
    - ``rm_lr`` (0.005), ``rm_weight_decay`` (1e-4): the follower's step size and decay.
    - ``rm_init_std`` (0.1): standard deviation of the RM's initial perturbation (the neural
      game's name for it; the former ``rm_init_noise`` is an error that names it).
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
    >>> round(float(info["true_utility"]), 3)
    0.273

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, *, render_mode: str | None = None, **settings: Any):
        self._init_env(render_mode, settings)


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
        **settings: Any,
    ):
        self._init_vector_env(num_envs, max_episode_steps, render_mode, autoreset_mode, settings)
