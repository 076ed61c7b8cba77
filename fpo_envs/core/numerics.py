"""Numerical pieces every game shares: the logistic function and the RMs' Adam step."""

from __future__ import annotations

from typing import Any

import numpy as np

_NUMPY = (np.ndarray, np.generic, float, int)


def sigmoid(x: Any) -> Any:
    """The logistic function of a float, numpy array or torch tensor (same type out)."""
    if isinstance(x, (np.ndarray, float, int, np.floating)):
        return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))
    return x.sigmoid()


def stack_arrays(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.stack(arrays)``, by one ``np.array`` call where the arrays agree in shape: no
    per-array Python work, which shows when a thousand copies or a long history are stacked.
    Arrays of other shapes go to ``np.stack``, whose error names them."""
    first = arrays[0].shape
    if all(a.shape == first for a in arrays):
        return np.array(arrays)
    return np.stack(arrays)


def _sqrt(x: Any) -> Any:
    return np.sqrt(x) if isinstance(x, _NUMPY) else x.sqrt()


def adam_step(
    params: Any,
    state: dict[str, Any],
    grad: Any,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    differentiable: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """One ``torch.optim.Adam`` step (L2 weight decay added to the gradient), on numpy arrays
    or torch tensors; new arrays out, nothing changed in place.

    The one Adam of every RM that has one (the neural game's MLP, the text game's head).

    Args:
        params: the parameters, shape ``(*B, p)``: ``B`` independent RMs (``()`` for one).
        state: ``{"exp_avg": (*B, p), "exp_avg_sq": (*B, p), "step": ...}`` (``torch.optim.Adam``'s
            names), the moments and the step count before this step; ``step`` is a number or
            an array of shape ``(*B,)``, one count per RM.
        grad: the loss gradient at ``params``, shape ``(*B, p)``.
        lr, weight_decay, betas, eps: Adam's settings (``weight_decay`` is L2: ``g = grad +
            weight_decay * params``, as ``torch.optim.Adam``, not AdamW).
        differentiable: take the square root of ``max(exp_avg_sq, 1e-36)`` so that a second
            moment of exactly zero (a parameter with no gradient yet) has a finite derivative
            instead of an infinite one, which autograd would turn into NaN (the value changes
            by less than 1e-18).

    Returns:
        ``(new_params, new_state)``, the state with the same keys.
    """
    b1, b2 = betas
    g = grad + weight_decay * params if weight_decay else grad
    step = state["step"] + 1
    exp_avg = b1 * state["exp_avg"] + (1 - b1) * g
    exp_avg_sq = b2 * state["exp_avg_sq"] + (1 - b2) * g * g
    bias1 = 1 - b1**step
    bias2 = 1 - b2**step
    if np.ndim(step) or not isinstance(step, _NUMPY):  # one count per RM: broadcast over its parameters
        bias1, bias2 = bias1[..., None], bias2[..., None]
    if differentiable:
        root = np.sqrt(np.maximum(exp_avg_sq, 1e-36)) if isinstance(exp_avg_sq, _NUMPY) else exp_avg_sq.clamp(min=1e-36).sqrt()
    else:
        root = _sqrt(exp_avg_sq)
    new = params - (lr / bias1) * exp_avg / (root / _sqrt(bias2) + eps)
    return new, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq, "step": step}


def adam_step_(
    params: Any,
    state: dict[str, Any],
    grad: Any,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """:func:`adam_step` on torch tensors, in place: ``params``, ``state["exp_avg"]`` and
    ``state["exp_avg_sq"]`` are overwritten, ``state["step"]`` is replaced by a new tensor.

    Where every RM has taken the same number of steps (the common case), this is one pass of
    torch's fused CPU/CUDA Adam kernel (``torch.optim.Adam(fused=True)``'s): no new
    ``(*B, p)`` tensors, which at a few hundred RMs cost more than the arithmetic. The
    kernel rounds a little differently from :func:`adam_step` (it computes the bias
    corrections in double precision), within a float32 ulp or so per step. Otherwise (RMs
    at different step counts, or no fused kernel) it is :func:`adam_step` copied back.
    """
    import torch

    step = state["step"]
    first = step.reshape(-1)[:1]
    fused = getattr(torch, "_fused_adam_", None)
    same = step.numel() > 0 and bool((step == first).all())
    tensors = (params, grad, state["exp_avg"], state["exp_avg_sq"])
    if fused is not None and same and all(t.is_contiguous() and t.dtype == params.dtype for t in tensors):
        new_step = first.reshape(()) + 1
        b1, b2 = betas
        fused(
            [params], [grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [new_step],
            lr=lr, beta1=b1, beta2=b2, weight_decay=weight_decay, eps=eps, amsgrad=False, maximize=False,
        )  # fmt: skip
        state["step"] = step + 1
        return
    new, new_state = adam_step(params, state, grad, lr, weight_decay, betas, eps)
    params.copy_(new)
    state["exp_avg"].copy_(new_state["exp_avg"])
    state["exp_avg_sq"].copy_(new_state["exp_avg_sq"])
    state["step"] = new_state["step"]
