"""The linear reward model of ``FPO/LinearRM-v0``."""

from __future__ import annotations

import numpy as np


class LinearRewardModel:
    """The linear RM ``r_w(y) = <w, y>`` trained by regression on the oracle's labels.

    Every method broadcasts over leading batch dimensions: ``w`` has shape ``(*B, d)`` and
    an output ``y`` shape ``(*B, d)`` (or anything that broadcasts against ``w``).
    The follower step on a labelled output ``(y, u)`` is the paper's
    ``w <- (1 - weight_decay) w - lr * grad_w (w . y - u)^2``.

    Args:
        w: the parameters, shape ``(*B, d)``; held by reference (the env's live state).
        lr: the follower's step size ``eta_F``.
        weight_decay: the multiplicative shrinkage applied at every step.
    """

    loss_kind = "regression"

    def __init__(self, w: np.ndarray, lr: float = 0.005, weight_decay: float = 1e-4):
        self.w = w
        self.lr = lr
        self.weight_decay = weight_decay

    @property
    def params(self) -> np.ndarray:
        """The parameters ``phi = w``, shape ``(*B, p)`` with ``p = d``."""
        return self.w

    def replace(self, params: np.ndarray) -> "LinearRewardModel":
        """The same RM with other parameters (e.g. from an observation, or expanded for a
        batch). A torch tensor is kept as it is, so the RM's methods stay differentiable."""
        if not isinstance(params, np.ndarray) and hasattr(params, "requires_grad"):
            return LinearRewardModel(params, self.lr, self.weight_decay)
        return LinearRewardModel(np.asarray(params, dtype=np.float64), self.lr, self.weight_decay)

    def with_params(self, params: np.ndarray) -> "LinearRewardModel":
        """:meth:`replace`: the linear RM keeps no optimizer state or buffer to carry over."""
        return self.replace(params)

    def reward(self, y: np.ndarray) -> np.ndarray:
        """``r_w(y)``, shape ``(*B,)``."""
        return (self.w * y).sum(-1)

    def grad_params(self, y: np.ndarray) -> np.ndarray:
        """``grad_w r_w(y) = y``, shape ``(*B, p)``."""
        return _broadcast_copy(y, np.shape(self.w))

    def reward_and_grad_params(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(r_w(y), grad_w r_w(y))`` in one call, as every regression RM offers."""
        return self.reward(y), self.grad_params(y)

    def grad_input(self, y: np.ndarray) -> np.ndarray:
        """``grad_y r_w(y) = w``, shape ``(*B, d)``."""
        return _broadcast_copy(self.w, np.shape(y))

    def grad_params_vjp(self, y: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``grad_y <grad_w r_w(y), v>`` with ``v`` held fixed, shape ``(*B, d)``.

        The mixed second derivative that carries the practical penalty's gradient to the
        output: here ``d(grad_w r)/dy`` is the identity, so the product is ``v``.
        """
        return _broadcast_copy(v, np.shape(y))

    def loss(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The follower loss ``(r_w(y) - u)^2``, shape ``(*B,)``."""
        return (self.reward(y) - u) ** 2

    def loss_grad(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``grad_w (r_w(y) - u)^2 = 2 (r_w(y) - u) y``, shape ``(*B, p)``."""
        return 2.0 * (self.reward(y) - u)[..., None] * y

    def preview_update(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The parameters after one follower step on ``(y, u)``, without applying it."""
        return (1.0 - self.weight_decay) * self.w - self.lr * self.loss_grad(y, u)

    def stepped(self, y, u, steps: int = 1) -> "LinearRewardModel":
        """The RM after ``steps`` follower steps on ``(y, u)``, not applied: the env's own step
        repeated. With torch tensors (parameters from :meth:`replace`) it is differentiable in
        ``y`` and ``u``, so a learner can differentiate through the follower (``fpo-exact``)."""
        rm = self
        for _ in range(steps):
            rm = rm.replace(rm.preview_update(y, u))
        return rm

    def update(self, y: np.ndarray, u: np.ndarray, reward: np.ndarray | None = None) -> None:
        """Take the follower step (the env's state changes): ``w`` becomes a new array, the
        old one is left as it was (the env keeps it to roll a diverged step back without a
        copy); ``reward``, if given, is ``r_w(y)`` already computed (it saves a second pass)."""
        if reward is None:
            self.w = self.preview_update(y, u)
        else:
            # (1 - wd) w - lr (2 (r - u) y), in place on two new arrays (the same roundings).
            step = (2.0 * (reward - u))[..., None] * y
            step *= self.lr
            w = self.w * (1.0 - self.weight_decay)
            w -= step
            self.w = w


def _broadcast_copy(a: np.ndarray, other_shape: tuple[int, ...]) -> np.ndarray:
    """A new array of ``a`` broadcast against ``other_shape`` (a plain copy where the shapes
    agree, the common case, without broadcasting's overhead)."""
    if np.shape(a) == other_shape:
        return np.array(a, copy=True)
    return np.broadcast_to(a, np.broadcast_shapes(np.shape(a), other_shape)).copy()
