"""What the vector games (linear, neural) share: the cost proxy, the parameter bound, per-copy reset options."""

from __future__ import annotations

from typing import Any

import numpy as np

from fpo_envs.core.checks import check_bounded_array, check_finite_array

PARAM_BOUND = 1e6
"""RM parameters beyond this magnitude (or non-finite) end the episode as diverged."""


class CostProxy:
    """The proxy of the vector games, ``r(y) - action_cost * ||y||^2``: the one definition the
    env's reward and every learner's objective use."""

    action_cost: float

    def proxy(self, y: Any, reward: Any) -> Any:
        """The proxy objective of outputs ``y`` (shape ``(*B, d)``) whose RM score is ``reward``."""
        return reward - self.action_cost * (y * y).sum(-1)

    def proxy_grad(self, y: Any, reward_grad: Any) -> Any:
        """``grad_y`` of :meth:`proxy`, given ``grad_y r(y)``."""
        return reward_grad - 2.0 * self.action_cost * y


def per_copy(value, shape, index, name, bound=None):
    """Reset option ``name`` for copy ``index`` (given once for all copies, or per copy); a
    float array, as an action is (:func:`fpo_envs.core.check_finite_array`)."""
    array = np.asarray(value)
    if index is not None and array.ndim == len(shape) + 1:
        array = array[index]
    if bound is None:
        return check_finite_array(array, shape, f"reset option {name!r}")
    return check_bounded_array(array, shape, float(bound), f"reset option {name!r}")
