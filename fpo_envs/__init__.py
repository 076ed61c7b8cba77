"""fpo-envs: Gymnasium environments of the iterative-RLHF feedback loop.

Importing the package registers the games under the ``FPO/`` namespace::

    import gymnasium as gym
    import fpo_envs  # noqa: F401

    env = gym.make("FPO/LinearRM-v0")
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=1000)  # batched numpy, one state
    env = gym.make("FPO/NeuralRM-v0")  # needs torch
    env = gym.make("FPO/TextRM-v0")    # needs the text extra: pip install "fpo-envs[text]"
"""

import sys
from typing import Any

from gymnasium.envs.registration import register

from fpo_envs.core import INFO_KEYS, FeedbackLoopEnv, FeedbackLoopVectorEnv

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "GAMES", "INFO_KEYS", "FeedbackLoopEnv", "FeedbackLoopVectorEnv", "game_of", "game_of_id"]

register(
    id="FPO/LinearRM-v0",
    entry_point="fpo_envs.games.linear:LinearRMEnv",
    vector_entry_point="fpo_envs.games.linear:LinearRMVectorEnv",
    max_episode_steps=300,
)

register(
    id="FPO/NeuralRM-v0",
    entry_point="fpo_envs.games.neural:NeuralRMEnv",
    vector_entry_point="fpo_envs.games.neural:NeuralRMVectorEnv",
    max_episode_steps=4000,
)

register(
    id="FPO/TextRM-v0",
    entry_point="fpo_envs.games.text:TextRMEnv",
    max_episode_steps=500,
)

ENV_IDS = ("FPO/LinearRM-v0", "FPO/NeuralRM-v0", "FPO/TextRM-v0")
"""Every environment this package registers."""

GAMES = {
    "linear": ("fpo_envs.games.linear:LinearGame", ("FPO/LinearRM-v0",)),
    "neural": ("fpo_envs.games.neural:NeuralGame", ("FPO/NeuralRM-v0",)),
    "text": ("fpo_envs.games.text:TextRMEnv", ("FPO/TextRM-v0",)),
}
"""Each game: the class its single and vector environments share, and its env ids."""


def game_of_id(env_id: str) -> str:
    """The name of the game an env id belongs to (a ``ValueError`` for any other id)."""
    for name, (_, ids) in GAMES.items():
        if env_id in ids:
            return name
    raise ValueError(f"{env_id!r} is not an fpo-envs game; games: {list(ENV_IDS)}")


def game_of(env: Any) -> str:
    """The name of the game behind ``env`` (single, vector or wrapped), found by its class.

    Raises:
        TypeError: ``env`` is not one of this package's games.
    """
    unwrapped = getattr(env, "unwrapped", env)
    for name, (path, _) in GAMES.items():
        module, _, cls = path.partition(":")
        # A game's module is loaded whenever one of its envs exists, so an env whose module
        # is absent is not of that game, and checking imports nothing heavy.
        if module in sys.modules and isinstance(unwrapped, getattr(sys.modules[module], cls)):
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
