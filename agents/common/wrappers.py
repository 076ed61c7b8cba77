"""FPO as a reward wrapper: any reinforcement-learning algorithm trains on ``proxy - gamma * R``.

An algorithm that only sees rewards (stable-baselines3's PPO, SAC, ...) cannot take the
penalty's gradient, but it can be paid the foresighted objective::

    import gymnasium as gym
    import fpo_envs  # noqa: F401
    from agents import PenaltyReward

    env = PenaltyReward(gym.make("FPO/LinearRM-v0"), penalty="practical", gamma=0.1)

Each ``step`` computes the penalty ``R`` of the action under the live RM *before* the env
retrains it (the RM that scores the action), steps the env, and returns
``reward - gamma * R`` (the mean over the round's samples in the neural game, as its reward
is). ``info["penalty"]`` holds ``R`` and ``info["unpenalized_reward"]`` the env's reward.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

import fpo_envs
from agents.common.objectives import PAPER_GAMMA, Objective, get_penalty, resolve_gamma


class _Penalizer:
    """The penalty of a round's action under the env's live RM, before the env steps."""

    def __init__(self, env: Any, penalty: str, gamma: float | None):
        game = fpo_envs.game_of(env)
        # The penalty scores an action as the RM sees it: a game whose actions are arrays.
        if not isinstance(env.unwrapped.action_space, gym.spaces.Box):
            raise ValueError(f"the penalty wrappers need a game whose actions are arrays (a Box), not the {game} game")
        if get_penalty(penalty) is None:
            raise ValueError(
                "penalty='none' adds nothing: use the env unwrapped, or name a penalty ('practical', 'relaxed', ...)"
            )
        self.gamma = resolve_gamma(penalty, gamma, PAPER_GAMMA.get(game))
        self.game = env.unwrapped
        self.objective = Objective(self.game, penalty, self.gamma)

    def __call__(self, action: Any) -> np.ndarray:
        y = self.game._check_action(action)  # the game's own validation and internal form
        z = self.objective.outputs(y, self.game.reward_model)
        if isinstance(y, np.ndarray):
            values = np.asarray(self.objective.penalty_value(z), dtype=np.float64)
        else:
            import torch

            with torch.no_grad():
                values = self.objective.penalty_value(z).cpu().double().numpy()
        # The neural game's action is k samples, its reward their mean: so is the penalty.
        return values.mean(-1) if values.ndim > len(self.game.batch_shape) else values


class PenaltyReward(gym.Wrapper):
    """Pay a single env's learner ``reward - gamma * R(action)`` (module docstring).

    Args:
        env: an ``FPO/LinearRM-v0`` or ``FPO/NeuralRM-v0`` env.
        penalty: a registered penalty name (``practical``, ``relaxed``, or your own).
        gamma: its weight (``None``: the paper's value for the game,
            :data:`agents.common.objectives.PAPER_GAMMA`).
    """

    def __init__(self, env: gym.Env, penalty: str = "practical", gamma: float | None = None):
        super().__init__(env)
        self._penalizer = _Penalizer(env, penalty, gamma)
        self.gamma = self._penalizer.gamma

    def step(self, action):
        """Step the env and pay ``reward - gamma * R(action)``, ``R`` under the RM before the step;
        ``info`` adds ``penalty`` and ``unpenalized_reward``."""
        r_pen = float(self._penalizer(action))
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info, penalty=r_pen, unpenalized_reward=reward)
        return obs, float(reward - self.gamma * r_pen), terminated, truncated, info


class VectorPenaltyReward(gym.vector.VectorWrapper):
    """:class:`PenaltyReward` for a natively batched vector env (``gym.make_vec``)."""

    def __init__(self, env: gym.vector.VectorEnv, penalty: str = "practical", gamma: float | None = None):
        super().__init__(env)
        self._penalizer = _Penalizer(env, penalty, gamma)
        self.gamma = self._penalizer.gamma

    def step(self, actions):
        """What :meth:`PenaltyReward.step` does, for every copy at once."""
        r_pen = self._penalizer(actions)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        info = dict(info, penalty=r_pen, unpenalized_reward=np.asarray(reward))
        return obs, reward - self.gamma * r_pen, terminated, truncated, info
