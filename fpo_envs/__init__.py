"""fpo-envs: Gymnasium environments of the iterative-RLHF feedback loop.

Importing the package registers the games under the ``FPO/`` namespace::

    import gymnasium as gym
    import fpo_envs  # noqa: F401

    env = gym.make("FPO/LinearRM-v0")
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=1000)  # batched numpy, one state
    env = gym.make("FPO/TokenRM-v0")   # token sequences, numpy only
    env = gym.make("FPO/NeuralRM-v0")  # needs torch
    env = gym.make("FPO/TextRM-v0")    # needs the text extra: pip install "fpo-envs[text]"
"""

import sys as _sys
from types import MappingProxyType as _MappingProxyType

from gymnasium.envs.registration import register as _register

from fpo_envs.core import INFO_KEYS, VECTOR_INFO_KEYS, FeedbackLoopEnv, FeedbackLoopVectorEnv

__version__ = "0.1.0"
__all__ = [
    "ENV_IDS",
    "GAMES",
    "INFO_KEYS",
    "VECTOR_INFO_KEYS",
    "FeedbackLoopEnv",
    "FeedbackLoopVectorEnv",
    "game_of",
    "game_of_id",
    "register_game",
]

_GAMES: dict[str, tuple[str, tuple[str, ...]]] = {}

GAMES = _MappingProxyType(_GAMES)
"""Each game (read-only; :func:`register_game` adds one): the class its single and vector
environments share, as ``"module:Class"``, and its env ids."""

ENV_IDS: tuple[str, ...] = ()
"""Every environment id registered through :func:`register_game` so far: read it as
``fpo_envs.ENV_IDS`` to see a game registered later (``from fpo_envs import ENV_IDS`` copies
the tuple of the moment)."""


def register_game(
    name: str,
    env_id: str,
    game: str,
    entry_point: str,
    vector_entry_point: str | None = None,
    max_episode_steps: int | None = None,
) -> None:
    """Register a game: its env id with Gymnasium (``gym.make`` / ``gym.make_vec``) and its
    name in :data:`GAMES`, which the learners' registry and :func:`game_of` read.

    Args:
        name: the game's name (``"linear"``), what ``agents.register(..., games=(name,))`` takes.
        env_id: the Gymnasium id (``"FPO/LinearRM-v0"``).
        game: ``"module:Class"`` of the class the game's single and vector envs share, by which a
            learner recognises the game.
        entry_point, vector_entry_point: ``"module:Class"`` of the single and the native vector env.
        max_episode_steps: the episode's time limit.

    Raises:
        ValueError: ``name`` is taken by another game or ``env_id`` by another environment.
    """
    global ENV_IDS
    if name in _GAMES and _GAMES[name][0] != game:
        raise ValueError(f"the game {name!r} is registered already (by {_GAMES[name][0]}); choose another name")
    if env_id in ENV_IDS and env_id not in _GAMES.get(name, ("", ()))[1]:
        raise ValueError(f"{env_id!r} is registered already for another game; choose another id")
    _register(id=env_id, entry_point=entry_point, vector_entry_point=vector_entry_point, max_episode_steps=max_episode_steps)
    ids = _GAMES.get(name, (game, ()))[1]
    _GAMES[name] = (game, ids + ((env_id,) if env_id not in ids else ()))
    ENV_IDS = ENV_IDS + ((env_id,) if env_id not in ENV_IDS else ())


register_game(
    "linear",
    "FPO/LinearRM-v0",
    "fpo_envs.games.linear:LinearGame",
    "fpo_envs.games.linear:LinearRMEnv",
    "fpo_envs.games.linear:LinearRMVectorEnv",
    max_episode_steps=300,
)
register_game(
    "neural",
    "FPO/NeuralRM-v0",
    "fpo_envs.games.neural:NeuralGame",
    "fpo_envs.games.neural:NeuralRMEnv",
    "fpo_envs.games.neural:NeuralRMVectorEnv",
    max_episode_steps=4000,
)
register_game(
    "token",
    "FPO/TokenRM-v0",
    "fpo_envs.games.token:TokenGame",
    "fpo_envs.games.token:TokenRMEnv",
    "fpo_envs.games.token:TokenRMVectorEnv",
    max_episode_steps=600,
)
register_game("text", "FPO/TextRM-v0", "fpo_envs.games.text:TextRMEnv", "fpo_envs.games.text:TextRMEnv", max_episode_steps=500)


def game_of_id(env_id: str) -> str:
    """The name of the game an env id belongs to (a ``ValueError`` for any other id)."""
    for name, (_, ids) in GAMES.items():
        if env_id in ids:
            return name
    raise ValueError(f"{env_id!r} is not an fpo-envs game; games: {list(ENV_IDS)}")


def game_of(env: object) -> str:
    """The name of the game behind ``env`` (single, vector or wrapped), found by its class.

    Raises:
        TypeError: ``env`` is not one of this package's games.
    """
    unwrapped = getattr(env, "unwrapped", env)
    for name, (path, _) in GAMES.items():
        module, _, cls = path.partition(":")
        # A game's module is loaded whenever one of its envs exists, so an env whose module
        # is absent is not of that game, and checking imports nothing heavy.
        if module in _sys.modules and isinstance(unwrapped, getattr(_sys.modules[module], cls)):
            return name
    inner = getattr(unwrapped, "envs", None)
    if inner:  # a SyncVectorEnv/AsyncVectorEnv of single envs
        try:
            game = game_of(inner[0])
        except (TypeError, AttributeError):
            pass
        else:
            raise TypeError(
                f"{type(unwrapped).__name__} holds {game}-game envs one per copy; a learner takes a single env "
                "or the game's native vector env (gym.make_vec(id, num_envs=n), where the game has one)"
            )
    raise TypeError(
        f"{type(unwrapped).__name__} is not an fpo-envs game; the learners run on {list(ENV_IDS)} "
        "(gym.make or gym.make_vec of those ids, after import fpo_envs)"
    )
