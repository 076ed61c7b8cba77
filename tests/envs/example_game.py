"""A new vector game in one module and one registration line: the linear game's RM, started cold.

The smallest game the layout allows, kept as a test of that claim
(``tests/envs/test_new_game.py``): its settings are one dataclass, its RM hooks four short
methods; spaces, seeding, reset options, autoreset, the vector env and bad-input checks come
from :class:`fpo_envs.games.vector.VectorGame` and the base environments.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import fpo_envs
from fpo_envs.core import FeedbackLoopEnv, FeedbackLoopVectorEnv
from fpo_envs.core.params import setting
from fpo_envs.games.linear import LinearParams
from fpo_envs.games.vector import PARAM_BOUND, VectorGame
from fpo_envs.models.linear import LinearRewardModel


@dataclasses.dataclass(frozen=True)
class ColdStartParams(LinearParams):
    """The linear game's settings, at a smaller size."""

    dim: int = setting(10, "whole", "output dimension d")
    signal_dims: int = setting(2, "whole", "how many leading coordinates are signal")


class ColdStartGame(VectorGame):
    """A linear RM ``w . y`` drawn around zero (no prior on the signal), retrained each round."""

    params_class = ColdStartParams

    _rm_num_params = property(lambda self: self.dim)
    _output_shape = property(lambda self: (self.dim,))

    def _draw_rm(self, rng):
        return rng.normal(0.0, self.rm_init_std, self._member_shape)

    def _initial_state(self, params, output):
        return {"w": params, "y": output}

    def _get_state(self):
        return {"w": self._stacked_rm.w.copy(), "y": self._output.copy()}

    def _load_state(self, state):
        self._set_reward_model(LinearRewardModel(state["w"].copy(), self.rm_lr, self.rm_weight_decay))
        self._output = state["y"].copy()

    def _play(self, y):
        r, u = self.reward_model.reward(y), self.oracle.label(y)
        self.reward_model.update(y, self._noisy_labels(u), reward=r)
        self._output = y
        proxy = self.proxy(y, r)
        squares = y * y
        info = {
            "true_utility": u,
            "proxy_reward": proxy,
            "signal_norm": np.sqrt(squares[..., : self.signal_dims].sum(-1)),
            "noise_norm": np.sqrt(squares[..., self.signal_dims :].sum(-1)),
            "rm_error": r - u,
        }
        return proxy, info, ~(np.abs(self.reward_model.params) <= PARAM_BOUND).all(-1)

    def _observation(self):
        return np.concatenate([self.reward_model.params, self._output], axis=-1).astype(np.float32)


class ColdStartEnv(ColdStartGame, FeedbackLoopEnv):
    """The cold-start game as a single environment."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, *, render_mode=None, **settings):
        self._init_env(render_mode, settings)


class ColdStartVectorEnv(ColdStartGame, FeedbackLoopVectorEnv):
    """``num_envs`` copies of :class:`ColdStartEnv` as one batched state."""

    metadata = {**FeedbackLoopVectorEnv.metadata, "render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, num_envs=1, max_episode_steps=300, render_mode=None, autoreset_mode="NextStep", **settings):
        self._init_vector_env(num_envs, max_episode_steps, render_mode, autoreset_mode, settings)


fpo_envs.register_game(
    "cold-start", "FPO/ExampleColdStart-v0", f"{__name__}:ColdStartGame", f"{__name__}:ColdStartEnv",
    f"{__name__}:ColdStartVectorEnv", max_episode_steps=300,
)  # fmt: skip
