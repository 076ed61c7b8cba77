"""stable-baselines3's PPO behind the common learner API, on the vector-output games.

PPO sees only rewards, so its objective reaches it through the reward:
``ppo`` trains on the proxy, ``ppo-fpo-practical`` / ``ppo-fpo-relaxed`` on
``proxy - gamma * R`` (:mod:`agents.common.wrappers`). Its policy maps the observation (the RM's
parameters and the last output) to the round's output(s); one model is trained on all
copies of a vector env (one shared policy, unlike the gradient leaders, whose copies are
independent learners).

Randomness: stable-baselines3 samples actions from torch's global generator and shuffles
minibatches with numpy's; the learner swaps its own seeded states in for every call and
restores the caller's afterwards, so runs repeat for a seed and nothing leaks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import gymnasium as gym
import numpy as np

import fpo_envs
from agents.common.base import Agent
from agents.common.config import check_rounds
from agents.common.objectives import PAPER_GAMMA, ObjectiveConfig, resolve_gamma
from agents.common.wrappers import PenaltyReward, VectorPenaltyReward

try:
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as err:  # pragma: no cover - exercised by the core-only test
    raise gym.error.DependencyNotInstalled(
        'the ppo learners need stable-baselines3 and torch: pip install "fpo-envs[sb3]"'
    ) from err


@dataclass(frozen=True)
class PPOConfig(ObjectiveConfig):
    """Settings of the PPO learner (stable-baselines3's defaults where it has them).

    ``gamma`` is the penalty weight here, as in every learner of this package (``proxy - gamma
    * R``; ``None``: the game's paper value, :data:`agents.PAPER_GAMMA`), not stable-baselines3's
    discount factor: that one is ``discount`` (default 0.99).
    """

    paper_gamma: ClassVar[float] = 0.0  # the learner fills in the game's, PAPER_GAMMA[game]
    unknown_key_hint: ClassVar[str] = (
        "these are not stable-baselines3's PPO arguments: gamma is the penalty weight, PPO's discount factor is discount"
    )

    learning_rate: float = 3e-4
    """Adam step size of the policy and value networks."""
    n_steps: int = 256
    """Rounds per env copy in one rollout; ``learn(n)`` plays ``n`` rounded up to whole rollouts."""
    batch_size: int = 64
    """Minibatch size."""
    n_epochs: int = 10
    """Passes over each rollout."""
    discount: float = 0.99
    """PPO's discount factor (stable-baselines3's ``gamma``; ``gamma`` here is the penalty weight)."""
    gae_lambda: float = 0.95
    """GAE's lambda."""
    clip_range: float = 0.2
    """PPO's ratio clipping."""
    ent_coef: float = 0.0
    """Entropy bonus."""
    log_std_init: float = -1.0
    """Initial log standard deviation of the Gaussian policy, in the scaled action units."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layers of the policy and value networks."""
    action_scale: float = 3.0
    """The policy acts in ``[-1, 1]``, mapped to ``[-action_scale, action_scale]`` (within the
    env's bounds). Exploring the whole ``±10`` box makes the RM's update diverge at once."""
    device: str = "cpu"
    """torch device of the networks."""

    def __post_init__(self):
        try:
            super().__post_init__()
        except ValueError as err:
            if self.penalty == "none" and self.gamma:  # likely stable-baselines3's gamma=0.99
                hint = f"PPO's discount factor, stable-baselines3's gamma, is discount here: discount={self.gamma!r}"
                raise ValueError(f"{err} ({hint})") from None
            raise
        object.__setattr__(self, "net_arch", tuple(int(h) for h in self.net_arch))
        for name in ("n_steps", "batch_size", "n_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not self.action_scale > 0 or not self.clip_range > 0:
            raise ValueError(
                "learning_rate, action_scale and clip_range must be positive, got "
                f"learning_rate={self.learning_rate!r}, action_scale={self.action_scale!r}, clip_range={self.clip_range!r}"
            )
        for name in ("discount", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if any(h < 1 for h in self.net_arch):
            raise ValueError(f"net_arch's layer widths must be at least 1, got {self.net_arch!r}")


class _VecAdapter(VecEnv):
    """A single env or a native vector env as a stable-baselines3 ``VecEnv``: actions in
    ``[-1, 1]`` scaled to the game's, ended copies reset in the same step (whatever the vector
    env's ``autoreset_mode``) with ``terminal_observation``, and every
    round's raw ``info`` handed to ``record``."""

    def __init__(self, env, scale: float, seed: int | None, record):
        self.env, self.scale, self._seed, self.record = env, scale, seed, record
        game = env.unwrapped
        self.is_vector = isinstance(game, gym.vector.VectorEnv)
        self.same_step = self.is_vector and env.metadata.get("autoreset_mode") == gym.vector.AutoresetMode.SAME_STEP
        space = game.single_action_space
        self.bound = float(space.high.max())
        if scale > self.bound:
            raise ValueError(f"action_scale={scale} exceeds the env's action bound {self.bound}")
        action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)
        super().__init__(game.num_envs if self.is_vector else 1, game.single_observation_space, action_space)

    def reset(self):
        obs, _ = self.env.reset(seed=self._seed)
        self._seed = None
        return obs if self.is_vector else obs[None]

    def scaled(self, actions: np.ndarray) -> np.ndarray:
        return (np.clip(actions, -1.0, 1.0) * self.scale).astype(np.float32)

    def step_async(self, actions):
        self._actions = self.scaled(actions)

    def step_wait(self):
        if self.is_vector:
            obs, reward, terminated, truncated, info = self.env.step(self._actions)
            done = np.logical_or(terminated, truncated)
            if self.same_step:
                final = info.get("final_obs")
            elif done.any():
                # NEXT_STEP or DISABLED: reset the ended copies now, as SAME_STEP does inside the
                # step, so PPO's rollouts (and the history) are the same in every mode.
                final = obs
                obs, _ = self.env.reset(options={"reset_mask": done})
        else:
            obs, reward, terminated, truncated, info = self.env.step(self._actions[0])
            done = np.array([terminated or truncated])
            terminated, truncated = np.array([terminated]), np.array([truncated])
            final = obs[None]
            obs = self.env.reset()[0] if done[0] else obs
            obs, reward = obs[None], np.array([reward])
        self.record(info)
        infos = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(done):
            infos[i] = {"terminal_observation": final[i], "TimeLimit.truncated": bool(truncated[i] and not terminated[i])}
        return obs, np.asarray(reward, dtype=np.float32), done, infos

    def close(self):
        pass

    def get_attr(self, attr_name, indices=None):
        return [getattr(self.env.unwrapped, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name, value, indices=None):
        raise NotImplementedError("the FPO games' settings are fixed at construction")

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        return [getattr(self.env.unwrapped, method_name)(*method_args, **method_kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._get_indices(indices))


class PPOLearner(Agent):
    """stable-baselines3 PPO on ``FPO/LinearRM-v0`` or ``FPO/NeuralRM-v0``, single or vector.

    ``learn(n)`` plays ``n`` rounds rounded up to whole rollouts of ``n_steps`` rounds (PPO
    updates on full rollouts) and returns the history of every round played, with the
    games' ``info`` keys (plus ``penalty`` and ``unpenalized_reward`` when penalized).
    ``predict`` is the policy's action, scaled to the game's output.

    It plays its rounds inside stable-baselines3, one rollout at a time, not through the round
    loop's hooks: after each rollout and its update, each of the rollout's rounds is reported
    to the callbacks in turn. So a callback that stops training stops it at the end of a
    rollout (every round of it is reported), and the learner is :attr:`checkpointable` at a
    rollout's last round, where a checkpoint resumes exactly.
    """

    config_cls = PPOConfig
    games = ("linear", "neural")

    def __init__(self, env, seed=None, **config):
        game = fpo_envs.game_of(env)
        if config.get("gamma") is None and config.get("penalty", "none") != "none":
            config["gamma"] = resolve_gamma(config["penalty"], None, PAPER_GAMMA.get(game))
        super().__init__(env, seed=seed, **config)
        c = self.config
        wrapped = env
        if c.penalty != "none":
            wrapper = VectorPenaltyReward if self.is_vector else PenaltyReward
            wrapped = wrapper(env, penalty=c.penalty, gamma=c.gamma)
        self._infos: list[dict] | None = None  # the infos of the rollout being played
        self._between_rollouts = True
        self.venv = _VecAdapter(wrapped, c.action_scale, seed, self._record_info)
        self._torch_rng = torch.Generator().manual_seed(int(self.rng.integers(2**62))).get_state()
        self._np_rng = np.random.RandomState(int(self.rng.integers(2**32))).get_state()
        with self._own_global_rng():
            self.model = sb3.PPO(
                "MlpPolicy",
                self.venv,
                learning_rate=c.learning_rate,
                n_steps=c.n_steps,
                batch_size=c.batch_size,
                n_epochs=c.n_epochs,
                gamma=c.discount,
                gae_lambda=c.gae_lambda,
                clip_range=c.clip_range,
                ent_coef=c.ent_coef,
                device=c.device,
                verbose=0,
                policy_kwargs={"log_std_init": c.log_std_init, "net_arch": list(c.net_arch)},
            )
        # A logger with no outputs, kept across learn calls (each would configure a new one).
        self.model.set_logger(Logger(folder=None, output_formats=[]))

    @contextlib.contextmanager
    def _own_global_rng(self, commit: bool = True):
        """Run stable-baselines3 on this learner's generator states, restoring the caller's."""
        saved = torch.get_rng_state(), np.random.get_state()
        torch.set_rng_state(self._torch_rng)
        np.random.set_state(self._np_rng)
        try:
            yield
        finally:
            if commit:
                self._torch_rng, self._np_rng = torch.get_rng_state(), np.random.get_state()
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])

    def _record_info(self, info: dict) -> None:
        if self._infos is not None:
            self._infos.append(info)

    @property
    def checkpointable(self) -> bool:
        """True between rollouts (PPO learns on whole rollouts; a rollout half played is not saved)."""
        return self._between_rollouts

    def _play(self, timesteps: int) -> list[dict]:
        """``model.learn`` for ``timesteps`` env steps on the learner's generators; the infos of
        the rounds it played."""
        self._infos = []
        try:
            with self._own_global_rng():
                self.model.learn(timesteps, reset_num_timesteps=False)
            return self._infos
        finally:
            self._infos = None
            self._obs = self.model._last_obs if self.is_vector else self.model._last_obs[0]

    def learn(self, total_rounds: int, callback=None, progress_bar: bool = False) -> dict[str, np.ndarray]:
        """:meth:`agents.Agent.learn` for PPO: ``total_rounds`` rounded up to whole rollouts."""
        check_rounds(total_rounds)
        callbacks = self._callbacks(callback, progress_bar)
        n, steps = self.venv.num_envs, self.config.n_steps
        rollouts = -(-total_rounds // steps)
        self.learn_end = self.num_rounds + rollouts * steps
        rows = self._new_history()
        callbacks.on_training_start(self, rollouts * steps)
        if not rollouts:
            self._play(0)  # as a first call with rounds would: the env's first reset
        for _ in range(rollouts):
            infos = self._play(steps * n)
            go_on = True
            for i, info in enumerate(infos):
                self.num_rounds += 1
                self._between_rollouts = i == len(infos) - 1
                row = self._history_row(info)
                self._append(rows, row)
                go_on = self._round_done(callbacks, row) and go_on
            self._between_rollouts = True
            if not go_on:
                break
        callbacks.on_training_end(self)
        return self._stacked(rows)

    def _predict(self, observation, deterministic=True):
        """The policy's output for ``observation``; the learner's generators are left as they were."""
        obs = np.asarray(observation, dtype=np.float32)
        with self._own_global_rng(commit=False):
            action, _ = self.model.predict(obs if self.is_vector else obs[None], deterministic=deterministic)
        action = self.venv.scaled(action)
        return (action if self.is_vector else action[0]), None

    def _state(self):
        m = self.model
        return {
            "policy": m.policy.state_dict(),
            "optimizer": m.policy.optimizer.state_dict(),
            "num_timesteps": m.num_timesteps,
            "n_updates": m._n_updates,
            "last_obs": m._last_obs,
            "last_episode_starts": m._last_episode_starts,
            "torch_rng": self._torch_rng,
            "np_rng": self._np_rng,
        }

    def _set_state(self, state):
        m = self.model
        m.policy.load_state_dict(state["policy"])
        m.policy.optimizer.load_state_dict(state["optimizer"])
        m.num_timesteps, m._n_updates = int(state["num_timesteps"]), int(state["n_updates"])
        m._last_obs, m._last_episode_starts = state["last_obs"], state["last_episode_starts"]
        self._torch_rng, self._np_rng = state["torch_rng"], state["np_rng"]
        self.venv._seed = None  # the env's state comes from the file, not from a fresh reset
