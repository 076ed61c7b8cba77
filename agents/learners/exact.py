"""``fpo-exact``: the leader ascends its proxy under the RM *after* the follower step its own
output causes, differentiated through that step (ARCHITECTURE.md, section 1).

FPO's penalties approximate the policy's Stackelberg gradient to first order in the follower's
step size. This learner computes it: for an output ``y`` it previews the env's actual follower
update on the data ``y`` creates (the linear game's weight-decayed SGD step on ``(y, U(y))``;
the neural game's Adam step on the FIFO buffer with the round's new samples pushed in),
``unroll_steps`` times, and takes the gradient of ``proxy_{phi'(y)}(y)`` with respect to ``y``
by autograd. That gradient holds RLHF's term (the next RM's slope at ``y``) and the
*parameter-steering* term ``(d phi'/d y)^T grad_phi' r_phi'(y)`` that standard RLHF drops.

The module registers the learner through the public registry, as an external author would
(it is loaded through this package's ``fpo_envs.learners`` entry point)::

    agents.make("fpo-exact", gym.make_vec("FPO/LinearRM-v0", num_envs=100), seed=0, unroll_steps=3)

Needs torch (``pip install torch``), for autograd, on the linear and neural games. On the token
game the follower step is closed form and so is the gradient through it (numpy only):
:func:`exact_token_advantage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import agents
from agents.families.gaussian import GaussianConfig, GaussianLeader
from agents.families.gradient import GradientConfig, GradientLeader
from agents.families.token import TokenConfig, TokenLeader
from fpo_envs.core.numerics import sigmoid


def _torch():
    try:
        import torch
    except ImportError as err:
        from gymnasium.error import DependencyNotInstalled

        raise DependencyNotInstalled("fpo-exact differentiates through the follower with torch: pip install torch") from err
    return torch


class _ExactConfig:
    """The settings fpo-exact adds to its policy family's."""

    unroll_steps: int = 1
    """Follower steps previewed on the data the output creates (``>= 1``)."""

    def _check_exact(self):
        if isinstance(self.unroll_steps, bool) or not isinstance(self.unroll_steps, (int, np.integer)) or self.unroll_steps < 1:
            raise ValueError(f"unroll_steps must be a whole number >= 1, got {self.unroll_steps!r}")
        if self.penalty != "none":
            raise ValueError(
                f"fpo-exact looks ahead through the follower step itself; penalty must be 'none', got {self.penalty!r} "
                "(for a first-order penalty use fpo-practical or fpo-relaxed)"
            )


@dataclass(frozen=True)
class ExactGradientConfig(GradientConfig, _ExactConfig):
    """Settings of fpo-exact on the linear game: the gradient leader's, and ``unroll_steps``.

    ``oracle_gradient`` (default ``True``, as the linear family's): the follower's label is
    ``U(y)``, which depends on the output. With the switch on, the gradient also flows
    through the label, so the leader uses ``grad U``, how the human's judgement changes with
    its output, which a real policy cannot observe; off, the label is a constant, and the
    leader only knows how its output moves the RM given whatever label it gets.
    """

    unroll_steps: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.gradient != "analytic":
            raise ValueError("fpo-exact differentiates by autograd; gradient must be 'analytic'")
        self._check_exact()


@dataclass(frozen=True)
class ExactGaussianConfig(GaussianConfig, _ExactConfig):
    """Settings of fpo-exact on the neural game: the Gaussian leader's, ``unroll_steps`` and
    ``lookahead_samples``.

    ``oracle_gradient`` (default ``False``, as the neural family's and the paper's): whether
    the labels ``U(y)`` the follower is trained on carry their gradient (see
    :class:`ExactGradientConfig`).
    """

    unroll_steps: int = 1
    lookahead_samples: int | None = None
    """Reparameterised samples per inner step that the previewed follower step is trained on
    (``None``: the env's ``samples_per_round``, the data one round creates)."""

    def __post_init__(self):
        super().__post_init__()
        self._check_exact()
        if self.lookahead_samples is not None and self.lookahead_samples < 1:
            raise ValueError(f"lookahead_samples must be at least 1, got {self.lookahead_samples}")


class ExactGradientLeader(GradientLeader):
    """The linear game's gradient leader, ascending ``proxy_{w'(y)}(y)`` with
    ``w'(y) = rm.stepped(y, U(y), unroll_steps)``, the env's own follower step.

    Per round it computes, in float64 with autograd,
    ``grad_y [w'(y) . y - c ||y||^2]``: RLHF's term ``w'`` and the steering term
    ``(dw'/dy)^T y``. On a vector env each copy is an independent learner, as for the family.
    """

    config_cls = ExactGradientConfig

    def objective_grad(self, y: np.ndarray, rm: Any) -> np.ndarray:
        """``grad_y proxy_{w'(y)}(y)`` by :func:`exact_grad` (float64 autograd through the follower step)."""
        return exact_grad(self._game(), rm, y, self.config.unroll_steps, self.config.oracle_gradient)


def exact_objective(game: Any, rm: Any, y: Any, steps: int, oracle_gradient: bool) -> Any:
    """``proxy_{phi'(y)}(y)`` per output, with ``phi' = rm.stepped(y, U(y), steps)`` (torch in,
    torch out; ``U`` detached when ``oracle_gradient`` is off).

    ``y`` has shape ``(*B, d)`` for the linear RM; for the neural RM ``(*B, k, d)``: the
    round's samples, all pushed into the buffer, each scored by the next RM.
    """
    u = game.oracle.utility(y)
    if not oracle_gradient:
        u = u.detach()
    nxt = rm.stepped(y, u, steps)
    return game.proxy(y, nxt.reward(y))


def exact_grad(game: Any, rm: Any, y: np.ndarray, steps: int, oracle_gradient: bool) -> np.ndarray:
    """``grad_y`` of :func:`exact_objective` for the linear RM, in float64 numpy."""
    torch = _torch()
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64)).requires_grad_(True)
    rm_t = rm.replace(torch.as_tensor(np.asarray(rm.params, dtype=np.float64)))
    (grad,) = torch.autograd.grad(exact_objective(game, rm_t, yt, steps, oracle_gradient).sum(), yt)
    return grad.numpy()


class ExactGaussianLeader(GaussianLeader):
    """The neural game's Gaussian leader, each inner step ascending the proxy under the RM
    after the env's follower step on fresh reparameterised samples.

    At an inner step with mean ``theta``: ``k = lookahead_samples`` samples
    ``y_j = theta + sigma eps_j`` are pushed into (a copy of) the RM's buffer, the RM takes
    ``unroll_steps`` Adam steps on it from its live optimizer state, and the step on ``theta``
    is the clipped gradient of the mean over ``j`` of ``proxy_{phi'}(y_j)``, by autograd
    through the samples, the labels (if ``oracle_gradient``) and the Adam steps.
    """

    config_cls = ExactGaussianConfig

    def _improve(self, theta, rm, round_index):
        torch = _torch()
        sigma, lr = self.schedule(round_index)
        clip = self.config.grad_clip
        k = self.config.lookahead_samples or self._game().samples_per_round
        for _ in range(self.config.inner_steps):
            eps = self.randn((*theta.shape[:-1], k, theta.shape[-1]))
            t = theta.detach().requires_grad_(True)
            y = t[..., None, :] + sigma * eps
            value = exact_objective(self._game(), rm, y, self.config.unroll_steps, self.config.oracle_gradient)
            (grad,) = torch.autograd.grad(value.mean(-1).sum(), t)
            theta = theta + lr * grad.clamp(-clip, clip)
        return theta.detach()

    def _predict(self, observation, deterministic=True):
        """As the family's, with the RM's parameters from ``observation`` and its optimizer
        state and buffer from the env (the foresight needs them; the observation holds only
        the parameters)."""
        torch = _torch()
        game = self._game()
        params, _ = game.split_observation(observation)
        live = game.reward_model
        # Through the RM's own API, so an ensemble (rm_ensemble=K) is rebuilt as one too.
        rm = live.with_params(torch.as_tensor(params, dtype=live.params.dtype, device=self.device))
        saved = self.generator.get_state()
        theta = self._bounded(self._improve(self.theta.clone(), rm, self.num_rounds))
        self.generator.set_state(saved)
        k = game.samples_per_round
        action = theta[..., None, :].expand(*theta.shape[:-1], k, theta.shape[-1])
        if not deterministic:
            sigma, _ = self.schedule(self.num_rounds)
            action = self._bounded(action + sigma * self.randn(action.shape))
            self.generator.set_state(saved)
        return action.cpu().numpy().astype(np.float32), None


# Registered as an external package registers its learners: this module is the entry point
# ``exact`` of the ``fpo_envs.learners`` group in pyproject.toml, imported on first use.
@dataclass(frozen=True)
class ExactTokenConfig(TokenConfig):
    """Settings of fpo-exact on the token game: the token policy's (no penalty: the foresight
    is exact)."""

    def __post_init__(self):
        super().__post_init__()
        if self.penalty != "none":
            raise ValueError(
                f"fpo-exact looks ahead through the follower step itself; penalty must be 'none', got {self.penalty!r}"
            )


def exact_token_advantage(
    game: Any, w: np.ndarray, y: np.ndarray, labels: np.ndarray, weights: np.ndarray, y_ref: np.ndarray | None = None
) -> np.ndarray:
    """The per-sequence term ``A(s)`` whose score-function average is the token policy's
    Stackelberg gradient: ``grad_theta E_pi[r_(w')(s)] = E_pi[A(s) grad log pi(s)]``.

    The follower's step on the policy's data is closed form, ``w' = (1 - lambda) w - eta
    E_pi[g(s)]`` with ``g`` the loss gradient of one sequence (:meth:`TokenGame.loss_grad`). So
    ``A(s) = w' . y(s) - eta g(s) . E_pi[y]``: RLHF's term under the *next* RM, and the
    parameter-steering term, the change of the next RM's score of the policy's output that
    ``s``'s own data causes. The expectations are ``sum_i weights_i (.)``: ``1/k`` over the
    round's samples, or ``pi(s)`` over every sequence (the tests).

    Args:
        w: ``(N, D)`` the RM before the step; y: ``(N, n, D)`` features; labels: ``(N, n)`` the
            follower's targets; weights: ``(N, n)``; y_ref: the Bradley-Terry references' features.
    """
    g = game.loss_grad(w, y, labels, y_ref)
    mean_g = (weights[..., None] * g).sum(-2)
    mean_y = (weights[..., None] * y).sum(-2)
    w_next = (1.0 - game.rm_weight_decay) * w - game.rm_lr * mean_g
    return (w_next[:, None, :] * y).sum(-1) - game.rm_lr * (g * mean_y[:, None, :]).sum(-1)


class ExactTokenLeader(TokenLeader):
    """The token game's policy ascending its proxy under the RM after the follower step its
    own samples cause (:func:`exact_token_advantage`), by REINFORCE with the family's
    leave-one-out baseline (or best-of-N on ``A``). With ``retrain_every = m`` the step comes
    after ``m`` rounds, each round's data moving the RM by the same amount to first order, so
    the round's term is the same."""

    config_cls = ExactTokenConfig

    def sample_objective(self, tokens, w):
        """:func:`exact_token_advantage` of each sampled sequence, the labels ``U`` (or the
        Bradley-Terry preferences) the follower will be trained on."""
        game = self._game()
        z = self.outputs(tokens, w)
        labels = z.utility
        if z.ref_grad_params is not None:
            labels = sigmoid(labels - z.ref_utility)
        weights = np.full(tokens.shape[:2], 1.0 / tokens.shape[1])
        return exact_token_advantage(game, w, z.y, labels, weights, z.ref_grad_params)


# Registered as an external package registers its learners: this module is the entry point
# ``exact`` of the ``fpo_envs.learners`` group in pyproject.toml, imported on first use.
agents.register(
    "fpo-exact",
    {"linear": ExactGradientLeader, "neural": ExactGaussianLeader, "token": ExactTokenLeader},
    games=("linear", "neural", "token"),
)
