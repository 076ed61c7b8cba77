"""The MLP reward model of ``FPO/NeuralRM-v0`` (flat parameters, Adam on a replay buffer)."""

from __future__ import annotations

import math

import numpy as np
from gymnasium.error import DependencyNotInstalled

from fpo_envs.core.numerics import adam_step, adam_step_

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
            "step": torch.zeros(batch, dtype=params.dtype, device=params.device),
        }
        self.buffer = buffer
        self._updates = 0  # the in-place Adam steps taken (they leave the tensor's _version as it is)
        self._acts = None  # the buffer's forward pass at the parameters, kept for the next update
        self._kept_layers = None  # the parameters split into layers (:meth:`_layers`)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_acts"] = state["_kept_layers"] = None  # derived data, recomputed on demand (the same numbers)
        return state

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
            params = torch.as_tensor(params, dtype=self.params.dtype, device=self.params.device)
        return MLPRewardModel(params, self.dim, self.hidden, self.lr, self.weight_decay)

    def with_params(self, params) -> "MLPRewardModel":
        """This RM, its Adam state and its buffer, with other parameters (an observation's):
        what a learner's foresight needs to preview the follower's next step."""
        if not isinstance(params, torch.Tensor):
            params = torch.as_tensor(params, dtype=self.params.dtype, device=self.params.device)
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

    def _layers(self, params):
        """The layers of ``params`` and the first two weights transposed into contiguous
        tensors, ``(w1, b1, w2, b2, w3, b3, w1^T, w2^T)``: a row-vector product with a contiguous
        matrix is about twice as fast as with a transposed view. Kept for the RM's own
        parameters until they change, so a learner's many steps against one RM split and
        transpose them once (not for parameters that require a gradient)."""
        if params is self.params and not params.requires_grad:
            version = (params._version, self._updates)
            kept = getattr(self, "_kept_layers", None)
            if kept is None or kept[0] is not params or kept[1] != version:
                kept = self._kept_layers = (params, version, self._transposed(params))
            return kept[2]
        return self._transposed(params)

    def _transposed(self, params):
        w1, b1, w2, b2, w3, b3 = self._unflatten(params)
        return w1, b1, w2, b2, w3, b3, w1.mT.contiguous(), w2.mT.contiguous()

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
        y = self._check_outputs(torch.as_tensor(y, dtype=params.dtype, device=params.device), params)
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
        y = self._check_outputs(torch.as_tensor(y, dtype=params.dtype, device=params.device), params)
        single = y.ndim == params.ndim
        h0 = y[..., None, :] if single else y  # (*B, k, d)
        w1, b1, w2, b2, w3, b3, w1t, w2t = self._layers(params)
        a1 = h0 @ w1t + b1[..., None, :]  # (*B, k, H)
        h1 = torch.nn.functional.softplus(a1)
        a2 = h1 @ w2t + b2[..., None, :]
        squeeze = (lambda t: t[..., 0, :]) if single else (lambda t: t)
        if with_grad == "input only":  # a learner's policy step needs no reward: skip the last layer
            d1 = ((w3 * torch.sigmoid(a2)) @ w2) * torch.sigmoid(a1)
            return None, squeeze(d1 @ w1)
        h2 = torch.nn.functional.softplus(a2)
        r = (h2 @ w3.mT)[..., 0] + b3  # (*B, k)
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

    def penalty_input_grads(self, y):
        """``(r, n, grad_y r, grad_y n)`` per output with ``n = ||grad_phi r_phi(y)||^2``: the
        reward, the practical penalty and their input gradients in closed form (no autograd),
        by the MLP's forward pass, the sqnorm identity of :meth:`reward_and_grad_sqnorm` and
        the reverse pass through both written by hand. What a learner's penalised policy step
        needs, several times faster than differentiating :meth:`reward_and_grad_sqnorm` (and
        checked against it, ``tests/envs/test_neural.py``). Not differentiable."""
        with torch.no_grad():
            params = self.params
            y = self._check_outputs(torch.as_tensor(y, dtype=params.dtype, device=params.device), params)
            single = y.ndim == params.ndim
            x = y[..., None, :] if single else y  # (*B, k, d)
            w1, b1, w2, b2, w3, b3, w1t, w2t = self._layers(params)
            a1 = x @ w1t + b1[..., None, :]
            h1, s1 = torch.nn.functional.softplus(a1), torch.sigmoid(a1)
            a2 = h1 @ w2t + b2[..., None, :]
            h2, s2 = torch.nn.functional.softplus(a2), torch.sigmoid(a2)
            r = (h2 * w3[..., None, 0, :]).sum(-1) + b3  # (*B, k)
            d2 = w3 * s2  # d r / d a2
            e = d2 @ w2
            d1 = e * s1  # d r / d a1
            sq = lambda t: (t * t).sum(-1, keepdim=True)  # noqa: E731
            big_a, big_c, n_d1, n_d2 = sq(x) + 1, sq(h1) + 1, sq(d1), sq(d2)
            n = (n_d1 * big_a + n_d2 * big_c + sq(h2) + 1)[..., 0]
            # Reverse pass of n: adjoints of d1, d2, h1, h2 and x from each term, then through
            # d1 = (d2 W2) * s1, d2 = w3 * s2, the softplus and sigmoid layers, to x.
            bar_d1 = 2.0 * big_a * d1
            bar_e = bar_d1 * s1
            bar_d2 = 2.0 * big_c * d2 + bar_e @ w2t
            bar_a2 = 2.0 * h2 * s2 + bar_d2 * w3 * s2 * (1.0 - s2)
            bar_h1 = 2.0 * n_d2 * h1 + bar_a2 @ w2
            bar_a1 = bar_h1 * s1 + bar_d1 * e * s1 * (1.0 - s1)
            k = x.shape[-2]
            both = torch.cat([bar_a1, d1], dim=-2) @ w1  # the two products with W1 in one
            grad_n, grad_r = 2.0 * n_d1 * x + both[..., :k, :], both[..., k:, :]
            if single:
                return r[..., 0], n[..., 0], grad_r[..., 0, :], grad_n[..., 0, :]
            return r, n, grad_r, grad_n

    def grad_input(self, y):
        """``grad_y r_phi(y)`` per output, shape of ``y`` (closed form, no autograd)."""
        return self._forward(y, self.params, with_grad="input only")[1]

    def grad_params(self, y):
        """Per-sample ``grad_phi r_phi(y)``: ``(*B, p)`` or ``(*B, k, p)``; differentiable in ``y``."""
        return self._map(grad(self.reward_single), y)

    def loss(self, y, u):
        """Per-sample follower loss ``(r_phi(y) - u)^2``."""
        return (self.reward(y) - torch.as_tensor(u, dtype=self.params.dtype, device=self.params.device)) ** 2

    def loss_grad(self, y, u):
        """Per-sample ``grad_phi (r_phi(y) - u)^2 = 2 (r - u) grad_phi r``."""
        residual = self.reward(y) - torch.as_tensor(u, dtype=self.params.dtype, device=self.params.device)
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
        kind = {"dtype": self.params.dtype, "device": self.params.device}
        y, u = torch.as_tensor(y, **kind), torch.as_tensor(u, **kind)
        with torch.no_grad():
            grad_, _ = self._pushed_loss_grad(y, u)
            # On copies, the in-place step :meth:`update` takes: the same numbers as the env's.
            params, state = self.params.clone(), {k: v.clone() for k, v in self.opt_state.items()}
            adam_step_(params, state, grad_, self.lr, self.weight_decay, self.betas, self.eps)
            return params

    def stepped(self, y, u, steps: int = 1) -> "MLPRewardModel":
        """The RM after pushing ``(y, u)`` into the buffer and ``steps`` Adam steps on it, not
        applied (``steps=1`` is the env's follower step, :meth:`preview_update`). Differentiable
        in ``y``, ``u`` and the parameters, so a learner can differentiate through the
        follower (``fpo-exact``); the new RM carries the advanced Adam state and buffer."""
        dtype = self.params.dtype
        device = self.params.device
        y, u = torch.as_tensor(y, dtype=dtype, device=device), torch.as_tensor(u, dtype=dtype, device=device)
        buffer = self._pushed(y, u)
        params, state = self.params, self.opt_state
        for _ in range(steps):
            params, state = self._adam(params, state, self._buffer_loss_grad(params, buffer), differentiable=True)
        return MLPRewardModel(params, self.dim, self.hidden, self.lr, self.weight_decay, opt_state=state, buffer=buffer)

    def update(self, y, u) -> None:
        """Push ``(y, u)`` into the buffer (a new one) and take one Adam step in place: the
        parameters and Adam's moments are written over (:func:`fpo_envs.core.numerics.adam_step_`,
        no new parameter-sized tensors), ``opt_state`` becomes a new dict."""
        kind = {"dtype": self.params.dtype, "device": self.params.device}
        y, u = torch.as_tensor(y, **kind), torch.as_tensor(u, **kind)
        with torch.no_grad():
            grad_, self.buffer = self._pushed_loss_grad(y, u)
            self.opt_state = dict(self.opt_state)
            adam_step_(self.params, self.opt_state, grad_, self.lr, self.weight_decay, self.betas, self.eps)
            self._updates += 1

    def buffer_error(self):
        """Mean ``|r - U|`` over each RM's filled buffer: how wrong it is on its own training data.

        Its forward pass over the buffer is kept for the next :meth:`update` (whose buffer
        keeps all but the oldest rows of this one)."""
        with torch.no_grad():
            r = self._buffer_acts()[-1]
            mask = _filled(self.buffer)
            return ((r - self.buffer["u"]).abs() * mask).sum(-1) / mask.sum(-1).clamp(min=1)

    # The env's follower step: one forward pass over the buffer per round ----------------------
    def _buffer_forward(self, params, y):
        """The forward pass at ``params`` over buffer outputs ``y (*B, n, d)``:
        ``(s1, h1, s2, h2, r)`` with ``s = sigmoid(a)``, what the loss gradient needs."""
        w1, b1, w2, b2, w3, b3 = self._unflatten(params)
        a1 = _affine(y, w1, b1)
        h1, s1 = torch.nn.functional.softplus(a1), torch.sigmoid(a1)
        a2 = _affine(h1, w2, b2)
        h2, s2 = torch.nn.functional.softplus(a2), torch.sigmoid(a2)
        r = (h2 @ w3.mT)[..., 0] + b3
        return s1, h1, s2, h2, r

    def _buffer_acts(self):
        """:meth:`_buffer_forward` of the parameters over the whole buffer, kept until either changes.

        The pass is a function of the state alone (the same shapes, so the same kernels), so a
        restored RM recomputes the numbers the original kept."""
        params, y, version = self.params, self.buffer["y"], (self.params._version, self._updates)
        kept = self._acts
        if kept is None or kept[0] is not params or kept[1] is not y or kept[2] != version:
            kept = self._acts = (params, y, version, self._buffer_forward(params, y))
        return kept[3]

    def _pushed_loss_grad(self, y, u):
        """The MSE's gradient at the parameters over the buffer after pushing ``(y, u)``, and
        that buffer. The rows kept from the current buffer reuse its forward pass
        (:meth:`_buffer_acts`, which :meth:`buffer_error` has usually computed already); only
        the new rows get a forward pass of their own. The gradient sums the two parts."""
        buffer = self._pushed(y, u)
        k, size = y.shape[-2], buffer["u"].shape[-1]
        mask = _filled(buffer)
        weights = mask / mask.sum(-1, keepdim=True).clamp(min=1)
        w1, _, w2, _, w3, _ = self._unflatten(self.params)
        parts = [(self._buffer_forward(self.params, y), y, buffer["u"][..., size - k :], weights[..., size - k :])]
        if k < size:
            kept = [t[..., k:, :] if t.ndim > weights.ndim else t[..., k:] for t in self._buffer_acts()]
            parts.insert(0, (kept, self.buffer["y"][..., k:, :], buffer["u"][..., : size - k], weights[..., : size - k]))
        grads = None
        for (s1, h1, s2, h2, r), h0, labels, wts in parts:
            c = 2.0 * wts * (r - labels)  # d loss / d r per sample
            d2 = c[..., None] * w3 * s2  # d loss / d a2
            d1 = (d2 @ w2) * s1
            part = [d1.mT @ h0, d1.sum(-2), d2.mT @ h1, d2.sum(-2), c[..., None, :] @ h2, c.sum(-1, keepdim=True)]
            grads = part if grads is None else [a + b for a, b in zip(grads, part)]
        return torch.cat([g.flatten(-2) if g.ndim > c.ndim else g for g in grads], dim=-1), buffer


def _affine(x, w, b):
    """``x @ w^T + b`` over any batch dimensions, the bias added in place (the same numbers
    as ``x @ w.mT + b``, without a second result-sized tensor)."""
    out = x @ w.mT
    return out.add_(b[..., None, :])


def buffer_error(reward, buffer: dict):
    """Mean ``|reward(y) - u|`` over the filled slots of ``buffer`` (per copy)."""
    with torch.no_grad():
        mask = _filled(buffer)
        err = (reward(buffer["y"]) - buffer["u"]).abs()
        return (err * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def _filled(buffer: dict):
    """Mask of the filled slots: the newest ``count`` entries sit at the end of the FIFO."""
    size = buffer["u"].shape[-1]
    slots = torch.arange(size, dtype=buffer["count"].dtype, device=buffer["count"].device)
    return (slots >= size - buffer["count"][..., None]).to(buffer["u"].dtype)
