"""The MLP reward model of ``FPO/NeuralRM-v0`` (flat parameters, Adam on a replay buffer)."""

from __future__ import annotations

import math

import numpy as np
from gymnasium.error import DependencyNotInstalled

from fpo_envs.core.numerics import adam_step

try:
    import torch
    from torch.func import grad, vmap
except ImportError as err:  # pragma: no cover - exercised by the core-only test
    raise DependencyNotInstalled('FPO/NeuralRM-v0 needs torch: pip install torch (or "fpo-envs[torch]")') from err


def _layer_shapes(dim: int, hidden: int) -> list[tuple[int, ...]]:
    return [(hidden, dim), (hidden,), (hidden, hidden), (hidden,), (1, hidden), (1,)]


def mlp_num_params(dim: int, hidden: int) -> int:
    """Number of parameters ``p`` of the RM ``dim -> hidden -> hidden -> 1``."""
    return sum(math.prod(s) for s in _layer_shapes(dim, hidden))


class MLPRewardModel:
    """An MLP reward model ``d -> hidden -> hidden -> 1`` (Softplus) held as flat parameters.

    Parameters are one flat tensor ``params`` of shape ``(*B, p)``: ``B`` independent RMs
    (one per vector-env copy; ``()`` for a single env). Outputs ``y`` have shape
    ``(*B, d)`` (one per RM) or ``(*B, k, d)`` (``k`` per RM). Per-sample parameter
    gradients come from ``torch.func`` (``vmap`` of ``grad``) and stay differentiable, so a
    learner can differentiate a penalty built from them with respect to its outputs.

    The follower is Adam (``torch.optim.Adam`` semantics, L2 weight decay) on the MSE over
    a FIFO buffer; its state (``exp_avg``, ``exp_avg_sq``, ``step``) and the buffer are
    held by the env, so ``reset`` restores them and pickling keeps them.

    Args:
        params: flat parameters ``(*B, p)``, held by reference (the env's live state).
        dim: input dimension ``d``; hidden: width of both hidden layers.
        lr, weight_decay: Adam's step size and L2 weight decay.
        opt_state: ``{"exp_avg", "exp_avg_sq", "step"}`` (zeros when ``None``).
        buffer: ``{"y": (*B, size, d), "u": (*B, size), "count": (*B,)}`` or ``None``.
    """

    loss_kind = "regression"
    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(
        self,
        params,
        dim: int,
        hidden: int,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        opt_state: dict | None = None,
        buffer: dict | None = None,
    ):
        self.params = params
        self.dim, self.hidden = dim, hidden
        self.lr, self.weight_decay = lr, weight_decay
        self.shapes = _layer_shapes(dim, hidden)
        self.num_params = mlp_num_params(dim, hidden)
        if params.shape[-1] != self.num_params:
            raise ValueError(f"params must have last dimension {self.num_params}, got {tuple(params.shape)}")
        batch = params.shape[:-1]
        self.opt_state = opt_state or {
            "exp_avg": torch.zeros_like(params),
            "exp_avg_sq": torch.zeros_like(params),
            "step": torch.zeros(batch, dtype=params.dtype),
        }
        self.buffer = buffer

    @staticmethod
    def init_params(rng: np.random.Generator, dim: int, hidden: int, std: float = 0.1) -> np.ndarray:
        """Weights ``N(0, std^2)``, biases 0, flattened in layer order ``W1 b1 W2 b2 W3 b3``."""
        parts = []
        for shape in _layer_shapes(dim, hidden):
            parts.append(rng.normal(0.0, std, shape).ravel() if len(shape) == 2 else np.zeros(shape))
        return np.concatenate(parts)

    def replace(self, params) -> "MLPRewardModel":
        """The same architecture and settings with other parameters (a tensor keeps its
        dtype, so a float64 copy can serve gradient checks; no optimizer state)."""
        if not isinstance(params, torch.Tensor):
            params = torch.as_tensor(params, dtype=self.params.dtype)
        return MLPRewardModel(params, self.dim, self.hidden, self.lr, self.weight_decay)

    def with_params(self, params) -> "MLPRewardModel":
        """This RM, its Adam state and its buffer, with other parameters (an observation's):
        what a learner's foresight needs to preview the follower's next step."""
        if not isinstance(params, torch.Tensor):
            params = torch.as_tensor(params, dtype=self.params.dtype)
        return MLPRewardModel(
            params, self.dim, self.hidden, self.lr, self.weight_decay, opt_state=self.opt_state, buffer=self.buffer
        )

    def to(self, dtype) -> "MLPRewardModel":
        """The same RM, parameters, Adam state and buffer, in ``dtype`` (e.g. float64 for
        gradient checks); the buffer's fill count is kept as it is."""
        cast = lambda t: t.to(dtype)  # noqa: E731
        buffer = None if self.buffer is None else {**self.buffer, "y": cast(self.buffer["y"]), "u": cast(self.buffer["u"])}
        state = {k: cast(v) for k, v in self.opt_state.items()}
        params = cast(self.params)
        return MLPRewardModel(params, self.dim, self.hidden, self.lr, self.weight_decay, opt_state=state, buffer=buffer)

    # Forward and gradients ----------------------------------------------------------------
    def _unflatten(self, flat):
        """Split flat parameters ``(*B, p)`` into the layers ``(*B, *shape)``."""
        out, i = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(flat[..., i : i + n].reshape(*flat.shape[:-1], *shape))
            i += n
        return out

    def _check_outputs(self, y, params):
        batch = params.shape[:-1]
        if y.shape[: len(batch)] != batch or y.ndim not in (len(batch) + 1, len(batch) + 2) or y.shape[-1] != self.dim:
            raise ValueError(f"outputs must have shape {(*batch, self.dim)} or {(*batch, 'k', self.dim)}, got {tuple(y.shape)}")
        return y

    def reward_single(self, flat, y):
        """``r_phi(y)`` for one parameter vector ``(p,)`` and one output ``(d,)``: a scalar."""
        w1, b1, w2, b2, w3, b3 = self._unflatten(flat)
        h = torch.nn.functional.softplus(w1 @ y + b1)
        h = torch.nn.functional.softplus(w2 @ h + b2)
        return (w3 @ h + b3)[0]

    def _map(self, fn, y, params=None):
        """Apply a per-(RM, output) function over the batch and sample dimensions."""
        params = self.params if params is None else params
        y = self._check_outputs(torch.as_tensor(y, dtype=params.dtype), params)
        batch = params.shape[:-1]
        per_output = vmap(fn, in_dims=(None, 0)) if y.ndim == len(batch) + 2 else fn
        if not batch:
            return per_output(params, y)
        flat_fn = vmap(per_output)
        out = flat_fn(params.reshape(-1, params.shape[-1]), y.reshape(-1, *y.shape[len(batch) :]))
        return torch.utils._pytree.tree_map(lambda t: t.reshape(*batch, *t.shape[1:]), out)

    def _forward(self, y, params, with_grad: bool | str):
        """Stacked forward pass over the RM copies (batched matrix products), and optionally
        (``with_grad=True``) the per-sample parameter gradient, or (``"input"``) the gradient
        with respect to ``y``, by the closed-form backward pass of the MLP."""
        y = self._check_outputs(torch.as_tensor(y, dtype=params.dtype), params)
        single = y.ndim == params.ndim
        h0 = y[..., None, :] if single else y  # (*B, k, d)
        w1, b1, w2, b2, w3, b3 = self._unflatten(params)
        a1 = h0 @ w1.mT + b1[..., None, :]  # (*B, k, H)
        h1 = torch.nn.functional.softplus(a1)
        a2 = h1 @ w2.mT + b2[..., None, :]
        h2 = torch.nn.functional.softplus(a2)
        r = (h2 @ w3.mT)[..., 0] + b3  # (*B, k)
        squeeze = (lambda t: t[..., 0, :]) if single else (lambda t: t)
        if not with_grad:
            return r[..., 0] if single else r, None
        # Backward pass by hand: softplus' = sigmoid; d r / d a2 = w3 * s(a2), d r / d a1 = ...
        d2 = w3 * torch.sigmoid(a2)  # (*B, k, H)
        d1 = (d2 @ w2) * torch.sigmoid(a1)
        if with_grad == "input":
            return (r[..., 0] if single else r), squeeze(d1 @ w1)
        if with_grad == "sqnorm":
            # ||a (x) b||^2 = ||a||^2 ||b||^2: the norm of [d1 h0^T, d1, d2 h1^T, d2, h2, 1]
            # without forming the p-vector (about twice as fast for a learner's penalty).
            sq = lambda t: (t * t).sum(-1)  # noqa: E731
            n = sq(d1) * (sq(h0) + 1) + sq(d2) * (sq(h1) + 1) + sq(h2) + 1
            return (r[..., 0] if single else r), (n[..., 0] if single else n)
        outer = lambda a, b: (a[..., :, None] * b[..., None, :]).flatten(-2)  # noqa: E731
        g = torch.cat([outer(d1, h0), d1, outer(d2, h1), d2, h2, torch.ones_like(r)[..., None]], dim=-1)
        return (r[..., 0] if single else r), squeeze(g)

    def reward(self, y, params=None):
        """``r_phi(y)``: shape ``(*B,)`` or ``(*B, k)`` (stacked forward over the copies)."""
        return self._forward(y, self.params if params is None else params, with_grad=False)[0]

    def reward_and_grad_params(self, y):
        """``(r_phi(y), grad_phi r_phi(y))`` per sample, the gradient by the MLP's closed-form
        backward pass over all copies at once: the same numbers as :meth:`grad_params`
        (tested), about twice as fast, and differentiable in ``y``. Learners use this."""
        return self._forward(y, self.params, with_grad=True)

    def reward_and_grad_sqnorm(self, y):
        """``(r_phi(y), ||grad_phi r_phi(y)||^2)`` per sample in closed form, differentiable in
        ``y``: the practical penalty without the per-sample gradients (tested against them)."""
        return self._forward(y, self.params, with_grad="sqnorm")

    def grad_input(self, y):
        """``grad_y r_phi(y)`` per output, shape of ``y`` (closed form, no autograd)."""
        return self._forward(y, self.params, with_grad="input")[1]

    def grad_params(self, y):
        """Per-sample ``grad_phi r_phi(y)``: ``(*B, p)`` or ``(*B, k, p)``; differentiable in ``y``."""
        return self._map(grad(self.reward_single), y)

    def loss(self, y, u):
        """Per-sample follower loss ``(r_phi(y) - u)^2``."""
        return (self.reward(y) - torch.as_tensor(u, dtype=self.params.dtype)) ** 2

    def loss_grad(self, y, u):
        """Per-sample ``grad_phi (r_phi(y) - u)^2 = 2 (r - u) grad_phi r``."""
        residual = self.reward(y) - torch.as_tensor(u, dtype=self.params.dtype)
        return 2.0 * residual[..., None] * self.grad_params(y)

    def buffer_loss_grad(self, buffer: dict):
        """``grad_phi`` of the MSE over each RM's filled buffer, shape ``(*B, p)``.

        The MLP's backward pass by hand over all copies at once, summed over the buffer with
        matrix products, so no per-sample gradient is materialized and no autograd graph is
        built: faster than autograd, and checked against it
        (``tests/envs/test_neural.py``, ``test_buffer_loss_gradient_by_hand_equals_autograd``).
        """
        with torch.no_grad():
            return self._buffer_loss_grad(self.params, buffer)

    def _buffer_loss_grad(self, params, buffer: dict):
        """:meth:`buffer_loss_grad` at ``params``, differentiable (autograd sees every operation)."""
        mask = _filled(buffer)
        weights = mask / mask.sum(-1, keepdim=True).clamp(min=1)
        w1, b1, w2, b2, w3, b3 = self._unflatten(params)
        h0 = buffer["y"]  # (*B, n, d)
        a1 = h0 @ w1.mT + b1[..., None, :]
        h1 = torch.nn.functional.softplus(a1)
        a2 = h1 @ w2.mT + b2[..., None, :]
        h2 = torch.nn.functional.softplus(a2)
        r = (h2 @ w3.mT)[..., 0] + b3  # (*B, n)
        c = 2.0 * weights * (r - buffer["u"])  # d loss / d r per sample
        d2 = c[..., None] * w3 * torch.sigmoid(a2)  # d loss / d a2, (*B, n, H)
        d1 = (d2 @ w2) * torch.sigmoid(a1)
        return torch.cat(
            [
                (d1.mT @ h0).flatten(-2),
                d1.sum(-2),
                (d2.mT @ h1).flatten(-2),
                d2.sum(-2),
                (c[..., None, :] @ h2).flatten(-2),
                c.sum(-1, keepdim=True),
            ],
            dim=-1,
        )

    # Follower update ----------------------------------------------------------------------
    def _adam(self, params, state, grad_, differentiable: bool = False):
        """One step of this RM's Adam (:func:`fpo_envs.core.numerics.adam_step`, batched over the
        copies); returns new tensors."""
        return adam_step(params, state, grad_, self.lr, self.weight_decay, self.betas, self.eps, differentiable)

    def _pushed(self, y, u) -> dict:
        """The buffer after a FIFO push of the outputs ``y (*B, k, d)`` and labels ``u (*B, k)``."""
        buf = self.buffer
        k = y.shape[-2]
        return {
            "y": torch.cat([buf["y"][..., k:, :], y], dim=-2),
            "u": torch.cat([buf["u"][..., k:], u], dim=-1),
            "count": (buf["count"] + k).clamp(max=buf["u"].shape[-1]),
        }

    def preview_update(self, y, u):
        """Parameters after pushing ``(y, u)`` and one Adam step, without applying either."""
        y, u = torch.as_tensor(y, dtype=self.params.dtype), torch.as_tensor(u, dtype=self.params.dtype)
        with torch.no_grad():
            buffer = self._pushed(y, u)
            return self._adam(self.params, self.opt_state, self.buffer_loss_grad(buffer))[0]

    def stepped(self, y, u, steps: int = 1) -> "MLPRewardModel":
        """The RM after pushing ``(y, u)`` into the buffer and ``steps`` Adam steps on it, not
        applied (``steps=1`` is the env's follower step, :meth:`preview_update`). Differentiable
        in ``y``, ``u`` and the parameters, so a learner can differentiate through the
        follower (``fpo-exact``); the new RM carries the advanced Adam state and buffer."""
        dtype = self.params.dtype
        y, u = torch.as_tensor(y, dtype=dtype), torch.as_tensor(u, dtype=dtype)
        buffer = self._pushed(y, u)
        params, state = self.params, self.opt_state
        for _ in range(steps):
            params, state = self._adam(params, state, self._buffer_loss_grad(params, buffer), differentiable=True)
        return MLPRewardModel(params, self.dim, self.hidden, self.lr, self.weight_decay, opt_state=state, buffer=buffer)

    def update(self, y, u) -> None:
        """Push ``(y, u)`` into the buffer and take one Adam step, in place."""
        y, u = torch.as_tensor(y, dtype=self.params.dtype), torch.as_tensor(u, dtype=self.params.dtype)
        with torch.no_grad():
            self.buffer = self._pushed(y, u)
            new, self.opt_state = self._adam(self.params, self.opt_state, self.buffer_loss_grad(self.buffer))
            self.params.copy_(new)

    def buffer_error(self):
        """Mean ``|r - U|`` over each RM's filled buffer: how wrong it is on its own training data."""
        return buffer_error(self.reward, self.buffer)


def buffer_error(reward, buffer: dict):
    """Mean ``|reward(y) - u|`` over the filled slots of ``buffer`` (per copy)."""
    with torch.no_grad():
        mask = _filled(buffer)
        err = (reward(buffer["y"]) - buffer["u"]).abs()
        return (err * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def _filled(buffer: dict):
    """Mask of the filled slots: the newest ``count`` entries sit at the end of the FIFO."""
    size = buffer["u"].shape[-1]
    slots = torch.arange(size, dtype=buffer["count"].dtype)
    return (slots >= size - buffer["count"][..., None]).to(buffer["u"].dtype)
