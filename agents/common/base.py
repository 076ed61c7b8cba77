"""What every learner shares: construction from an env, the round loop, history, save/load."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.common import callbacks as callbacks_module
from agents.common import faults, io
from agents.common.config import build_config, check_rounds, check_seed
from fpo_envs.core.numerics import stack_arrays


class Agent:
    """Base learner, shaped like a stable-baselines3 algorithm.

    ``learn(total_rounds, callback=None, progress_bar=False)`` plays rounds on its env (a
    single env or a vector env of the same game) and returns the per-round history of the
    ``info`` metrics: a dict of arrays of shape ``(rounds,)``, or ``(rounds, num_envs)`` on a
    vector env; the first row is the learner's first output. A second ``learn`` call continues
    where the first stopped; callbacks (:mod:`agents.common.callbacks`) see every round and may
    stop a run early, checkpoint it or stream its metrics, and :meth:`resume` continues a run
    from its newest checkpoint.

    A policy family subclasses it with ``config_cls``, ``games`` and the learner contract: the
    hooks :meth:`learn` calls. Learning happens in one hook, :meth:`_update`, in every family: a
    family learns from the round just played (step 4), or, with :attr:`update_before_act`, right
    before the round it prepares (step 1; the Gaussian family, whose schedule follows the
    ``learn`` call that plays the round). ``_start(obs, None)`` begins the first episode, then
    each round is

    1. ``_update(obs, None)``, only for a family that sets :attr:`update_before_act` (its
       update needs the round it prepares: its place in the schedule of the ``learn`` call
       that plays it, its start after a restart);
    2. ``_act()``, the round's action: it only chooses (it may sample from the policy);
    3. the env's step (ended vector copies are reset);
    4. ``_update(obs, info)``, from the observation that follows the step and the round's
       ``info``; it returns the learner's records of the round;
    5. ``_start(obs, mask)`` for the episodes the round ended.

    :meth:`_predict`, :meth:`_state` and :meth:`_set_state` serve ``predict`` and save/load.
    A family that plays its rounds inside another library (PPO) overrides :meth:`learn`
    instead and reports each round through :meth:`_round_done`. :func:`agents.make` builds
    learners through the registry.
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
    record_keys: tuple[str, ...] = ()
    """The learner's own per-round records (beside the env's ``info``) that a benchmark stores with each run."""
    update_before_act: bool = False
    """Whether :meth:`_update` is also called, with ``info=None``, right before each round's
    :meth:`_act`: after ended episodes restarted, inside the ``learn`` call that plays the
    round (so :attr:`learn_end` is that call's). The Gaussian family's policy steps run there."""

    _RETIRED_HOOKS = {
        "_observe": "_update(obs, info)",
        "_record": "_update(obs, info), which returns the round's records",
        "_begin_learn": "_update(obs, None) with update_before_act = True (the call's end is self.learn_end)",
        "_end_round": "a callback: learn(n, callback=...) (agents.common.callbacks)",
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hook, now in Agent._RETIRED_HOOKS.items():
            if hook in vars(cls):
                raise TypeError(
                    f"{cls.__qualname__} defines {hook}, a hook the learner contract no longer calls: "
                    f"use {now} (agents.common.base.Agent documents the hooks)"
                )

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
        self.learn_end: int | None = None
        """The round count the current (or last) ``learn`` call ends at, ``num_rounds +
        total_rounds`` as it starts (``None`` before any): a schedule may follow it."""

    # The learner contract -------------------------------------------------------------------
    def _start(self, obs: Any, mask: np.ndarray | None) -> None:
        """Begin an episode from its first observation ``obs``.

        Called by :meth:`learn` once the env is reset: as the first ``learn`` call starts
        (``mask=None``), and after the :meth:`_update` of a round that ended the episode of a
        single env (``None``) or of some copies of a vector env (``mask``: those copies;
        ``obs`` holds their new episodes' first observations; the other copies keep their
        state).
        """
        raise NotImplementedError

    def _act(self) -> Any:
        """The action of this round, chosen from the policy as it stands and the latest
        observation (``self._obs``).

        Called once per round, before the env steps. It chooses only (it may draw the round's
        samples); learning belongs in :meth:`_update`.
        """
        raise NotImplementedError

    def _update(self, obs: Any, info: dict[str, Any] | None) -> dict[str, Any] | None:
        """Learn; the one hook where a family changes its policy.

        Called by :meth:`learn` after every round's step, ``self.num_rounds`` counting the
        round, with ``obs`` the observation that follows it and ``info`` the round's ``info``.
        Where the round ended an episode, :meth:`_start` follows (a vector copy that ended
        already holds its new episode's first observation in ``obs``; a single env is reset
        after this call). With :attr:`update_before_act`, also called with ``info=None`` right
        before each :meth:`_act`, after any :meth:`_start`, ``obs`` the observation the round
        answers.

        Returns:
            the learner's own records of the round (``{name: value}``, added to the history
            beside the env's ``info``), or ``None``; the return of an ``info=None`` call is ignored.
        """
        raise NotImplementedError

    @property
    def checkpointable(self) -> bool:
        """Whether :meth:`save` now writes everything the learner needs to continue exactly as
        it would have: between any two rounds of the round loop (PPO: between its rollouts,
        where it learns). :class:`agents.common.callbacks.CheckpointCallback` saves only then."""
        return True

    # Public API --------------------------------------------------------------------------
    def learn(self, total_rounds: int, callback: Any = None, progress_bar: bool = False) -> dict[str, np.ndarray]:
        """Play ``total_rounds`` rounds, learning after each; return their metrics.

        Args:
            total_rounds: number of ``env.step`` calls, a whole number >= 0.
            callback: a :class:`agents.common.callbacks.BaseCallback`, a function
                ``f(learner, info)``, a list of them, or ``None``: told when training starts,
                after each round (``False`` from one stops training after that round) and when
                it ends.
            progress_bar: show a tqdm bar with the live proxy and true utility (needs tqdm).

        Returns:
            ``{key: array}`` for every ``info`` key of the game (its ``info_keys`` and
            ``diverged`` even after no rounds, and the rest of its ``info``) and the learner's
            own records, one row per round played.
        """
        check_rounds(total_rounds)
        callbacks = self._callbacks(callback, progress_bar)
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=self.seed)
            self._start(self._obs, None)
        self.learn_end = self.num_rounds + total_rounds
        rows = self._new_history()
        callbacks.on_training_start(self, total_rounds)
        # A vector env that does not reset ended copies inside the step (NEXT_STEP, DISABLED)
        # has them reset here, before the learner sees the round, as SAME_STEP would have done:
        # the history is the same in every mode, and no step is spent on a reset.
        reset_ended = self.is_vector and self.env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP
        for _ in range(total_rounds):
            if self.update_before_act:
                self._update(self._obs, None)
            obs, _, terminated, truncated, info = self.env.step(self._act())
            done = np.logical_or(terminated, truncated)
            if reset_ended and done.any():
                obs, _ = self.env.reset(options={"reset_mask": done})
            self.num_rounds += 1
            row = self._history_row(info)
            row.update(self._update(obs, info) or {})
            if self.is_vector and done.any():
                self._start(obs, done)  # those copies were reset (by the env or above)
            elif not self.is_vector and done:
                obs, _ = self.env.reset()
                self._start(obs, None)
            self._obs = obs
            self._append(rows, row)
            if not self._round_done(callbacks, row):
                break
        callbacks.on_training_end(self)
        return self._stacked(rows)

    # The history ``learn`` returns, built the same way by every ``learn`` ----------------------
    def _new_history(self) -> dict[str, list]:
        """An empty history: the game's metrics and the learner's own records are in it even
        after no rounds."""
        return {k: [] for k in (*self.env.unwrapped.info_keys, "diverged", *self.record_keys)}

    @staticmethod
    def _history_row(info: dict[str, Any]) -> dict[str, Any]:
        """A round's ``info`` as a history row: without Gymnasium's private and final-step entries."""
        return {k: v for k, v in info.items() if not k.startswith("_") and k not in ("final_obs", "final_info")}

    @staticmethod
    def _append(rows: dict[str, list], row: dict[str, Any]) -> None:
        for key, value in row.items():
            rows.setdefault(key, []).append(np.asarray(value))

    def _stacked(self, rows: dict[str, list]) -> dict[str, np.ndarray]:
        """The history as arrays, ``(rounds,)`` or ``(rounds, num_envs)`` each."""
        shape = (0, self.env.unwrapped.num_envs) if self.is_vector else (0,)
        return {k: stack_arrays(v) if v else np.zeros(shape) for k, v in rows.items()}

    @staticmethod
    def _callbacks(callback: Any, progress_bar: bool) -> callbacks_module.CallbackList:
        """``learn``'s callbacks as one list, the progress bar's last."""
        listed = callbacks_module.as_callback(callback)
        if progress_bar:
            listed = callbacks_module.CallbackList([*listed.callbacks, callbacks_module.ProgressBarCallback()])
        return listed

    def _round_done(self, callbacks: callbacks_module.CallbackList, info: dict[str, Any]) -> bool:
        """Report a finished round (its history row ``info``) to the callbacks, then pass the
        crash point ``FPO_CRASH_AT_ROUND`` (:mod:`agents.common.faults`); whether to go on.
        Every ``learn`` calls it once per round, after the learner has learned from it."""
        go_on = callbacks.on_round(self, info)
        faults.at_round(self.num_rounds)
        return go_on

    @staticmethod
    def checkpoints(run_dir: str | Path) -> list[Path]:
        """The complete checkpoints of the run directory ``run_dir`` (``run_dir/checkpoints``,
        :func:`agents.common.callbacks.run_callbacks`), oldest first."""
        return callbacks_module.checkpoints(Path(run_dir) / callbacks_module.CHECKPOINTS)

    @classmethod
    def resume(cls, run_dir: str | Path, env: gym.Env | gym.vector.VectorEnv, /, **config_overrides: Any) -> "Agent":
        """Rebuild the learner of the run directory ``run_dir`` from its newest checkpoint, on a
        fresh ``env`` made as the run's was, ready to ``learn`` the remaining rounds (with the
        run's callbacks, :func:`agents.common.callbacks.run_callbacks`, to go on streaming and
        checkpointing). Works for every family; ``config_overrides`` as in :meth:`load`.

        Raises:
            FileNotFoundError: ``run_dir`` has no complete checkpoint.
        """
        found = cls.checkpoints(run_dir)
        if not found:
            raise FileNotFoundError(
                f"no checkpoint under {Path(run_dir) / callbacks_module.CHECKPOINTS} to resume from "
                "(a run writes them with learn(n, callback=agents.common.callbacks.run_callbacks(run_dir, every)))"
            )
        return cls.load(found[-1], env, **config_overrides)

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

    def save_artifacts(self, folder: str | Path) -> None:
        """Write into ``folder`` what a finished run keeps besides its history and its saved
        state, in the formats their own tools read (nothing by default; the text leader writes
        its LoRA adapter, which ``peft`` loads). The benchmark keeps them with each stored run
        it checkpointed."""

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
