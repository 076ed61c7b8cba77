"""Learners for the fpo-envs games: a policy family per game plus an objective.

``agents.make(id, env, seed=None, **config)`` builds a registered learner for the game
behind ``env`` (a single env or a vector env)::

    import gymnasium as gym
    import agents, fpo_envs

    env = gym.make("FPO/LinearRM-v0")
    history = agents.make("fpo-relaxed", env, seed=0).learn(300)

``rlhf``, ``fpo-practical`` and ``fpo-relaxed`` are presets of each game's policy family
(``penalty`` ``none``, ``practical``, ``relaxed``); ``ppo``, ``ppo-fpo-practical`` and
``ppo-fpo-relaxed`` run stable-baselines3's PPO on the vector games. Your own learner or
penalty registers with :func:`register` / :func:`register_penalty` (ARCHITECTURE.md, 5).
``registry``, ``PENALTIES`` and ``FAMILIES`` are read-only views of what is registered;
:func:`unregister` / :func:`unregister_penalty` remove one of yours.
:class:`PenaltyReward` (single env) and :class:`VectorPenaltyReward` (``gym.make_vec``) pay
any reinforcement-learning algorithm ``proxy - gamma * R`` (:mod:`agents.common.wrappers`).
"""

from agents.common.base import Agent
from agents.common.objectives import (
    PAPER_GAMMA,
    PENALTIES,
    Objective,
    ObjectiveConfig,
    Outputs,
    Penalty,
    get_penalty,
    register_penalty,
    unregister_penalty,
)
from agents.common.registration import (
    FAMILIES,
    PLUGIN_GROUP,
    LearnerSpec,
    ids,
    make,
    pprint_registry,
    register,
    registry,
    spec,
    unregister,
)
from agents.common.wrappers import PenaltyReward, VectorPenaltyReward

NAMES = ("rlhf", "fpo-practical", "fpo-relaxed")
"""The paper's three learners, registered for every game."""

register("rlhf", kwargs={"penalty": "none"})
register("fpo-practical", kwargs={"penalty": "practical"})
register("fpo-relaxed", kwargs={"penalty": "relaxed"})
register("ppo", "agents.families.sb3:PPOLearner", kwargs={"penalty": "none"}, games=("linear", "neural"))
register("ppo-fpo-practical", "agents.families.sb3:PPOLearner", kwargs={"penalty": "practical"}, games=("linear", "neural"))
register("ppo-fpo-relaxed", "agents.families.sb3:PPOLearner", kwargs={"penalty": "relaxed"}, games=("linear", "neural"))


def load(path, env, **config_overrides) -> Agent:
    """Rebuild the learner saved at ``path`` on ``env`` (see :meth:`Agent.load`)."""
    return Agent.load(path, env, **config_overrides)


__all__ = [
    "FAMILIES",
    "NAMES",
    "PAPER_GAMMA",
    "PENALTIES",
    "PLUGIN_GROUP",
    "Agent",
    "LearnerSpec",
    "Objective",
    "ObjectiveConfig",
    "Outputs",
    "Penalty",
    "PenaltyReward",
    "VectorPenaltyReward",
    "get_penalty",
    "ids",
    "load",
    "make",
    "pprint_registry",
    "register",
    "register_penalty",
    "registry",
    "spec",
    "unregister",
    "unregister_penalty",
]
