"""The token game's policy family: an autoregressive tabular softmax with exact log-likelihoods.

The policy is ``pi_theta(s) = prod_t softmax(theta[t, s_(t-1)])[s_t]``: one logit vector per
position and previous token (the start token ``V`` before the first), vectorized over the
copies of a vector env, every copy its own policy and random generator. Each round it samples
the env's ``k`` sequences and learns from them on ``J(s) = r(s) - gamma * R(s)``
(:class:`agents.common.objectives.Objective`, on the sequences' features, so a penalty written
once for the vector games runs here unchanged):

- ``update="reinforce"`` (the default): REINFORCE with a leave-one-out baseline over the
  round's ``k`` samples, ``theta += lr * mean_i (J_i - mean_(j != i) J_j) grad log pi(s_i)``;
- ``update="best-of-n"``: the text game's update, supervised fine-tuning on the round's best
  sample by ``J``, ``theta += lr * grad log pi(s_best)``.

``rlhf``, ``fpo-practical`` and ``fpo-relaxed`` are this family with ``penalty`` ``none``,
``practical`` and ``relaxed``; every round it records ``kl_to_base``, the exact KL divergence
``KL(pi_theta || pi_0)`` of the policy that sampled the round from the policy it started from
(:func:`sequence_kl`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from agents.common.base import Agent
from agents.common.objectives import PAPER_GAMMA, Objective, ObjectiveConfig, Outputs

TOKEN_UPDATES = ("reinforce", "best-of-n")
"""The values of :attr:`TokenConfig.update`."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, stable for any finite logits."""
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, stable for any finite logits."""
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def previous_tokens(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """The token before each position, ``vocab_size`` (the start token) before the first."""
    start = np.full(tokens.shape[:-1] + (1,), vocab_size, dtype=np.int64)
    return np.concatenate([start, tokens[..., :-1]], -1)


def log_prob(theta: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """``log pi_theta(s)`` of sequences ``tokens`` ``(N, n, L)`` under ``theta`` ``(N, L, V + 1, V)``,
    shape ``(N, n)``."""
    n_copies, _, length = tokens.shape
    prev = previous_tokens(tokens, theta.shape[-1])
    logits = theta[np.arange(n_copies)[:, None, None], np.arange(length), prev]  # (N, n, L, V)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return np.take_along_axis(logp, tokens[..., None], -1)[..., 0].sum(-1)


def policy_gradient(theta: np.ndarray, tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_i weights_i grad_theta log pi_theta(s_i)``, shape of ``theta``.

    With ``weights = advantage / k`` it is the REINFORCE step on ``k`` samples; with
    ``weights = pi(s) * A(s)`` over every sequence it is an exact expectation (the tests).

    Args:
        theta: ``(N, L, V + 1, V)`` logits.
        tokens: ``(N, n, L)`` sequences.
        weights: ``(N, n)``.
    """
    n_copies, n, length = tokens.shape
    vocab = theta.shape[-1]
    prev = previous_tokens(tokens, vocab)
    probs = softmax(theta[np.arange(n_copies)[:, None, None], np.arange(length), prev])  # (N, n, L, V)
    contrib = (np.eye(vocab)[tokens] - probs) * weights[..., None, None]  # d log softmax / d logits
    rows = ((np.arange(n_copies)[:, None, None] * length + np.arange(length)) * (vocab + 1) + prev).ravel()
    grad = np.zeros((n_copies * length * (vocab + 1), vocab))
    np.add.at(grad, rows, contrib.reshape(-1, vocab))
    return grad.reshape(theta.shape)


def sequence_kl(theta: np.ndarray, base: np.ndarray, with_grad: bool = False, log_base: np.ndarray | None = None):
    """The exact ``KL(pi_theta || pi_base)`` over whole sequences, and optionally its gradient.

    The KL of two autoregressive policies is the expected sum over positions of the per-position
    KL at the previous token reached; a forward pass gives the marginals of the previous token,
    a backward pass the expected KL still to come from each position (a value function), and
    ``dKL/dtheta[t, prev] = m_t(prev) p (Q - sum_v p_v Q_v)`` with ``Q = log(p / q) + V_(t+1)``.

    Args:
        theta, base: ``(N, L, V + 1, V)`` logits of the policy and of the base policy.
        log_base: ``log_softmax(base)``, if already computed (a learner's base is fixed).

    Returns:
        ``KL`` of shape ``(N,)``, and with ``with_grad`` its gradient in ``theta``.
    """
    n_copies, length, rows, vocab = theta.shape
    log_p = log_softmax(theta)
    p = np.exp(log_p)
    log_ratio = log_p - (log_softmax(base) if log_base is None else log_base)
    marginal = np.zeros((n_copies, length, rows))
    marginal[:, 0, vocab] = 1.0  # the start token
    for t in range(length - 1):
        marginal[:, t + 1, :vocab] = np.einsum("nr,nrv->nv", marginal[:, t], p[:, t])
    future = np.zeros((n_copies, vocab))  # expected KL from position t + 1 on, by the token at t
    grad = np.zeros_like(theta) if with_grad else None
    for t in reversed(range(length)):
        q_value = log_ratio[:, t] + future[:, None, :]  # (N, V + 1, V)
        value = (p[:, t] * q_value).sum(-1)  # (N, V + 1)
        if with_grad:
            grad[:, t] = marginal[:, t, :, None] * p[:, t] * (q_value - value[..., None])
        future = value[:, :vocab]
    kl = value[:, vocab]
    return (kl, grad) if with_grad else kl


@dataclass(frozen=True)
class TokenConfig(ObjectiveConfig):
    """Settings of the token policy (defaults chosen by measurement on seeds the reported
    figures do not use)."""

    paper_gamma: ClassVar[float] = PAPER_GAMMA["token"]

    lr: float = 1.0
    """Step size of the policy update."""
    update: str = "reinforce"
    """``reinforce`` or ``best-of-n`` (module docstring)."""

    def __post_init__(self):
        super().__post_init__()
        if self.update not in TOKEN_UPDATES:
            raise ValueError(f"update must be one of {TOKEN_UPDATES}, got {self.update!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0 or not np.isfinite(self.lr):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")


class TokenOutputs(Outputs):
    """:class:`agents.Outputs` of sequences, by their features: with the Bradley-Terry game's
    reference sequences in the ``ref_*`` fields (``None`` under regression)."""

    def __init__(self, y, rm, oracle, y_ref=None):
        super().__init__(y, rm, oracle, oracle_gradient=False)
        if y_ref is not None:
            self.ref_grad_params = y_ref
            self.ref_reward = rm.reward(y_ref)
            self.ref_utility = oracle.utility(y_ref)


class TokenLeader(Agent):
    """An autoregressive tabular softmax policy over token sequences, one per copy.

    It starts uniform (``theta = 0``); each round it samples ``k`` sequences from each copy's
    generator (copy ``i`` of a vector env seeded ``s`` draws from ``default_rng(s + i)``, so it
    plays exactly as a single env and learner seeded ``s + i``), and after the env's step it
    takes one update on the objective of those sequences under the RM that scored them.
    """

    config_cls = TokenConfig
    games = ("token",)
    copies_match_single_envs = True
    vector_copies_are_seeds = True
    record_keys = ("kl_to_base",)
    """The exact KL to the starting policy, recorded every round, is stored by the benchmark."""

    def __init__(self, env, seed=None, **config):
        super().__init__(env, seed=seed, **config)
        game = env.unwrapped
        self.objective = Objective(game, self.config.penalty, self.config.gamma, oracle_gradient=False)
        self.copies = game.num_envs if self.is_vector else 1
        if self.is_vector:
            # One generator per copy, as the copy's single learner would have.
            seeds = [None if seed is None else seed + i for i in range(self.copies)]
            self.rngs = [np.random.default_rng(s) for s in seeds] if seed is not None else list(self.rng.spawn(self.copies))
        else:
            self.rngs = [self.rng]
        v = game.vocab_size
        self.theta = np.zeros((self.copies, game.seq_len, v + 1, v))
        self.base = np.zeros_like(self.theta)

    def _game(self):
        return self.env.unwrapped

    # Sampling -----------------------------------------------------------------------------
    def sample(self, theta: np.ndarray, rngs: list[np.random.Generator], greedy: bool = False) -> np.ndarray:
        """``k`` sequences per copy from ``theta`` ``(N, L, V + 1, V)``, drawing from ``rngs``
        (one per copy), shape ``(N, k, L)``; ``greedy``: the most likely token at each step."""
        game = self._game()
        n, k, length = len(theta), game.samples_per_round, game.seq_len
        draws = None if greedy else np.stack([rng.random((k, length)) for rng in rngs])
        tokens = np.zeros((n, k, length), dtype=np.int64)
        prev = np.full((n, k), game.vocab_size)
        copies = np.arange(n)[:, None]
        for t in range(length):
            probs = softmax(theta[copies, t, prev])  # (N, k, V)
            if greedy:
                token = probs.argmax(-1)
            else:
                token = np.minimum((probs.cumsum(-1) < draws[..., t, None]).sum(-1), game.vocab_size - 1)
            tokens[..., t] = token
            prev = token
        return tokens

    def _action(self, tokens: np.ndarray) -> np.ndarray:
        flat = tokens.reshape(len(tokens), -1)
        return flat if self.is_vector else flat[0]

    # The learner contract -------------------------------------------------------------------
    def _start(self, obs, mask):
        if mask is None:
            self.theta[...] = self.base
        else:
            self.theta[mask] = self.base[mask]

    def _act(self):
        self._tokens = self.sample(self.theta, self.rngs)
        # The RM that scores this round, before the env retrains it.
        self._w = np.array(self._game()._state["w"], dtype=np.float64).reshape(self.copies, -1)
        return self._action(self._tokens)

    def outputs(self, tokens: np.ndarray, w: np.ndarray) -> TokenOutputs:
        """:class:`TokenOutputs` of sequences ``(N, n, L)`` under RM weights ``(N, D)``."""
        game = self._game()
        y = game.oracle.sequence_features(tokens)
        rm = game.reward_model.replace(w[:, None, :])
        y_ref = None
        if game.rm_loss == "bradley-terry":
            y_ref = game.oracle.sequence_features(np.asarray(game._state["reference"]).reshape(self.copies, *tokens.shape[1:]))
        return TokenOutputs(y, rm, game.oracle, y_ref)

    def sample_objective(self, tokens: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``J`` of each sampled sequence, ``(N, n)``: ``r - gamma * R`` (a family's subclass
        changes it)."""
        z = self.outputs(tokens, w)
        if self.objective.penalty is None:
            return np.asarray(z.reward, dtype=np.float64)
        return np.asarray(z.reward - self.objective.gamma * self.objective.penalty.fn(z), dtype=np.float64)

    def update_direction(self, theta: np.ndarray, tokens: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The step direction from the samples and their objective values (before ``lr``)."""
        k = tokens.shape[1]
        if self.config.update == "best-of-n":
            best = values.argmax(-1)
            winner = np.take_along_axis(tokens, best[:, None, None], 1)
            return policy_gradient(theta, winner, np.ones((len(theta), 1)))
        baseline = (values.sum(-1, keepdims=True) - values) / max(k - 1, 1) if k > 1 else values * 0.0
        return policy_gradient(theta, tokens, (values - baseline) / k)

    def kl_to_base(self, theta: np.ndarray | None = None, with_grad: bool = False):
        """The exact ``KL(pi_theta || pi_0)`` of each copy, ``(N,)`` (and with ``with_grad`` its
        gradient) for ``theta`` (default: the policy's): :func:`sequence_kl` with the start's
        log-probabilities computed once."""
        if getattr(self, "_log_base_of", None) is not self.base:
            self._log_base, self._log_base_of = log_softmax(self.base), self.base
        return sequence_kl(self.theta if theta is None else theta, self.base, with_grad, self._log_base)

    def _update(self, obs, info):
        kl = self.kl_to_base()  # of the policy that sampled this round
        values = self.sample_objective(self._tokens, self._w)
        self.theta += self.config.lr * self.update_direction(self.theta, self._tokens, values)
        return {"kl_to_base": kl if self.is_vector else kl[0]}

    def _predict(self, observation, deterministic=True):
        """The next round's sequences: the most likely ones (``deterministic``), or samples
        drawn from copies of the learner's generators (the learner is left unchanged)."""
        rngs = [copy.deepcopy(rng) for rng in self.rngs]
        return self._action(self.sample(self.theta, rngs, greedy=deterministic)), None

    def _state(self):
        state = {"theta": self.theta, "base": self.base}
        if self.is_vector:
            state["rngs"] = [rng.bit_generator.state for rng in self.rngs]
        return state

    def _set_state(self, state):
        self.theta = np.array(state["theta"], dtype=np.float64)
        self.base = np.array(state["base"], dtype=np.float64)
        if self.is_vector:
            for rng, rng_state in zip(self.rngs, state["rngs"]):
                rng.bit_generator.state = rng_state
