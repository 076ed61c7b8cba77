"""What the vector games (linear, neural) share: their settings' checks, one setup path (spaces,
oracle, RM ensemble, reset options), the cost proxy, the parameter bound, per-copy reset options.

A vector game is a :class:`VectorGame` subclass that names its settings (a
:class:`VectorParams` dataclass) and supplies its reward model's hooks; its single and vector
environments are that class mixed with :class:`fpo_envs.core.FeedbackLoopEnv` or
:class:`fpo_envs.core.FeedbackLoopVectorEnv`, each with a two-line ``__init__``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from fpo_envs.core import INFO_KEYS, VECTOR_INFO_KEYS
from fpo_envs.core.checks import check_bounded_array, check_finite_array
from fpo_envs.core.params import GameParams, SettingsGame
from fpo_envs.models.ensemble import RewardModelEnsemble
from fpo_envs.models.oracles import bump_oracle

PARAM_BOUND = 1e6
"""RM parameters beyond this magnitude (or non-finite) end the episode as diverged."""


@dataclasses.dataclass(frozen=True)
class VectorParams(GameParams):
    """Base of a vector game's settings: the checks of the settings every vector game has.

    A subclass has at least the fields :class:`VectorGame` reads: ``dim``, ``signal_dims``,
    ``ideal_value``, ``utility_peak``, ``utility_width`` (the oracle's bump), ``rm_lr``,
    ``rm_weight_decay``, ``rm_init_std`` (the RM), ``action_cost``, ``output_bound``,
    ``label_noise`` and ``rm_ensemble``, each with its game's default.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.signal_dims <= self.dim:
            raise ValueError(f"signal_dims must be in [1, dim={self.dim}], got {self.signal_dims}")
        # The ideal must lie inside the action box, or the game's optimum cannot be played.
        if abs(self.ideal_value) >= self.output_bound:
            raise ValueError(f"output_bound={self.output_bound} must exceed the ideal's coordinates ({self.ideal_value})")


class CostProxy:
    """The proxy of the vector games, ``r(y) - action_cost * ||y||^2``: the one definition the
    env's reward and every learner's objective use."""

    action_cost: float

    def proxy(self, y: Any, reward: Any) -> Any:
        """The proxy objective of outputs ``y`` (shape ``(*B, d)``) whose RM score is ``reward``."""
        return reward - self.action_cost * (y * y).sum(-1)

    def proxy_grad(self, y: Any, reward_grad: Any) -> Any:
        """``grad_y`` of :meth:`proxy`, given ``grad_y r(y)``."""
        if isinstance(y, np.ndarray) and isinstance(reward_grad, np.ndarray) and reward_grad.shape == y.shape:
            out = (2.0 * self.action_cost) * y  # the same roundings, on one new array
            return np.subtract(reward_grad, out, out=out)
        return reward_grad - 2.0 * self.action_cost * y


def per_copy(value, shape, index, name, bound=None):
    """Reset option ``name`` for copy ``index`` (given once for all copies, or per copy); a
    float array, as an action is (:func:`fpo_envs.core.checks.check_finite_array`)."""
    array = np.asarray(value)
    if index is not None and array.ndim == len(shape) + 1:
        array = array[index]
    if bound is None:
        return check_finite_array(array, shape, f"reset option {name!r}")
    return check_bounded_array(array, shape, float(bound), f"reset option {name!r}")


def _tile(state: dict, batch_shape: tuple[int, ...]) -> dict:
    """One copy's state repeated over ``batch_shape`` (new arrays or tensors)."""
    tiled = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            tiled[key] = np.broadcast_to(value, batch_shape + value.shape).copy()
        else:  # a torch tensor
            tiled[key] = value.expand(batch_shape + tuple(value.shape)).clone()
    return tiled


class VectorGame(SettingsGame, CostProxy):
    """The setup and hooks every vector game shares, for its single and its vector environment.

    The settings come in as one :attr:`params_class` object (``self.params``), each also an
    attribute of the same name (``self.dim``, ``self.rm_ensemble``, ...). The outputs live in
    the box ``±output_bound`` of shape :attr:`_output_shape`; the observation is the RM's flat
    parameters (all ``K`` members of an ensemble, within ``±PARAM_BOUND``) followed by the last
    output ``(dim,)``; the reset options ``rm_params`` and ``output`` are given once or per copy;
    ``rm_ensemble >= 2`` wraps the RM in a :class:`~fpo_envs.models.ensemble.RewardModelEnsemble`.

    A game supplies :attr:`params_class` and its RM's hooks: :attr:`_rm_num_params`,
    :attr:`_output_shape`, :meth:`_draw_rm`, :meth:`_initial_state` (and, if its RM does not
    start at zero, :meth:`_rm_start`), plus the round's ``_get_state``, ``_load_state``
    (through :meth:`_set_reward_model`), ``_play`` and ``_observation``
    (:class:`fpo_envs.core.env._Round`).
    """

    params_class: ClassVar[type[VectorParams]]
    reset_options = ("rm_params", "output")
    split_dtype: ClassVar[Any] = None
    """The dtype :meth:`split_observation` returns (``None``: the observation's own)."""
    info_keys = INFO_KEYS[:2] + VECTOR_INFO_KEYS + INFO_KEYS[2:]
    """``true_utility``, ``proxy_reward``, ``signal_norm``, ``noise_norm``, ``rm_error``: the shared
    keys and the norms of the output's signal and noise coordinates."""
    _trajectory_keys = VECTOR_INFO_KEYS
    _render_columns = ("true_utility", "proxy_reward") + VECTOR_INFO_KEYS

    def _setup(self, params: VectorParams) -> None:
        p = params
        self.oracle = bump_oracle(p.dim, p.signal_dims, p.ideal_value, p.utility_peak, p.utility_width, p.output_bound)
        self.single_action_space = spaces.Box(-p.output_bound, p.output_bound, self._output_shape, np.float32)
        self.num_params = n = math.prod(self._member_shape)
        # An RM parameter beyond PARAM_BOUND counts as diverged, so the observation stays in its box.
        low = np.concatenate([np.full(n, -PARAM_BOUND), np.full(p.dim, -p.output_bound)]).astype(np.float32)
        self.single_observation_space = spaces.Box(low, -low, dtype=np.float32)
        # Until the first reset the RM sits at its start, so it can be inspected.
        start = self._draw_initial(None, {"rm_params": self._rm_start()}, None)
        self._load_state(_tile(start, self.batch_shape))

    # The game's hooks -------------------------------------------------------------------------
    @property
    def _rm_num_params(self) -> int:
        """The number of parameters ``p`` of one RM."""
        raise NotImplementedError

    @property
    def _output_shape(self) -> tuple[int, ...]:
        """One copy's action: ``(dim,)``, or ``(samples_per_round, dim)``."""
        raise NotImplementedError

    def _draw_rm(self, rng: np.random.Generator) -> np.ndarray:
        """A fresh RM of one copy from its ``rng``: parameters of :attr:`_member_shape` (an
        ensemble's members drawn in order, so member 0 is the single RM of the same seed)."""
        raise NotImplementedError

    def _rm_start(self) -> np.ndarray:
        """One copy's RM parameters before any draw (what an env holds until its first reset):
        zeros unless the game says."""
        return np.zeros(self._member_shape)

    def _initial_state(self, params: np.ndarray, output: np.ndarray) -> dict:
        """One copy's starting state from its RM parameters and starting output (float64)."""
        raise NotImplementedError

    # Rendering: the phase portrait -------------------------------------------------------------
    def _make_renderer(self) -> Any:
        """Signal magnitude against noise magnitude over the best true utility there."""
        from fpo_envs.render import PhasePortrait

        return PhasePortrait(self.oracle, self.signal_dims, labels=(self._render_label(),))

    def _draw(self, log: list[dict], copy: int | None, round_index: int) -> np.ndarray:
        """The episode's trajectory in the phase portrait, with this round's ``U`` and proxy."""
        from fpo_envs.render import PortraitPanel

        rows = self._render_rows(log)
        panel = PortraitPanel(
            trajectory=np.stack([rows["signal_norm"], rows["noise_norm"]], 1),
            utilities=rows["true_utility"],
            proxies=rows["proxy_reward"],
        )
        return self._renderer.draw([panel], round_index)

    # Shared -----------------------------------------------------------------------------------
    @property
    def _member_shape(self) -> tuple[int, ...]:
        """One copy's RM parameters: ``(p,)``, or ``(K, p)`` for an ensemble of ``K``."""
        p = self._rm_num_params
        return (p,) if self.rm_ensemble == 1 else (self.rm_ensemble, p)

    @property
    def _output_bound(self) -> float:
        """The action box's bound, as the float32 box holds it."""
        return float(self.single_action_space.high.max())

    def _set_reward_model(self, rm: Any) -> None:
        """Install the (batched) RM built from the state, as an ensemble when ``rm_ensemble >= 2``."""
        self.reward_model = rm if self.rm_ensemble == 1 else RewardModelEnsemble(rm)

    @property
    def _stacked_rm(self) -> Any:
        """The RM with its members stacked (an ensemble's ``stacked``), as the state holds it."""
        rm = self.reward_model
        return rm.stacked if isinstance(rm, RewardModelEnsemble) else rm

    def _draw_initial(self, rng, options, index):
        if "rm_params" in options:
            params = per_copy(options["rm_params"], self._member_shape, index, "rm_params")
        else:
            params = self._draw_rm(rng)
        d = self.dim
        output = per_copy(options["output"], (d,), index, "output", self._output_bound) if "output" in options else np.zeros(d)
        return self._initial_state(params, output)

    def _check_action(self, action):
        return check_bounded_array(action, self.batch_shape + self._output_shape, self._output_bound, "action")

    def optimum(self) -> tuple[np.ndarray, float]:
        """The human ideal ``y*`` and its true utility ``U(y*)``."""
        return self.oracle.optimum()

    def split_observation(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split an observation into the RM's flat parameters (an ensemble's members flattened,
        ``K * p``) and the last output ``y``."""
        obs = np.asarray(obs, dtype=self.split_dtype)
        return obs[..., : self.num_params], obs[..., self.num_params :]
