"""An ensemble of reward models trained on the same data from different initialisations.

The vector games take ``rm_ensemble=K`` (default 1, a single RM). With ``K >= 2`` the env's
``reward_model`` is a :class:`RewardModelEnsemble`: ``K`` members of the game's RM class,
each drawn from its own initialisation and each retrained every round on the same labelled
outputs (Coste et al., ICLR 2024; Eisenstein et al. 2023). The ensemble is itself a reward
model, its reward the members' mean, so every learner runs on it unchanged; learners that
aggregate the members otherwise (worst case, mean minus standard deviation) read them through
:meth:`RewardModelEnsemble.member_rewards` and :meth:`RewardModelEnsemble.member_grad_input`.

Members sit on one stacked axis just before the parameter axis (parameters ``(*B, K, p)``),
so the members' forward passes and follower steps are the game's own batched code. The flat
:attr:`RewardModelEnsemble.params` ``(*B, K * p)`` is what the observation carries.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def member_std(rewards: Any) -> Any:
    """The (population) standard deviation over the last axis, numpy or torch: how much the
    members' scores ``(..., K)`` disagree."""
    centred = rewards - rewards.mean(-1)[..., None]
    return (centred * centred).mean(-1) ** 0.5


def _is_numpy(x: Any) -> bool:
    return isinstance(x, np.ndarray) or np.isscalar(x)


class RewardModelEnsemble:
    """``K`` members of one RM class, scored as their mean.

    Args:
        stacked: one RM of the game's class whose parameters have shape ``(*B, K, p)``: the
            members on the axis before the parameters (held by reference: the env's live state).
    """

    def __init__(self, stacked: Any):
        self.stacked = stacked
        self.size = int(stacked.params.shape[-2])
        self.loss_kind = stacked.loss_kind

    # Shapes ------------------------------------------------------------------------------
    @property
    def _batch(self) -> tuple[int, ...]:
        return tuple(self.stacked.params.shape[:-2])

    @property
    def params(self) -> Any:
        """The members' parameters flattened, ``(*B, K * p)`` (a view of the live state)."""
        p = self.stacked.params
        return p.reshape(*p.shape[:-2], p.shape[-2] * p.shape[-1])

    @property
    def members(self) -> list[Any]:
        """The ``K`` members as RMs of the game's class, each a view of its parameters."""
        p = self.stacked.params
        return [self.stacked.replace(p[..., k, :]) for k in range(self.size)]

    def replace(self, params: Any) -> "RewardModelEnsemble":
        """The ensemble with other flat parameters ``(*B', K * p)`` (an observation's, or
        expanded for a batch); a tensor stays a tensor, so the result stays differentiable."""
        shape = tuple(params.shape)
        members = params.reshape(*shape[:-1], self.size, shape[-1] // self.size)
        return RewardModelEnsemble(self.stacked.replace(members))

    def with_params(self, params: Any) -> "RewardModelEnsemble":
        """The ensemble, its members' optimizer states and buffers, with other flat parameters
        ``(*B', K * p)`` (an observation's); needs members that have ``with_params``."""
        shape = tuple(params.shape)
        members = params.reshape(*shape[:-1], self.size, shape[-1] // self.size)
        return RewardModelEnsemble(self.stacked.with_params(members))

    def to(self, dtype: Any) -> "RewardModelEnsemble":
        """The same ensemble in another torch dtype (the MLP game's float64 gradient checks)."""
        return RewardModelEnsemble(self.stacked.to(dtype))

    def _broadcast_members(self, x: Any, event_dims: int) -> Any:
        """``x`` with shape ``(*B, *event)`` repeated over the member axis: ``(*B, K, *event)``."""
        axis = np.ndim(x) - event_dims if _is_numpy(x) else x.ndim - event_dims
        if _is_numpy(x):
            x = np.expand_dims(np.asarray(x), axis)
            return np.broadcast_to(x, x.shape[:axis] + (self.size,) + x.shape[axis + 1 :])
        x = x.unsqueeze(axis)
        return x.expand(*x.shape[:axis], self.size, *x.shape[axis + 1 :])

    def _outputs(self, y: Any) -> tuple[Any, int]:
        """The outputs repeated for each member, and the axis the members' results land on."""
        axis = len(self._batch)
        y_ndim = np.ndim(y) if _is_numpy(y) else y.ndim
        if y_ndim < axis + 1:
            raise ValueError(f"outputs must carry the ensemble's batch shape {self._batch}, got shape {tuple(np.shape(y))}")
        return self._broadcast_members(y, y_ndim - axis), axis

    @staticmethod
    def _last(x: Any, axis: int, extra: int = 0) -> Any:
        """Move the member axis of a result to position ``-1 - extra``."""
        target = x.ndim - 1 - extra
        return np.moveaxis(x, axis, target) if _is_numpy(x) else x.movedim(axis, target)

    # Scores and gradients ----------------------------------------------------------------
    def member_rewards(self, y: Any) -> Any:
        """Each member's ``r_k(y)``: the shape of :meth:`reward` with a member axis last."""
        z, axis = self._outputs(y)
        return self._last(self.stacked.reward(z), axis)

    def member_grad_input(self, y: Any) -> Any:
        """Each member's ``grad_y r_k(y)``: the shape of ``y`` with a member axis before the last."""
        z, axis = self._outputs(y)
        return self._last(self.stacked.grad_input(z), axis, extra=1)

    def reward(self, y: Any) -> Any:
        """The ensemble's score, the members' mean ``(1/K) sum_k r_k(y)``."""
        return self.member_rewards(y).mean(-1)

    def grad_input(self, y: Any) -> Any:
        """``grad_y`` of the members' mean."""
        return self.member_grad_input(y).mean(-2)

    def member_spread(self, y: Any) -> Any:
        """The members' disagreement at ``y``: the standard deviation of ``r_k(y)`` over ``k``."""
        return member_std(self.member_rewards(y))

    def _member_grads(self, y: Any) -> Any:
        """Per-member ``grad_{phi_k} r_k(y)`` with the member axis just before the parameters."""
        z, axis = self._outputs(y)
        return self._last(self.stacked.grad_params(z), axis, extra=1)

    def grad_params(self, y: Any) -> Any:
        """``grad_phi`` of the mean over the flat parameters: ``(1/K) grad_{phi_k} r_k``
        stacked, shape ``(..., K * p)``."""
        g = self._member_grads(y) / self.size
        return g.reshape(*g.shape[:-2], g.shape[-2] * g.shape[-1])

    def reward_and_grad_params(self, y: Any) -> tuple[Any, Any]:
        """``(reward(y), grad_params(y))``."""
        return self.reward(y), self.grad_params(y)

    def grad_params_vjp(self, y: Any, v: Any) -> Any:
        """``grad_y <grad_phi r(y), v>`` with flat ``v`` held fixed (the practical penalty's
        chain rule), as the members' own products averaged."""
        vk = v.reshape(*v.shape[:-1], self.size, v.shape[-1] // self.size)
        z, axis = self._outputs(y)
        per_member = self.stacked.grad_params_vjp(z, vk)
        return self._last(per_member, axis, extra=1).mean(-2)

    # The follower -------------------------------------------------------------------------
    def _labelled(self, y: Any, u: Any) -> tuple[Any, Any]:
        z, _ = self._outputs(y)
        u_ndim = np.ndim(u) if _is_numpy(u) else u.ndim
        return z, self._broadcast_members(u, u_ndim - len(self._batch))

    def loss(self, y: Any, u: Any) -> Any:
        """The members' mean follower loss."""
        z, w = self._labelled(y, u)
        return self._last(self.stacked.loss(z, w), len(self._batch)).mean(-1)

    def update(self, y: Any, u: Any, reward: Any = None) -> None:
        """Every member takes its follower step on the same ``(y, u)``, in place."""
        z, w = self._labelled(y, u)
        self.stacked.update(z, w)

    def preview_update(self, y: Any, u: Any) -> Any:
        """The flat parameters after every member's follower step, not applied."""
        z, w = self._labelled(y, u)
        p = self.stacked.preview_update(z, w)
        return p.reshape(*p.shape[:-2], p.shape[-2] * p.shape[-1])

    def stepped(self, y: Any, u: Any, steps: int = 1) -> "RewardModelEnsemble":
        """The ensemble after ``steps`` follower steps of every member, not applied (differentiable
        where the members' step is)."""
        z, w = self._labelled(y, u)
        return RewardModelEnsemble(self.stacked.stepped(z, w, steps))

    # The MLP game's buffer, shared by the members ---------------------------------------
    @property
    def buffer(self) -> dict | None:
        """The replay buffer the members train on (each holds the same copy); ``None`` on the
        linear game."""
        buf = getattr(self.stacked, "buffer", None)
        if buf is None:
            return None
        axis = len(self._batch)
        return {k: v.select(axis, 0) for k, v in buf.items()}

    def buffer_error(self) -> Any:
        """Mean ``|r - U|`` of the ensemble's mean over the shared buffer."""
        from fpo_envs.models.mlp import buffer_error

        return buffer_error(self.reward, self.buffer)
