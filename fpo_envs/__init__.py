"""fpo-envs: Gymnasium environments of the iterative-RLHF feedback loop.

Importing the package registers the games under the ``FPO/`` namespace::

    import gymnasium as gym
    import fpo_envs  # noqa: F401

    env = gym.make("FPO/LinearRM-v0")
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=1000)  # batched numpy, one state
    env = gym.make("FPO/NeuralRM-v0")  # needs torch
    env = gym.make("FPO/TextRM-v0")    # needs the text extra: pip install "fpo-envs[text]"
"""

from gymnasium.envs.registration import register

from fpo_envs.core import INFO_KEYS, FeedbackLoopEnv, FeedbackLoopVectorEnv

__version__ = "0.1.0"
__all__ = ["INFO_KEYS", "FeedbackLoopEnv", "FeedbackLoopVectorEnv", "ENV_IDS"]

register(
    id="FPO/LinearRM-v0",
    entry_point="fpo_envs.linear:LinearRMEnv",
    vector_entry_point="fpo_envs.linear:LinearRMVectorEnv",
    max_episode_steps=300,
)

register(
    id="FPO/NeuralRM-v0",
    entry_point="fpo_envs.neural:NeuralRMEnv",
    vector_entry_point="fpo_envs.neural:NeuralRMVectorEnv",
    max_episode_steps=4000,
)

register(
    id="FPO/TextRM-v0",
    entry_point="fpo_envs.text:TextRMEnv",
    max_episode_steps=500,
)

ENV_IDS = ("FPO/LinearRM-v0", "FPO/NeuralRM-v0", "FPO/TextRM-v0")
"""Every environment this package registers."""
