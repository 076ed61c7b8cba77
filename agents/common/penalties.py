"""The FPO penalties, written once from a reward model's own gradients (ARCHITECTURE.md, 1).

One follower step changes the reward of an output ``z`` by, to first order,
``-eta_F <grad_phi r_phi(z), grad_phi l(z; phi)>``. FPO penalizes that self-influence:

=============  ============================================  ===========================================
follower loss  practical ``R_bar``                           relaxed ``R_tilde``
=============  ============================================  ===========================================
regression     ``||grad_phi r(z)||^2``                       ``(r(z) - U(z)) * R_bar``
Bradley-Terry  ``<grad_phi r(z), grad_phi (r(z) - r(z'))>``  ``R_bar * (s(r(z)-r(z')) - s(U(z)-U(z')))``
=============  ============================================  ===========================================

The functions take arrays of either numpy or torch (parameter gradients with the
parameter axis last), so the linear game (numpy, analytic), the neural game (torch,
differentiated by autograd) and the text game (pooled embeddings) share them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fpo_envs.core.numerics import sigmoid

PENALTY_KINDS = ("practical", "relaxed")
"""The penalties these closed forms compute: the values of ``kind`` in :func:`penalty` and
:func:`penalty_grad` (the registered penalties, by name, are :data:`agents.PENALTIES`)."""


def _inner(a: Any, b: Any) -> Any:
    return (a * b).sum(-1)


def practical_penalty(grad_r: Any, grad_r_ref: Any = None) -> Any:
    """``R_bar``: ``||g||^2`` for regression, ``<g, g - g_ref>`` against a reference output.

    Args:
        grad_r: ``grad_phi r_phi(z)``, shape ``(..., p)``.
        grad_r_ref: ``grad_phi r_phi(z')`` of the reference (Bradley-Terry), or ``None``.

    Returns:
        shape ``(...)``.
    """
    if grad_r_ref is None:
        return _inner(grad_r, grad_r)
    return _inner(grad_r, grad_r - grad_r_ref)


def overconfidence(r: Any, u: Any, r_ref: Any = None, u_ref: Any = None) -> Any:
    """The RM's error the relaxed penalty scales by: ``r - U``, or the preference gap
    ``sigmoid(r - r_ref) - sigmoid(U - U_ref)`` against a reference."""
    if r_ref is None:
        return r - u
    return sigmoid(r - r_ref) - sigmoid(u - u_ref)


def relaxed_penalty(grad_r: Any, residual: Any, grad_r_ref: Any = None) -> Any:
    """``R_tilde = R_bar * residual`` with ``residual`` from :func:`overconfidence`."""
    return practical_penalty(grad_r, grad_r_ref) * residual


def penalty(kind: str, rm: Any, oracle: Any, z: Any) -> Any:
    """The penalty of outputs ``z`` under a regression RM, shape ``(...)``.

    Args:
        kind: ``"practical"`` or ``"relaxed"``.
        rm: has ``reward`` and ``grad_params``.
        oracle: has ``utility`` (used by ``"relaxed"`` only).
        z: outputs, shape ``(..., d)``.
    """
    _check_kind(kind)
    g = rm.grad_params(z)
    if kind == "practical":
        return practical_penalty(g)
    return relaxed_penalty(g, overconfidence(rm.reward(z), oracle.utility(z)))


def penalty_grad(
    kind: str, rm: Any, oracle: Any, z: np.ndarray, oracle_gradient: bool = True, value: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """The penalty and its gradient with respect to the output, from the RM's gradient API.

    By the chain rule, with ``g = grad_phi r(z)``: ``grad_z ||g||^2 = 2 (dg/dz)^T g``, which
    the RM gives as ``grad_params_vjp(z, g)``; the relaxed penalty adds
    ``(grad_z r - grad_z U) * ||g||^2``, where ``grad_z U`` is dropped when
    ``oracle_gradient`` is off (``U`` treated as a constant label).

    Returns:
        ``(R, grad_z R)``, shapes ``(...)`` and ``(..., d)``; ``R`` is ``None`` with ``value=False``
        (the practical gradient does not need it: a learner's step saves that pass).
    """
    _check_kind(kind)
    g = rm.grad_params(z)
    d_r_bar = rm.grad_params_vjp(z, g)
    d_r_bar *= 2.0  # in place on the RM's new array (the same rounding as 2.0 * it)
    if kind == "practical":
        return (practical_penalty(g) if value else None), d_r_bar
    r_bar = practical_penalty(g)
    u = oracle.utility(z)
    residual = overconfidence(rm.reward(z), u)
    d_residual = rm.grad_input(z)
    if oracle_gradient:
        d_residual = d_residual - oracle_grad(oracle, z, u)
    # d_residual * r_bar + residual * d_r_bar, in place on the new arrays (the same roundings).
    d_residual *= r_bar[..., None]
    d_r_bar *= residual[..., None]
    d_residual += d_r_bar
    return residual * r_bar, d_residual


def oracle_grad(oracle: Any, z: Any, u: Any) -> Any:
    """``oracle.grad(z)``, handing it ``U(z)`` where it takes it (the bump oracle does)."""
    takes = _TAKES_UTILITY.get(type(oracle))
    if takes is None:
        import inspect

        takes = _TAKES_UTILITY[type(oracle)] = "utility" in inspect.signature(oracle.grad).parameters
    return oracle.grad(z, utility=u) if takes else oracle.grad(z)


_TAKES_UTILITY: dict[type, bool] = {}


def self_influence(rm: Any, z: Any, u: Any) -> Any:
    """``<grad_phi r(z), grad_phi l(z, u)>``: minus the first-order change of ``r(z)`` per unit
    of follower step size. The relaxed penalty is proportional to it (exactly, for a loss
    ``c (r - U)^2``: ``self_influence = 2 c R_tilde``)."""
    return _inner(rm.grad_params(z), rm.loss_grad(z, u))


def _check_kind(kind: str) -> None:
    if kind not in PENALTY_KINDS:
        raise ValueError(f"unknown penalty {kind!r}; expected one of {PENALTY_KINDS}")
