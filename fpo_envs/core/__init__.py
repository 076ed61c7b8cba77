"""The feedback loop every game shares: the single and vector base environments and their checks.

Nothing here knows a particular game; :mod:`fpo_envs.models` holds the reward models and
oracles, :mod:`fpo_envs.games` one module per game.
"""

from fpo_envs.core.env import INFO_KEYS, VECTOR_INFO_KEYS, FeedbackLoopEnv, FeedbackLoopVectorEnv, parse_autoreset_mode

__all__ = ["INFO_KEYS", "VECTOR_INFO_KEYS", "FeedbackLoopEnv", "FeedbackLoopVectorEnv", "parse_autoreset_mode"]
