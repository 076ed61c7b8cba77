"""The feedback loop shared by every game: emit, label, score, retrain the RM, report.

A game supplies its reward model, its oracle and its spaces through a few hooks; the
base classes here own the round, seeding, option parsing and bad-input handling, for a
single environment (:class:`FeedbackLoopEnv`) and for a natively batched vector of
independent copies (:class:`FeedbackLoopVectorEnv`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from fpo_envs.core.checks import check_options
from fpo_envs.core.numerics import stack_arrays

INFO_KEYS = ("true_utility", "proxy_reward", "rm_error")
"""The per-round metrics every game reports in ``info``, with one meaning in each: the
oracle's utility of the round's output, the proxy objective the learner was scored by, and
the RM's error. A game's full list is its ``info_keys``."""

VECTOR_INFO_KEYS = ("signal_norm", "noise_norm")
"""The per-round metrics the vector games (linear, neural) report besides :data:`INFO_KEYS`:
the norms of the output's signal and noise coordinates."""


def _check_render_mode(render_mode: str | None, modes: list[str]) -> None:
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be one of {modes} or None, got {render_mode!r}")
    if render_mode == "rgb_array":
        from fpo_envs.render import check_matplotlib

        check_matplotlib()


class _Round:
    """The round and state handling shared by the single and the vector environment.

    Games implement the hooks on arrays with arbitrary leading batch dimensions:
    ``batch_shape`` is ``()`` for a single environment and ``(num_envs,)`` for a vector.
    The whole mutable state (RM parameters, optimizer state, last output, ...) is a dict of
    arrays, so the base can reset single copies and roll back a diverged RM generically.
    """

    batch_shape: tuple[int, ...]
    reset_options: tuple[str, ...] = ()
    long_rounds: bool = False
    """Whether a round takes seconds rather than milliseconds (the text game's): a benchmark then
    checkpoints each run so that a killed sweep resumes it."""

    info_keys: tuple[str, ...] = INFO_KEYS
    """The game's per-round metrics that a learner's history holds under these names (even
    after no rounds) and the benchmark stores: :data:`INFO_KEYS` and the game's own (the vector
    games add :data:`VECTOR_INFO_KEYS`; the text game names its own). The other ``info``
    entries of a round are in a history too."""

    _trajectory_keys: tuple[str, ...] = ()
    """The ``info`` entries of each round that the single env keeps as its episode's
    trajectory (in :meth:`FeedbackLoopEnv.state_dict`); each game names its own."""

    def _draw_initial(self, rng: np.random.Generator, options: dict[str, Any], index: int | None) -> dict:
        """Initial state of one copy (no batch dimension), drawn from that copy's ``rng``.

        ``index`` is the copy's position in a vector environment (``None`` for a single
        one), for options given per copy.
        """
        raise NotImplementedError

    def _get_state(self) -> dict:
        """A copy of the batched state."""
        raise NotImplementedError

    def _load_state(self, state: dict) -> None:
        raise NotImplementedError

    def _snapshot(self) -> dict:
        """The state a round that diverges rolls back to, taken before the round: by default a
        copy (:meth:`_get_state`). A game whose ``_play`` never writes into the arrays it holds
        (it replaces them) may return them as they are, without copying: the copy is a large
        part of a cheap round's cost at many copies."""
        return self._get_state()

    def _check_action(self, action: Any) -> Any:
        """Validate an action and return the round's output(s) in the game's internal form."""
        raise NotImplementedError

    def _play(self, output: Any) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Score, label and retrain the RM on ``output``; return (reward, info, diverged)."""
        raise NotImplementedError

    def _observation(self) -> np.ndarray:
        raise NotImplementedError

    label_noise: float = 0.0
    """Standard deviation of the Gaussian noise on the follower's labels (0: the oracle's own)."""

    def _noisy_labels(self, labels: np.ndarray) -> np.ndarray:
        """The labels the follower is trained on: the oracle's, plus ``N(0, label_noise^2)`` per
        label, drawn from each copy's own seeded generator. Without noise nothing is drawn,
        so every run without it is unchanged."""
        if not self.label_noise:
            return labels
        shape = np.shape(labels)[len(self.batch_shape) :]
        if self.batch_shape:
            noise = np.stack([rng.normal(0.0, self.label_noise, shape) for rng in self._rngs])
        else:
            noise = self.np_random.normal(0.0, self.label_noise, shape)
        return labels + noise

    # Rendering ---------------------------------------------------------------------------
    _renderer: Any = None

    _render_columns: tuple[str, ...] = ("true_utility", "proxy_reward")
    """The ``info`` entries a frame needs of each round, one row of the render log per round
    (each game with frames names its own)."""

    def _render_record(self, output: Any, info: dict[str, Any], copy: int | None) -> np.ndarray:
        """One round of one copy as a row of the render log (:attr:`_render_columns`)."""
        row = [np.asarray(info[k], dtype=np.float64) for k in self._render_columns]
        return np.array([float(v if copy is None else v[copy]) for v in row])

    def _render_rows(self, log: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The render log as one array per column (length: the rounds logged)."""
        table = np.array(log, dtype=np.float64) if log else np.zeros((0, len(self._render_columns)))
        return {k: table[:, i] for i, k in enumerate(self._render_columns)} | {"table": table}

    def _make_renderer(self) -> Any:
        """The game's frame renderer (:mod:`fpo_envs.render`), built on the first ``render``."""
        raise NotImplementedError(f"{type(self).__name__} draws no frames: a game that renders defines _make_renderer and _draw")

    def _render_label(self) -> str:
        spec = getattr(self, "spec", None)
        return spec.id if spec is not None else type(self).__name__

    def _draw(self, log: list[dict], copy: int | None, round_index: int) -> np.ndarray:
        """The frame of one copy from its episode's render log."""
        raise NotImplementedError

    def _frame(self, log: list[dict], copy: int | None, round_index: int) -> np.ndarray:
        if self._renderer is None:
            self._renderer = self._make_renderer()
        return self._draw(log, copy, round_index)

    def __getstate__(self) -> dict:
        # A matplotlib figure is rebuilt on the next render rather than copied or pickled.
        state = self.__dict__.copy()
        state["_renderer"] = None
        return state


def _stack(states: list[dict]) -> dict:
    return {k: _stack_values([s[k] for s in states]) for k in states[0]}


def _np_random(seed: int | None) -> np.random.Generator:
    """``gymnasium.utils.seeding.np_random(seed)[0]``: the same generator (``PCG64`` seeded from
    ``SeedSequence(seed)``), built without its checks for a whole number seed, which a
    thousand copies' reset notices."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed))))
    return gym.utils.seeding.np_random(seed)[0]


def _stack_values(values: list) -> Any:
    if isinstance(values[0], np.ndarray):
        return stack_arrays(values)
    import torch  # only games that keep torch state reach here

    return torch.stack(values)


def _blank_rows(reward: Any, info: dict, mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """``reward`` and ``info`` with the rows of the copies in ``mask``, which played no round,
    set to reward 0, NaN for float entries and False for bool ones (new arrays: a game may
    return one array as both the reward and an ``info`` entry)."""
    reward = np.array(reward, dtype=np.float64)
    reward[mask] = 0.0
    blank = {}
    for key, value in info.items():
        if isinstance(value, np.ndarray) and value.shape[:1] == mask.shape and value.dtype.kind in "fb":
            value = value.copy()
            value[mask] = np.nan if value.dtype.kind == "f" else False
        blank[key] = value
    return reward, blank


def _checked_init(cls: type, init: Any) -> Any:
    """``init`` that first rejects unknown keywords, naming the known ones (as the vector
    envs do), instead of Python's bare ``unexpected keyword argument``."""
    params = inspect.signature(init).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return init  # the env checks its own extra keywords

    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            known = sorted(n for n in params if n != "self")
            raise TypeError(f"unknown argument(s) {unknown} for {cls.__name__}; known: {known}")
        init(self, *args, **kwargs)

    return checked


class FeedbackLoopEnv(_Round, gym.Env):
    """Base of every game as a single Gymnasium environment.

    ``step(action)`` plays one round; ``reset(seed, options)`` draws a fresh RM from
    ``self.np_random``. A round whose RM update is not finite is rolled back and ends the
    episode with ``info["diverged"] = True``.
    """

    batch_shape = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked_init(cls, cls.__dict__["__init__"])

    def _set_render_mode(self, render_mode: str | None) -> None:
        _check_render_mode(render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode
        self._render_log: list[dict] = []

    def render(self):
        """``rgb_array``: a labelled frame of this episode so far (the game's docstring says
        what it shows), as a ``uint8`` array ``(height, width, 3)``; ``None`` without a
        ``render_mode``."""
        if self.render_mode is None:
            gym.logger.warn('render() needs a render mode: gym.make(..., render_mode="rgb_array")')
            return None
        return self._frame(self._render_log, None, getattr(self, "_elapsed", 0))

    def state_dict(self) -> dict:
        """Everything needed to continue this env exactly (its state, random generator, round
        count): arrays, tensors and plain values, which a learner file stores."""
        if not hasattr(self, "_elapsed"):
            raise gym.error.ResetNeeded("call reset() before state_dict()")
        return {
            "state": self._get_state(),
            "np_random": self.np_random.bit_generator.state,
            "elapsed": self._elapsed,
            "trajectory": [list(map(float, t)) for t in self._trajectory],
            # What the frame draws of the rounds so far, so a restored env renders as the original.
            "render_log": np.array(self._render_log, dtype=np.float64),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (an env made with the same arguments)."""
        if self._np_random is None:
            super().reset()
        self._load_state(state["state"])
        self.np_random.bit_generator.state = state["np_random"]
        self._elapsed = int(state["elapsed"])
        self._trajectory = [tuple(t) for t in state["trajectory"]]
        self._render_log = [np.array(row) for row in state.get("render_log", ())] if self.render_mode else []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode: a fresh initial state (the RM) drawn from ``np_random`` (seeded by
        ``seed``), with the game's ``reset_options``; returns ``(observation, {})``."""
        super().reset(seed=seed)
        options = check_options(options, self.reset_options)
        self._load_state(self._draw_initial(self.np_random, options, None))
        self._elapsed = 0
        self._trajectory = []
        self._render_log = []
        return self._observation(), {}

    def step(self, action):
        """Play one round on ``action``; returns ``(observation, reward, terminated, truncated,
        info)``, ``terminated`` (and ``info["diverged"]``) where the RM update was not finite
        and was rolled back. ``truncated`` is False here: the time limit is the ``TimeLimit``
        wrapper ``gym.make`` adds."""
        if not hasattr(self, "_elapsed"):
            raise gym.error.ResetNeeded("call reset() before step()")
        output = self._check_action(action)
        before = self._snapshot()
        reward, info, diverged = self._play(output)
        diverged = bool(diverged)
        if diverged:
            self._load_state(before)
        self._elapsed += 1
        info = {k: v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v for k, v in info.items()}
        info["diverged"] = diverged
        self._trajectory.append(tuple(float(info[k]) for k in self._trajectory_keys))
        if self.render_mode is not None:
            self._render_log.append(self._render_record(output, info, None))
        return self._observation(), float(reward), diverged, False, info


def parse_autoreset_mode(value: Any) -> AutoresetMode:
    """``value`` as an :class:`~gymnasium.vector.AutoresetMode`: the enum itself, its value
    (``"NextStep"``, ``"SameStep"``, ``"Disabled"``) or its name (``"NEXT_STEP"``, any case)."""
    if isinstance(value, AutoresetMode):
        return value
    if isinstance(value, str):
        if value in {m.value for m in AutoresetMode}:
            return AutoresetMode(value)
        if value.upper() in AutoresetMode.__members__:
            return AutoresetMode[value.upper()]
    choices = [m.value for m in AutoresetMode]
    raise ValueError(f"autoreset_mode must be a gymnasium.vector.AutoresetMode or one of {choices}, got {value!r}")


class FeedbackLoopVectorEnv(_Round, VectorEnv):
    """Base of every game as a natively batched vector environment.

    All ``num_envs`` copies are held in stacked arrays and advanced by one batched round,
    so a thousand seeds cost about as much as a few. Copy ``i`` reset with ``seed=s`` is the
    single environment reset with ``seed=s + i`` (the convention of ``SyncVectorEnv``).
    ``info`` reports the round just played, as arrays of shape ``(num_envs,)``.

    A copy ends when its time limit is reached (``truncated``) or its RM diverges
    (``terminated``; the update is rolled back). What happens next is ``autoreset_mode``
    (Gymnasium's :class:`~gymnasium.vector.AutoresetMode`, as ``SyncVectorEnv`` does it;
    ``metadata["autoreset_mode"]`` is the instance's):

    - ``NEXT_STEP`` (the default, Gymnasium's, which ``gymnasium.wrappers.vector`` needs): the
      ending step returns the episode's last observation; the next ``step`` resets the copy
      instead of playing a round: its action is ignored, and it returns the new episode's first
      observation, reward 0, ``terminated`` and ``truncated`` False, ``info["diverged"]`` False
      and NaN in its other ``info`` entries (no round was played).
    - ``SAME_STEP``: the ending step resets the copy; it returns the new episode's first
      observation, and ``info["final_obs"]`` (rows marked by ``info["_final_obs"]``) the last one.
    - ``DISABLED``: an ended copy waits for ``reset(options={"reset_mask": mask})``; a ``step``
      before it raises ``ResetNeeded``.

    ``reset(options={"reset_mask": mask})`` (a bool array of shape ``(num_envs,)``, as for
    Gymnasium's vector envs) resets only the marked copies and cancels their pending
    ``NEXT_STEP`` reset; with a ``seed`` it reseeds only those (copy ``i`` from ``seed + i``).
    Every new episode after the first (autoreset or masked reset) is drawn from the copy's own
    generator, continuing its stream, with the reset options of the last full ``reset``
    (options given beside a mask apply to those copies, over them), so an episode plays the
    same in every mode. The learners reset ended copies themselves through ``reset_mask``,
    which makes their histories identical in every mode.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int | None,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        _check_render_mode(render_mode, self.metadata["render_modes"])
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        # The instance's own metadata, as SyncVectorEnv keeps it: the class's is shared.
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = render_mode
        self._render_logs: list[list[dict]] = [[] for _ in range(num_envs)]
        self.num_envs = num_envs
        self.batch_shape = (num_envs,)
        self.max_episode_steps = max_episode_steps
        self._rngs: list[np.random.Generator] | None = None
        self._autoreset = np.zeros(num_envs, dtype=bool)  # copies that ended and reset on the next step

    def _seeds(self, seed: int | list[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        return seeds

    def _check_reset_mask(self, mask: Any) -> np.ndarray:
        """Gymnasium's checks of ``options["reset_mask"]`` (``SyncVectorEnv.reset``)."""
        fix = f"pass a numpy bool array of shape ({self.num_envs},) with at least one True"
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            raise TypeError(f"options['reset_mask'] must be a numpy bool array; {fix}, got {mask!r:.80}")
        if mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},), got {mask.shape}; {fix}")
        if not mask.any():
            raise ValueError(f"options['reset_mask'] selects no copy; {fix}")
        return mask.copy()

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset every copy (copy ``i`` from ``seed + i``, or from ``seed[i]`` for a list), or with
        ``options["reset_mask"]`` only the marked ones (class docstring); returns
        ``(observations, {})``."""
        options = check_options(options, self.reset_options + ("reset_mask",))
        mask = options.pop("reset_mask", None)
        seeds = self._seeds(seed)
        if mask is not None:
            mask = self._check_reset_mask(mask)
            if self._rngs is None:
                raise gym.error.ResetNeeded("reset every copy (reset() without reset_mask) before resetting some")
            if seed is not None:
                for i in np.flatnonzero(mask):
                    self._rngs[i] = _np_random(seeds[i])
            self._start_episodes(mask, {**self._options, **options})
            return self._observation(), {}
        if seed is not None or self._rngs is None:
            self._rngs = [_np_random(s) for s in seeds]
        self._options = options
        self._load_state(_stack([self._draw_initial(rng, self._options, i) for i, rng in enumerate(self._rngs)]))
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._render_logs = [[] for _ in range(self.num_envs)]
        return self._observation(), {}

    def _start_episodes(self, mask: np.ndarray, options: dict[str, Any]) -> None:
        """Start a new episode in the copies selected by ``mask``, each drawn from its generator."""
        fresh = [self._draw_initial(self._rngs[i], options, i) for i in np.flatnonzero(mask)]
        self._replace(_stack(fresh), mask)
        self._elapsed[mask] = 0
        self._autoreset[mask] = False
        for i in np.flatnonzero(mask):
            self._render_logs[i].clear()

    def render(self):
        """``rgb_array``: one labelled frame per copy (a tuple of ``num_envs`` arrays, as
        ``gymnasium.wrappers.vector.RecordVideo`` expects), each as the single env draws it.
        A frame takes tens of milliseconds, so render a vector env of a few copies."""
        if self.render_mode is None:
            gym.logger.warn('render() needs a render mode: gym.make_vec(..., render_mode="rgb_array")')
            return None
        if self._rngs is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return tuple(self._frame(self._render_logs[i], i, int(self._elapsed[i])) for i in range(self.num_envs))

    def state_dict(self) -> dict:
        """Everything needed to continue this vector env exactly (every copy's state and
        random generator, round counts, pending autoresets, reset options)."""
        if self._rngs is None:
            raise gym.error.ResetNeeded("call reset() before state_dict()")
        return {
            "state": self._get_state(),
            "rngs": [r.bit_generator.state for r in self._rngs],
            "elapsed": self._elapsed.copy(),
            "autoreset": self._autoreset.copy(),
            "options": dict(self._options),
            "render_logs": [np.array(log, dtype=np.float64) for log in self._render_logs],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (a vector env made with the same arguments and size)."""
        if len(state["rngs"]) != self.num_envs:
            raise ValueError(f"the state holds {len(state['rngs'])} copies, this vector env {self.num_envs}")
        self._rngs = [np.random.default_rng() for _ in state["rngs"]]
        for rng, rng_state in zip(self._rngs, state["rngs"]):
            rng.bit_generator.state = rng_state
        self._options = dict(state["options"])
        self._load_state(state["state"])
        self._elapsed = np.array(state["elapsed"], dtype=np.int64)
        # A state saved before autoreset modes existed has none pending (it reset in the step).
        self._autoreset = np.array(state.get("autoreset", np.zeros(self.num_envs, dtype=bool)), dtype=bool)
        logs = state.get("render_logs") if self.render_mode else None
        self._render_logs = [[np.array(row) for row in log] for log in logs] if logs else [[] for _ in range(self.num_envs)]

    def _ignore_actions(self, actions: Any, pending: np.ndarray) -> Any:
        """``actions`` with the rows of the copies that reset this step set to 0 (inside every
        game's action box), so that an action a copy ignores cannot fail the step."""
        try:
            array = np.array(actions)  # a copy: the caller's array is left alone
        except (TypeError, ValueError):
            return actions  # _check_action names what is wrong with it
        if array.shape != self.action_space.shape:
            return actions
        array[pending] = 0
        return array

    def step(self, actions):
        """Play one batched round; returns ``(observations, rewards, terminated, truncated,
        info)``, each with a leading ``num_envs`` axis. Ended copies reset as ``autoreset_mode``
        says (class docstring)."""
        if self._rngs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        pending = self._autoreset.copy()  # NEXT_STEP: copies that ended on the last step reset now
        any_pending = bool(pending.any())
        if any_pending:
            if self.autoreset_mode == AutoresetMode.DISABLED:
                raise gym.error.ResetNeeded(
                    f"copies {np.flatnonzero(pending).tolist()} ended and autoreset_mode is DISABLED: reset them with "
                    "reset(options={'reset_mask': mask}) before the next step"
                )
            actions = self._ignore_actions(actions, pending)
        output = self._check_action(actions)
        if any_pending:
            self._start_episodes(pending, self._options)
            # The hooks play the whole batch, so the reset copies play a round too; it is undone
            # below, with any draws it took from their generators (label noise).
            drawn = {i: self._rngs[i].bit_generator.state for i in np.flatnonzero(pending)}
        before = self._snapshot()
        reward, info, diverged = self._play(output)
        terminated = np.asarray(diverged, dtype=bool).reshape(self.num_envs)
        if any_pending:
            terminated = terminated & ~pending
        ended = any_pending or bool(terminated.any())
        if ended:
            self._replace(before, terminated | pending)
        if any_pending:
            for i, rng_state in drawn.items():
                self._rngs[i].bit_generator.state = rng_state
            reward, info = _blank_rows(reward, info, pending)
            self._elapsed[~pending] += 1
        else:
            self._elapsed += 1  # the common round, without the masks' small array operations
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=bool)
        else:
            truncated = self._elapsed >= self.max_episode_steps
            if ended:
                truncated &= ~terminated & ~pending
        info = dict(info, diverged=terminated.copy())
        obs = self._observation()
        done = terminated | truncated
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        if self.render_mode is not None:
            for i, log in enumerate(self._render_logs):
                if same_step and done[i]:
                    log.clear()  # the copy starts a new episode in this same step
                elif not pending[i]:
                    log.append(self._render_record(output, info, i))
        if same_step and done.any():
            info["final_obs"] = np.where(done[:, None], obs, np.nan)
            info["_final_obs"] = done
            self._start_episodes(done, self._options)
            obs = self._observation()
        elif not same_step:
            self._autoreset = done
        return obs, np.asarray(reward), terminated, truncated, info

    def _replace(self, values: dict, mask: np.ndarray) -> None:
        """Overwrite the copies selected by ``mask`` with ``values`` (full or selected rows)."""
        state = self._get_state()
        index = np.flatnonzero(mask)
        for key, current in state.items():
            new = values[key]
            rows = new[index] if len(new) == self.num_envs else new
            if isinstance(current, np.ndarray):
                current[index] = rows
            else:
                import torch

                current[torch.as_tensor(index)] = rows
        self._load_state(state)
