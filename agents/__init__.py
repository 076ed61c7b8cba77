"""Interchangeable learners for the fpo-envs games.

``agents.make(name, env, seed=None, **config)`` builds the learner ``name`` for the game
behind ``env`` (a single env or a vector env)::

    import gymnasium as gym
    import agents, fpo_envs

    env = gym.make("FPO/LinearRM-v0")
    history = agents.make("fpo-relaxed", env, seed=0).learn(300)
"""

from __future__ import annotations

from typing import Any

from agents.base import Agent

NAMES = ("rlhf", "fpo-practical", "fpo-relaxed")

# (learner name, game) -> "module:Class", imported on use so heavy games stay optional.
_REGISTRY = {
    ("rlhf", "linear"): "agents.gradient:RLHF",
    ("fpo-practical", "linear"): "agents.gradient:PracticalFPO",
    ("fpo-relaxed", "linear"): "agents.gradient:RelaxedFPO",
    ("rlhf", "neural"): "agents.gaussian:GaussianRLHF",
    ("fpo-practical", "neural"): "agents.gaussian:GaussianPracticalFPO",
    ("fpo-relaxed", "neural"): "agents.gaussian:GaussianRelaxedFPO",
    ("rlhf", "text"): "agents.text:TextRLHF",
    ("fpo-practical", "text"): "agents.text:TextPracticalFPO",
    ("fpo-relaxed", "text"): "agents.text:TextRelaxedFPO",
}

_GAMES = {
    "LinearRMEnv": "linear", "LinearRMVectorEnv": "linear",
    "NeuralRMEnv": "neural", "NeuralRMVectorEnv": "neural",
    "TextRMEnv": "text",
}


def _game_of(env: Any) -> str:
    for cls in type(env.unwrapped).__mro__:
        if cls.__name__ in _GAMES:
            return _GAMES[cls.__name__]
    raise TypeError(f"no fpo-envs learner knows the environment {type(env.unwrapped).__name__}")


def make(name: str, env: Any, seed: int | None = None, **config: Any) -> Agent:
    """Build learner ``name`` on ``env``.

    Args:
        name: one of ``agents.NAMES``.
        env: an ``FPO/`` environment, single (``gym.make``) or vector (``gym.make_vec``).
        seed: seeds the learner's generator and the env's first ``reset``.
        **config: fields of the learner's config dataclass; an unknown key is a ``TypeError``.
    """
    if name not in NAMES:
        raise ValueError(f"unknown learner {name!r}; expected one of {NAMES}")
    import importlib

    module, cls = _REGISTRY[(name, _game_of(env))].split(":")
    return getattr(importlib.import_module(module), cls)(env, seed=seed, **config)


__all__ = ["Agent", "NAMES", "make"]
