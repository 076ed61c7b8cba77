"""The learner registry, shaped like Gymnasium's env registry (ARCHITECTURE.md, 5).

``register(id, entry_point, kwargs, games)`` maps an id to a policy family per game plus
default config; ``make(id, env, seed, **config)`` builds it for the game behind ``env``;
``make("some.module:my-algo", env)`` imports ``some.module`` first (which registers
``my-algo``), as ``gym.make("module:Env-v0")`` does. Installed packages register through
the entry-point group ``fpo_envs.learners``, loaded on first use: an entry point naming a
module is imported, one naming a function is called.

An id taken by this package (``rlhf``, ``fpo-relaxed``, ...) is replaced only with
``register(..., override=True)``; registering the same definition again (a module imported
twice, or under two names) changes nothing.

``registry`` (and ``FAMILIES``, and :data:`agents.PENALTIES`) are read-only views: they read as
dicts, and writing to one is a ``TypeError`` naming the function that changes it, since a write
would skip ``register``'s checks. :func:`unregister` removes a learner of yours;
:func:`temporary_registrations` undoes every registration made inside a ``with`` block (a test,
or a notebook trying a learner out), built-in ones overridden included.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

import fpo_envs

PLUGIN_GROUP = "fpo_envs.learners"
"""The entry-point group installed packages declare their learners in."""


_registries: list[dict] = []  # every registry behind a ReadOnlyRegistry: what temporary_registrations restores


class ReadOnlyRegistry(Mapping):
    """A read-only view of one of the package's registries: it reads as a dict (``view[key]``,
    ``key in view``, iteration, ``get``, ``items``) and follows the registry as it changes;
    writing to it is a ``TypeError`` that names ``how``, the function that changes it.
    :func:`temporary_registrations` restores every registry a view was made of.

    Args:
        data: the registry itself (kept private by the module that owns it).
        what: its name, for the error (``"agents.registry"``).
        how: how to change it, for the error (``"agents.register(id, ...)"``).
    """

    __slots__ = ("_data", "_what", "_how")

    def __init__(self, data: dict, what: str, how: str):
        self._data, self._what, self._how = data, what, how
        _registries.append(data)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: the view is read-only (a ``TypeError`` naming the function that changes the
        registry). Every method of a dict that writes is this one."""
        raise TypeError(f"{self._what} is read-only (a write would skip its checks): use {self._how}")

    __setitem__ = __delitem__ = pop = popitem = clear = update = setdefault = __ior__ = _refuse


FAMILIES: Mapping[str, str] = ReadOnlyRegistry(
    {
        "linear": "agents.families.gradient:GradientLeader",
        "neural": "agents.families.gaussian:GaussianLeader",
        "text": "agents.families.text:TextLeader",
        "token": "agents.families.token:TokenLeader",
    },
    "agents.FAMILIES",
    "agents.register(id, entry_point, games=...) to run your own family on a game",
)
"""The built-in policy family of each game: the entry point of a learner registered without one."""

EntryPoint = str | Callable[..., Any]


@dataclass(frozen=True)
class LearnerSpec:
    """A registered learner: its id, a policy family per game, and default config.

    Attributes:
        id: what ``make`` takes.
        entry_points: game name -> ``"module:Class"`` or a class/callable ``(env, seed, **config)``.
        kwargs: default config, overridden by ``make``'s keywords.
        module: the module that registered it (a saved learner names it, to import before
            loading); a script run as ``python -m pkg.mod`` is recorded as ``pkg.mod``.
        env_kwargs: env arguments the learner needs (``{"rm_ensemble": 5}`` for a learner on an
            RM ensemble): the benchmark and the tests make its env with them.
        source: the file of the registering module (``None`` in an interactive session): a
            learner registered by a script (``__main__``) is saved with it, so the process that
            loads it is told which file registers it.
    """

    id: str
    entry_points: Mapping[str, EntryPoint]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    module: str = "__main__"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def games(self) -> tuple[str, ...]:
        """The games it runs on: those of :attr:`entry_points`."""
        return tuple(self.entry_points)


_registry: dict[str, LearnerSpec] = {}

registry: Mapping[str, LearnerSpec] = ReadOnlyRegistry(
    _registry,
    "agents.registry",
    "agents.register(id, ...) to add or replace a learner, agents.unregister(id) to remove one of yours",
)
"""Every registered learner by id (read-only: :func:`register`, :func:`unregister`)."""

_builtin_ids: set[str] = set()  # ids this package registered: unregister keeps them, even when overridden

_plugins_loaded = False


def is_builtin(module: str) -> bool:
    """Whether ``module`` is part of this package (its registrations are the built-in ones)."""
    return module == "agents" or module.startswith("agents.")


def definition(obj: Any) -> Any:
    """What identifies a definition across imports: a string, mapping or number as itself; a
    function or class by its qualified name and the file (and, for a function, the line) that
    defines it, so a module imported twice (reloaded, or under two names) defines the same
    learner or penalty again."""
    if isinstance(obj, Mapping):
        return tuple(sorted((k, definition(v)) for k, v in obj.items()))
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(obj, str) or qualname is None:
        return obj
    try:
        file = inspect.getfile(obj)
    except TypeError:  # defined in an interactive session: only the object itself is the same
        return obj
    line = getattr(getattr(obj, "__code__", None), "co_firstlineno", None)  # two lambdas of one file differ
    return qualname, os.path.realpath(file), line


def _registering_module(frame: Any) -> tuple[str, str | None]:
    """``(module, source file)`` of the code that called ``register``."""
    module = frame.f_globals.get("__name__", "__main__")
    source = frame.f_globals.get("__file__")
    if module == "__main__":
        main_spec = frame.f_globals.get("__spec__")
        if main_spec is not None and main_spec.name and main_spec.name != "__main__":
            module = main_spec.name  # python -m pkg.mod: importable as pkg.mod
    return module, (os.path.abspath(source) if source else None)


def register(
    id: str,
    entry_point: EntryPoint | Mapping[str, EntryPoint] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    games: tuple[str, ...] | list[str] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    override: bool = False,
) -> LearnerSpec:
    """Register a learner under ``id``.

    Args:
        id: the learner id. Registering the same definition again changes nothing; another
            definition under an id this package registered (``rlhf``, ``fpo-relaxed``, ...) is a
            ``ValueError`` unless ``override``; under a user's id it replaces it, with a warning.
        entry_point: the policy family: ``"module:Class"``, a class or factory called as
            ``entry_point(env, seed=seed, **config)``, or a mapping game -> either; ``None``:
            the built-in family of each game (``FAMILIES``).
        kwargs: default config of the learner (e.g. ``{"penalty": "practical"}``).
        games: the games it runs on (names in ``fpo_envs.GAMES``); default: the mapping's
            games, else the class's ``games`` attribute, else every game with a built-in family.
        env_kwargs: env arguments the learner needs beyond the game's defaults (e.g.
            ``{"rm_ensemble": 5}``); the benchmark makes the learner's envs with them.
        override: replace whatever is registered under ``id``, built-in or not, without a warning.

    Returns:
        the :class:`LearnerSpec`.

    Example:
        >>> import agents
        >>> agents.register("fpo-practical-strong", kwargs={"penalty": "practical", "gamma": 1.0},
        ...                 games=("linear",))  # doctest: +ELLIPSIS
        LearnerSpec(id='fpo-practical-strong', ...)
    """
    if not isinstance(id, str) or not id or ":" in id:
        raise ValueError(f"a learner id must be a non-empty string without ':', got {id!r}")
    if isinstance(entry_point, Mapping):
        points = dict(entry_point)
        if games is not None:
            points = {g: points[g] for g in games if g in points}
    else:
        if games is None:
            games = getattr(entry_point, "games", None) if entry_point is not None else tuple(FAMILIES)
        if games is None:
            raise ValueError(f"register({id!r}, ...): name the games the entry point supports, e.g. games=('linear',)")
        points = {g: FAMILIES.get(g) if entry_point is None else entry_point for g in games}
    unknown = sorted(g for g in points if g not in fpo_envs.GAMES)
    if unknown:
        raise ValueError(f"unknown game(s) {unknown} for learner {id!r}; the games are {sorted(fpo_envs.GAMES)}")
    missing = sorted(g for g, p in points.items() if p is None)
    if missing or not points:
        raise ValueError(f"learner {id!r} has no entry point for game(s) {missing or list(points)}")
    module, source = _registering_module(sys._getframe(1))
    if not is_builtin(module):
        load_plugins()  # the ids the package's own plugins register are taken before a user's
    new = LearnerSpec(id, points, dict(kwargs or {}), module, dict(env_kwargs or {}), source)
    old = _registry.get(id)
    if old is not None and not override and not _same_learner(old, new):
        if is_builtin(old.module):
            raise ValueError(
                f"{id!r} is a built-in learner (registered by {old.module}): choose another id for yours, "
                f"or pass override=True to replace the built-in one"
            )
        warnings.warn(
            f"replacing the learner {id!r} registered by {old.module} (pass override=True to replace it without this warning)",
            stacklevel=2,
        )
    _registry[id] = new
    if is_builtin(module):
        _builtin_ids.add(id)
    return new


def unregister(id: str) -> LearnerSpec:
    """Remove the learner ``id`` that you registered; return its :class:`LearnerSpec`.

    Raises:
        ValueError: ``id`` is not registered, or is one of this package's (replace a built-in
            with ``register(..., override=True)``; :func:`temporary_registrations` restores it).
    """
    load_plugins()
    if id not in _registry:
        raise ValueError(f"no learner {id!r} is registered; registered: {list(ids())}")
    if id in _builtin_ids:
        raise ValueError(
            f"{id!r} is a built-in learner and stays registered; "
            "to try a replacement, register(..., override=True) inside agents.common.registration.temporary_registrations()"
        )
    return _registry.pop(id)


@contextmanager
def temporary_registrations() -> Iterator[None]:
    """Undo, on leaving the block, every learner and penalty registered, replaced or removed
    inside it (built-in ones overridden included)::

        with temporary_registrations():
            agents.register_penalty("relaxed", my_relaxed, override=True)
            ...  # fpo-relaxed runs on my_relaxed
        # the built-in relaxed penalty is back

    The installed packages' plugins are loaded first, so they stay registered after the block.
    """
    load_plugins()
    saved = [(data, dict(data)) for data in _registries]
    try:
        yield
    finally:
        for data, contents in saved:
            data.clear()
            data.update(contents)


def _same_learner(a: LearnerSpec, b: LearnerSpec) -> bool:
    return (definition(dict(a.entry_points)), dict(a.kwargs), dict(a.env_kwargs)) == (
        definition(dict(b.entry_points)),
        dict(b.kwargs),
        dict(b.env_kwargs),
    )


def load_plugins() -> None:
    """Import the learners that installed packages declare in the ``fpo_envs.learners``
    entry-point group (once; a plugin that fails to load is a warning, not an error)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for plugin in entry_points(group=PLUGIN_GROUP):
        try:
            loaded = plugin.load()
            if callable(loaded):
                loaded()
        except Exception as err:  # noqa: BLE001 - one broken plugin must not hide the others
            warnings.warn(f"the fpo_envs.learners plugin {plugin.name!r} ({plugin.value}) failed to load: {err!r}", stacklevel=2)


def ids(game: str | None = None) -> tuple[str, ...]:
    """The registered learner ids, all or those that run on ``game``."""
    load_plugins()
    return tuple(sorted(i for i, s in registry.items() if game is None or game in s.games))


def pprint_registry() -> str:
    """A table of the registered learners and their games (also printed)."""
    load_plugins()
    width = max(len(i) for i in registry) + 2
    lines = [f"{i:<{width}}{', '.join(s.games)}" for i, s in sorted(registry.items())]
    text = "\n".join(lines)
    print(text)
    return text


def import_module(module: str, what: str) -> Any:
    """Import a user's ``module``; any failure is an ``ImportError`` that says ``what`` asked
    for it and why it failed (the original error chained)."""
    try:
        return importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - a module's own error (a bad register call) is reported the same way
        reason = str(err) if isinstance(err, ImportError) else f"{type(err).__name__}: {err}"
        hint = ""
        if isinstance(err, ModuleNotFoundError) and err.name == module.partition(".")[0]:
            hint = "; put its folder on sys.path (PYTHONPATH), or run the command from that folder"
        raise ImportError(f"{what}: the module {module!r} does not import ({reason}){hint}") from err


def _split_id(id: str) -> str:
    """``"module:id"`` -> import ``module`` and return ``id``."""
    if ":" not in id:
        return id
    module, _, id = id.rpartition(":")
    import_module(module, f"learner id {module}:{id}")
    return id


def spec(id: str, game: str | None = None) -> LearnerSpec:
    """The :class:`LearnerSpec` of ``id`` (``"module:id"`` imports the module first)."""
    load_plugins()
    id = _split_id(id)
    if id not in registry:
        where = f" for the {game} game" if game else ""
        raise ValueError(
            f"unknown learner {id!r}; registered{where}: {list(ids(game))}. "
            "Register your own with agents.register(id, ...), or name its module: 'my.module:my-id'"
        )
    found = registry[id]
    if game is not None and game not in found.games:
        raise ValueError(
            f"learner {id!r} runs on the {', '.join(found.games)} game(s), not on the {game} game; "
            f"learners for the {game} game: {list(ids(game))}"
        )
    return found


def _load_entry_point(point: EntryPoint, id: str) -> Callable[..., Any]:
    if callable(point):
        return point
    module, _, attr = point.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"learner {id!r}: its entry point {point!r} does not load ({err})") from err


def check_config(id: str, game: str, config: Mapping[str, Any] | None = None) -> Any:
    """The config learner ``id`` would have on ``game`` with ``config``, built without an env:
    a bad key or value raises what :func:`make` would raise, before anything runs.

    Returns:
        the family's config dataclass, or ``None`` for a factory that declares no ``config_cls``.
    """
    from agents.common.config import build_config

    found = spec(id, game)
    factory = _load_entry_point(found.entry_points[game], found.id)
    config_cls = getattr(factory, "config_cls", None)
    if config_cls is None:
        return None
    return build_config(config_cls, {**found.kwargs, **(config or {})})


def make(id: str, env: Any, seed: int | None = None, **config: Any) -> Any:
    """Build learner ``id`` on ``env``.

    Args:
        id: a registered id (``agents.ids()``), or ``"module:id"`` to import ``module`` first.
        env: an ``FPO/`` environment, single (``gym.make``) or vector (``gym.make_vec``).
        seed: seeds the learner's generator and the env's first ``reset``: ``None`` or an
            integer >= 0.
        **config: overrides of the learner's config; an unknown key is a ``TypeError``, a
            value of the wrong type or out of range an error naming the field.

    Returns:
        the learner (an :class:`agents.Agent`).
    """
    from agents.common.config import check_seed

    check_seed(seed)
    game = fpo_envs.game_of(env)
    found = spec(id, game)
    factory = _load_entry_point(found.entry_points[game], found.id)
    agent = factory(env, seed=seed, **{**found.kwargs, **config})
    agent.spec = found
    return agent
