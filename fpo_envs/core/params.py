"""A game's settings as one frozen dataclass, in the spirit of gymnax's ``EnvParams``.

A game writes each setting once, as a field of its :class:`GameParams` subclass made with
:func:`setting`: its default (the paper's value), its kind (how it is checked) and a line of
doc. From that one list come the env's signature (:meth:`GameParams.signature`), the checks
of what a user passes (:meth:`GameParams.from_kwargs`, ``__post_init__``) and the settings
that make a run differ from the paper's (:meth:`GameParams.changed`, the benchmark's store key).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class BumpParams(GameParams):
    ...     dim: int = setting(50, "whole", "output dimension")
    ...     width: float = setting(0.3, "positive", "the bump's curvature")
    >>> BumpParams.from_kwargs("BumpEnv", width=0.5).changed()
    {'width': 0.5}
    >>> BumpParams(dim=50.5)
    Traceback (most recent call last):
    ...
    TypeError: dim must be a whole number, got 50.5 (float)
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any, ClassVar

import numpy as np

from fpo_envs.core.checks import SETTING_KINDS, check_setting


def setting(default: int | float, kind: str, doc: str) -> Any:
    """A field of a :class:`GameParams`: its ``default`` (the paper's value), its ``kind``
    (``"whole"`` a whole number >= 1, ``"count"`` one >= 0; ``"positive"``, ``"non-negative"`` or ``"real"`` a finite
    real number, :func:`fpo_envs.core.checks.check_setting`) and a line of ``doc``."""
    if kind not in SETTING_KINDS:
        raise ValueError(f"unknown setting kind {kind!r}; kinds: {list(SETTING_KINDS)}")
    return dataclasses.field(default=default, metadata={"kind": kind, "doc": doc})


def choice(default: str, choices: tuple[str, ...], doc: str) -> Any:
    """A field of a :class:`GameParams` that names one of ``choices`` (``default`` among them),
    with a line of ``doc``; another value is a ``ValueError`` listing the choices."""
    if default not in choices:
        raise ValueError(f"the default {default!r} is not among the choices {list(choices)}")
    return dataclasses.field(default=default, metadata={"kind": "choice", "choices": tuple(choices), "doc": doc})


def _check_field(f: dataclasses.Field, value: Any) -> Any:
    if f.metadata["kind"] != "choice":
        return check_setting(f.name, value, f.metadata["kind"])
    choices = f.metadata["choices"]
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{f.name} must be one of {list(choices)}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class GameParams:
    """Base of a game's settings: a frozen dataclass whose fields are made with :func:`setting`.

    Making one checks every field by its kind (a ``TypeError`` or ``ValueError`` naming the
    setting) and stores it as a plain ``int``, ``float`` or, for a :func:`choice`, ``str``; a subclass checks settings against
    each other in its own ``__post_init__`` (after ``super().__post_init__()``).

    Attributes:
        RENAMED: ``{old name: new name}`` of settings that were renamed; passing an old name
            is a ``TypeError`` that names the new one.
    """

    RENAMED: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check_field(f, getattr(self, f.name)))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, in field order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(cls, env_name: str, accepted: tuple[str, ...] = (), /, **kwargs: Any) -> GameParams:
        """The settings ``kwargs`` given to the env ``env_name``, the rest at their defaults.

        Args:
            env_name: the env's name, for the errors.
            accepted: the env's other arguments (``render_mode``, ...), listed among the known
                ones when a keyword is unknown.
            kwargs: the settings.

        Raises:
            TypeError: a renamed setting (naming its new name), an unknown one (naming the
                known ones), or a setting of the wrong type.
            ValueError: a setting out of its range, or settings that do not fit together.
        """
        for old, new in cls.RENAMED.items():
            if old in kwargs:
                raise TypeError(f"{env_name}: `{old}` was renamed `{new}`: pass {new}={kwargs[old]!r} instead")
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            known = sorted({*cls.names(), *accepted})
            raise TypeError(f"unknown argument(s) {unknown} for {env_name}; known: {known}")
        return cls(**kwargs)

    def changed(self) -> dict[str, int | float | str]:
        """The settings that differ from their defaults, ``{name: value}`` in field order, as
        plain JSON values: what makes a run differ from the paper's game (a setting given at
        its default is no change, so passing it or not is the same run)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}

    def store_key(self) -> str:
        """:meth:`changed` as canonical JSON (sorted keys): equal for equal games."""
        return json.dumps(self.changed(), sort_keys=True)

    @classmethod
    def signature(cls, init: Any) -> inspect.Signature:
        """The signature of ``init`` (an env's ``__init__`` taking the settings as ``**settings``)
        with ``**settings`` spelled out: every setting as a keyword-only argument with its
        default, so ``inspect.signature``, ``help()`` and editors show the real arguments."""
        params = [p for p in inspect.signature(init).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        settings = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=f.default,
                annotation={"whole": int, "count": int, "choice": str}.get(f.metadata["kind"], float),
            )
            for f in dataclasses.fields(cls)
        ]
        # Before the env's own keyword-only arguments (render_mode), as they were written once.
        at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.KEYWORD_ONLY), len(params))
        return inspect.Signature(params[:at] + settings + params[at:])


class SettingsGame:
    """The construction every game with a settings dataclass shares, for its single and its
    native vector environment: a subclass names :attr:`params_class` and a ``_setup(params)``
    that builds its oracle, RM and ``single_action_space`` / ``single_observation_space``; its
    envs' ``__init__`` take the settings as ``**settings`` and call :meth:`_init_env` or
    :meth:`_init_vector_env`. The envs' signatures then show every setting (``help()``,
    ``inspect.signature``), an unknown or renamed one is an error naming the known ones, and
    a vector env's spaces are the single env's batched (:func:`_batched`).
    """

    params_class: ClassVar[type[GameParams]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or not hasattr(cls, "params_class"):
            return
        own = inspect.signature(init).parameters
        cls._env_arguments = tuple(n for n, p in own.items() if n != "self" and p.kind is not p.VAR_KEYWORD)
        # The env takes its settings as **settings; its signature shows them one by one.
        init.__signature__ = cls.params_class.signature(init)

    def _setup(self, params: GameParams) -> None:
        """Build the game from its settings (already ``self.params`` and attributes)."""
        raise NotImplementedError

    def _params(self, settings: dict[str, Any]) -> GameParams:
        """The settings as ``self.params``, each also an attribute of the same name."""
        params = self.params_class.from_kwargs(type(self).__name__, self._env_arguments, **settings)
        self.params = params
        for name in params.names():
            setattr(self, name, getattr(params, name))
        return params

    def _init_env(self, render_mode: str | None, settings: dict[str, Any]) -> None:
        """The single environment's ``__init__``."""
        self._setup(self._params(settings))
        self._set_render_mode(render_mode)
        self.action_space = self.single_action_space
        self.observation_space = self.single_observation_space

    def _init_vector_env(self, num_envs, max_episode_steps, render_mode, autoreset_mode, settings: dict[str, Any]) -> None:
        """The vector environment's ``__init__``: the single env's settings, ``num_envs`` copies."""
        from fpo_envs.core.env import FeedbackLoopVectorEnv

        params = self._params(settings)
        FeedbackLoopVectorEnv.__init__(self, num_envs, max_episode_steps, render_mode, autoreset_mode)
        self._setup(params)
        self.action_space = _batched(self.single_action_space, num_envs)
        self.observation_space = _batched(self.single_observation_space, num_envs)


def _batched(space: Any, n: int) -> Any:
    """``space`` for ``n`` copies: a ``MultiDiscrete`` stays one (``batch_space`` makes it an
    integer ``Box``, which samplers and wrappers read as continuous), any other space as
    ``gymnasium.vector.utils.batch_space`` batches it."""
    from gymnasium import spaces
    from gymnasium.vector.utils import batch_space

    if isinstance(space, spaces.MultiDiscrete):
        return spaces.MultiDiscrete(np.broadcast_to(space.nvec, (n, *space.nvec.shape)), dtype=space.dtype)
    return batch_space(space, n)
