"""What every learner shares: construction from an env, the round loop, history, save/load."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.common import io
from agents.common.config import build_config, check_rounds, check_seed
from fpo_envs import INFO_KEYS

HISTORY_KEYS = INFO_KEYS + ("diverged",)


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
        check_seed(seed)
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
            total_rounds: number of ``env.step`` calls, a whole number >= 0.
            progress_bar: show a tqdm bar with the live proxy and true utility (needs tqdm).

        Returns:
            ``{key: array}`` for every ``info`` key of the game (``fpo_envs.INFO_KEYS``,
            ``diverged``, and the game's own) and the learner's own records.
        """
        check_rounds(total_rounds)
        self._begin_learn(total_rounds)
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=self.seed)
            self._start(self._obs, None)
        rows: dict[str, list] = {k: [] for k in HISTORY_KEYS}
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=total_rounds, desc=self.id, unit="round")
        # A vector env that does not reset ended copies inside the step (NEXT_STEP, DISABLED)
        # has them reset here, before the learner sees the round, as SAME_STEP would have done:
        # the history is the same in every mode, and no step is spent on a reset.
        reset_ended = self.is_vector and self.env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP
        for _ in range(total_rounds):
            obs, _, terminated, truncated, info = self.env.step(self._act())
            done = np.logical_or(terminated, truncated)
            if reset_ended and done.any():
                obs, _ = self.env.reset(options={"reset_mask": done})
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
            if self.is_vector and done.any():
                self._start(obs, done)  # those copies were reset (by the env or above)
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

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """The next action for ``observation``; returns ``(action, None)`` as stable-baselines3 does.

        Args:
            observation: an observation of the learner's env, of its ``observation_space``'s
                shape (``(num_envs, ...)`` on a vector env); another shape is a ``ValueError``
                naming the expected one.
            state, episode_start: unused (stable-baselines3's signature).
            deterministic: the family's deterministic action, else a sampled one.
        """
        return self._predict(self._check_observation(observation), deterministic)

    def _predict(self, observation: Any, deterministic: bool) -> tuple[Any, None]:
        """The family's ``predict`` on an observation already checked against the env's space."""
        raise NotImplementedError

    def _check_observation(self, observation: Any) -> Any:
        space = self.env.observation_space
        if isinstance(space, gym.spaces.Dict):
            keys = sorted(space.spaces)
            if not isinstance(observation, Mapping) or not set(keys) <= set(observation):
                raise ValueError(
                    f"{self.id}.predict takes an observation of its env, a dict with keys {keys}; got {observation!r:.80}"
                )
            return observation
        if space.shape is None:
            return observation
        shape = np.shape(observation)
        if shape != space.shape:
            where = f"{self.env.unwrapped.num_envs} copies of a vector env" if self.is_vector else "a single env"
            raise ValueError(
                f"{self.id}.predict takes an observation of shape {space.shape} (its env's observation_space, "
                f"{where}), got shape {shape}"
            )
        return observation

    def _state(self) -> dict[str, Any]:
        """What save/load must keep besides the config: nested arrays, tensors and values."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Write the learner (its registered id, seed, config and learned state) and, once it
        has started, its env's state to ``path`` in the one learner format (:mod:`agents.common.io`)."""
        meta = {
            "id": self.id,
            "module": self.spec.module if self.spec else type(self).__module__,
            # The registering file, so a process that has not run a script (__main__) is told which.
            "source": self.spec.source if self.spec else None,
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
                registered: the message names the module to import, or, for a learner a
                script registered (``__main__``), the script's file. Loading never imports or
                runs what a file names: a learner file holds no code (:mod:`agents.common.io`).
        """
        from agents.common import registration

        meta, state = io.read(path)
        registration.load_plugins()
        if meta["id"] not in registration.registry:
            raise ValueError(f"{path} holds the learner {meta['id']!r}, which is not registered: {_how_to_register(meta)}")
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


def _how_to_register(meta: dict[str, Any]) -> str:
    """What a process must do before loading a learner it has not registered."""
    module, source = meta["module"], meta.get("source")
    if module != "__main__":
        return f"import {module} (the module that registered it) first" + (f", from {source}" if source else "")
    if source is None:
        return (
            "it was registered in an interactive session, which left no file to name: run its agents.register "
            "call in this process first (or move it into a module, import that, and save again)"
        )
    folder, name = Path(source).parent, Path(source).stem
    return (
        f"it was registered by the script {source} (run as __main__): run or import that file in this process "
        f"first (runpy.run_path({source!r}), or import {name} with {folder} on sys.path; code under "
        "if __name__ == '__main__' is then skipped), then load again"
    )
