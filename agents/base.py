"""What every learner shares: construction from an env, the round loop, history, save/load."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents import io
from fpo_envs import INFO_KEYS

HISTORY_KEYS = INFO_KEYS + ("diverged",)


def build_config(config_cls: type, config: dict[str, Any]) -> Any:
    """Build the frozen config dataclass, naming the known keys when one is unknown."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise TypeError(f"unknown config key(s) {unknown} for {config_cls.__name__}; known: {sorted(known)}")
    return config_cls(**config)


class Agent:
    """Base learner, shaped like a stable-baselines3 algorithm.

    ``learn(total_rounds)`` plays rounds on its env (a single env or a vector env of the
    same game) and returns the per-round history of the ``info`` metrics: a dict of arrays
    of shape ``(rounds,)``, or ``(rounds, num_envs)`` on a vector env; the first row is the
    learner's first output. A second ``learn`` call continues where the first stopped.

    Subclasses (policy families) define ``config_cls``, ``games`` and the hooks ``_start``,
    ``_act`` and ``_observe``; :func:`agents.make` builds them through the registry.
    """

    config_cls: type
    games: tuple[str, ...] = ()
    """The games (``fpo_envs.GAMES``) this family runs on."""
    spec: Any = None
    """The registry entry it was made from (set by :func:`agents.make`)."""
    vector_copies_are_seeds: bool = False
    """Whether each copy of a vector env is an independent learner (so a benchmark can run
    many seeds as one vector env); false where the copies share one policy (PPO)."""
    copies_match_single_envs: bool = False
    """Whether copy ``i`` of a vector env seeded ``s`` plays exactly as a single env and
    learner seeded ``s + i`` (a family whose copies share one random stream does not)."""

    @property
    def id(self) -> str:
        """The registered id this learner was made as."""
        return self.spec.id if self.spec is not None else type(self).__name__

    name = id

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, seed: int | None = None, **config: Any):
        self.env = env
        self.seed = seed
        self.config = build_config(self.config_cls, config)
        self.rng = np.random.default_rng(seed)
        self.is_vector = isinstance(env.unwrapped, gym.vector.VectorEnv)
        self._obs: np.ndarray | None = None
        self.num_rounds = 0

    # Hooks -------------------------------------------------------------------------------
    def _start(self, obs: np.ndarray, mask: np.ndarray | None) -> None:
        """Begin an episode from its first observation (``mask``: which vector copies)."""
        raise NotImplementedError

    def _act(self) -> np.ndarray:
        """The action of this round."""
        raise NotImplementedError

    def _observe(self, obs: np.ndarray) -> None:
        """Update the learner after a round, given the observation that follows it."""
        raise NotImplementedError

    # Public API --------------------------------------------------------------------------
    def learn(self, total_rounds: int, progress_bar: bool = False) -> dict[str, np.ndarray]:
        """Play ``total_rounds`` rounds, learning after each; return their metrics.

        Args:
            total_rounds: number of ``env.step`` calls.
            progress_bar: show a tqdm bar with the live proxy and true utility (needs tqdm).

        Returns:
            ``{key: array}`` for every ``info`` key of the game (``fpo_envs.INFO_KEYS``,
            ``diverged``, and the game's own) and the learner's own records.
        """
        if total_rounds < 0:
            raise ValueError(f"total_rounds must be non-negative, got {total_rounds}")
        self._begin_learn(total_rounds)
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=self.seed)
            self._start(self._obs, None)
        rows: dict[str, list] = {k: [] for k in HISTORY_KEYS}
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=total_rounds, desc=self.id, unit="round")
        for _ in range(total_rounds):
            obs, _, terminated, truncated, info = self.env.step(self._act())
            for key, value in info.items():
                if not key.startswith("_") and key not in ("final_obs", "final_info"):
                    rows.setdefault(key, []).append(np.asarray(value))
            for key, value in self._record(info).items():
                rows.setdefault(key, []).append(np.asarray(value))
            self._observe(obs)
            self.num_rounds += 1
            if bar is not None:
                bar.update()
                bar.set_postfix(proxy=f"{np.mean(info['proxy_reward']):.3f}", true=f"{np.mean(info['true_utility']):.3f}")
            done = np.logical_or(terminated, truncated)
            if self.is_vector and done.any():
                self._start(obs, done)  # the vector env already reset those copies
            elif not self.is_vector and done:
                obs, _ = self.env.reset()
                self._start(obs, None)
            self._obs = obs
            self._end_round(info)
        if bar is not None:
            bar.close()
        shape = (0, self.env.unwrapped.num_envs) if self.is_vector else (0,)
        return {k: np.stack(v) if v else np.zeros(shape) for k, v in rows.items()}

    def _begin_learn(self, total_rounds: int) -> None:
        """Called as ``learn(total_rounds)`` starts (a schedule may follow the run's length)."""

    def _end_round(self, info: dict) -> None:
        """Called once a round is complete (learner updated, env reset if it ended)."""

    def _record(self, info: dict) -> dict[str, np.ndarray]:
        """Extra per-round history entries of this learner (none by default)."""
        return {}

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """The next action for ``observation``; returns ``(action, None)`` as stable-baselines3 does."""
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        """What save/load must keep besides the config: nested arrays, tensors and values."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Write the learner (its registered id, seed, config and learned state) and, once it
        has started, its env's state to ``path`` in the one learner format (:mod:`agents.io`)."""
        meta = {
            "id": self.id,
            "module": self.spec.module if self.spec else type(self).__module__,
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "num_rounds": self.num_rounds,
        }
        started = self._obs is not None
        state = {
            "learner": self._state(),
            "rng": self.rng.bit_generator.state,
            "obs": self._obs,
            # The env's state too, so the learner continues on a fresh env as on its own.
            "env": self.env.unwrapped.state_dict() if started else None,
        }
        io.write(path, meta, state)

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | gym.vector.VectorEnv, **config_overrides: Any) -> "Agent":
        """Rebuild a saved learner on ``env`` through the registry; it continues where it stopped.

        Args:
            path: a file written by :meth:`save`.
            env: an env of the game it was saved from.
            **config_overrides: config fields to change (e.g. a new ``run_dir``).

        Raises:
            ValueError: the file is not a learner file, or names an id that is not
                registered (the message names the module to import).
        """
        from agents import registration

        meta, state = io.read(path)
        registration.load_plugins()
        if meta["id"] not in registration.registry:
            raise ValueError(
                f"{path} holds the learner {meta['id']!r}, which is not registered: "
                f"import {meta['module']} (the module that registered it) first"
            )
        agent = registration.make(meta["id"], env, seed=meta["seed"], **{**meta["config"], **config_overrides})
        if cls is not Agent and not isinstance(agent, cls):
            raise TypeError(f"{path} holds a {type(agent).__name__}, not a {cls.__name__}")
        agent.num_rounds = meta["num_rounds"]
        agent.rng.bit_generator.state = state["rng"]
        agent._set_state(state["learner"])
        if state["obs"] is not None:
            agent.env.reset(seed=agent.seed)  # through the wrappers (order enforcing), then overwritten
            agent.env.unwrapped.load_state_dict(state["env"])
            agent._obs = state["obs"]
        return agent
