"""The token family's gradients against finite differences, over every sequence of a tiny game:
log-likelihoods, the exact KL, every penalty's policy gradient, and fpo-exact's steering term
against differentiating through the follower step numerically."""

import itertools

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401
from agents.common.objectives import Outputs
from agents.families.token import log_prob, policy_gradient, sequence_kl, softmax
from agents.learners.exact import exact_token_advantage
from fpo_envs.core.numerics import sigmoid

ID = "FPO/TokenRM-v0"
TINY = {"vocab_size": 3, "seq_len": 3, "samples_per_round": 2, "feature_dims": 3, "hack_tokens": 1, "ideal_value": 1.0}
EVERY = np.array(list(itertools.product(range(3), repeat=3)))[None]  # (1, 27, 3): every sequence


def _theta(seed=0):
    return np.random.default_rng(seed).normal(0.0, 0.7, (1, 3, 4, 3))


def _fd(f, theta, eps=1e-6):
    grad = np.zeros_like(theta)
    for index in np.ndindex(*theta.shape):
        step = np.zeros_like(theta)
        step[index] = eps
        grad[index] = (f(theta + step) - f(theta - step)) / (2 * eps)
    return grad


def _probs(theta):
    return np.exp(log_prob(theta, EVERY))  # (1, 27)


def test_the_policy_is_a_distribution_over_sequences():
    assert _probs(_theta()).sum() == pytest.approx(1.0, abs=1e-12)


def test_policy_gradient_is_the_gradient_of_the_weighted_log_likelihood():
    theta, rng = _theta(1), np.random.default_rng(0)
    tokens = rng.integers(0, 3, (1, 5, 3))
    weights = rng.normal(size=(1, 5))
    expected = _fd(lambda t: float((weights * log_prob(t, tokens)).sum()), theta)
    np.testing.assert_allclose(policy_gradient(theta, tokens, weights), expected, atol=1e-8)


def test_sequence_kl_is_exact_and_so_is_its_gradient():
    theta, base = _theta(2), _theta(3)
    p = _probs(theta)
    brute = float((p * (log_prob(theta, EVERY) - log_prob(base, EVERY))).sum())
    kl, grad = sequence_kl(theta, base, with_grad=True)
    assert kl[0] == pytest.approx(brute, rel=1e-12)
    np.testing.assert_allclose(grad, _fd(lambda t: float(sequence_kl(t, base)[0]), theta), atol=1e-8)
    assert sequence_kl(base, base)[0] == pytest.approx(0.0, abs=1e-14)


def _game(**kwargs):
    env = gym.make(ID, **TINY, **kwargs).unwrapped
    env.reset(seed=0)
    return env


def _outputs(game, w):
    y = game.oracle.sequence_features(EVERY)
    rm = game.reward_model.replace(np.broadcast_to(w, (1, 1, len(w))))
    z = Outputs(y, rm, game.oracle, oracle_gradient=False)
    if game.rm_loss == "bradley-terry":
        ref = game.oracle.sequence_features(game._state["reference"][:1])  # one reference for all
        z.ref_grad_params, z.ref_reward, z.ref_utility = ref, rm.reward(ref), game.oracle.utility(ref)
    return z


@pytest.mark.parametrize("rm_loss", ["regression", "bradley-terry"])
@pytest.mark.parametrize("penalty", ["practical", "relaxed"])
def test_every_penalty_s_policy_gradient_matches_finite_differences(penalty, rm_loss):
    """The family's score-function step on ``R`` with exact weights ``pi(s) R(s)`` is
    ``grad_theta E_pi[R]``, by central differences of the exact expectation."""
    game = _game(rm_loss=rm_loss)
    w = game.reward_model.w.copy()
    values = np.asarray(agents.PENALTIES[penalty].fn(_outputs(game, w)), dtype=np.float64)  # (1, 27)
    theta = _theta(4)
    analytic = policy_gradient(theta, EVERY, _probs(theta) * values)
    np.testing.assert_allclose(analytic, _fd(lambda t: float((_probs(t) * values).sum()), theta), atol=1e-7)


@pytest.mark.parametrize("rm_loss", ["regression", "bradley-terry"])
def test_the_exact_steering_gradient_matches_differentiating_through_the_follower_step(rm_loss):
    """``E_pi[A(s) grad log pi(s)]`` equals central differences of ``J(theta) = E_pi[w'(theta) . y]``,
    with ``w'`` the follower's step on the policy's expected data, computed numerically."""
    game = _game(rm_loss=rm_loss, rm_lr=0.05)  # a large step, so the steering term weighs
    w = game.reward_model.w.copy()[None]
    y = game.oracle.sequence_features(EVERY)
    u = game.oracle.utility(y)
    y_ref = None
    if rm_loss == "bradley-terry":
        y_ref = np.broadcast_to(game.oracle.sequence_features(game._state["reference"][0]), y.shape)
        u = sigmoid(u - game.oracle.utility(y_ref))

    def objective(theta):
        p = _probs(theta)
        step = (p[..., None] * game.loss_grad(w, y, u, y_ref)).sum(-2)
        w_next = (1 - game.rm_weight_decay) * w - game.rm_lr * step
        return float((p * (y @ w_next[0])).sum())

    theta = _theta(5)
    p = _probs(theta)
    analytic = policy_gradient(theta, EVERY, p * exact_token_advantage(game, w, y, u, p, y_ref))
    numeric = _fd(objective, theta)
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)
    # The steering term is what rlhf drops: without it the gradient is another.
    myopic = policy_gradient(theta, EVERY, p * (y @ w[0]))
    assert np.abs(myopic - numeric).max() > 1e-3


def test_best_of_n_fine_tunes_on_the_best_sample():
    env = gym.make_vec(ID, num_envs=2)
    agent = agents.make("rlhf", env, seed=0, update="best-of-n")
    agent.learn(1)
    tokens = np.random.default_rng(0).integers(0, 12, (2, 8, 8))
    values = np.random.default_rng(1).normal(size=(2, 8))
    direction = agent.update_direction(agent.theta, tokens, values)
    winner = tokens[np.arange(2), values.argmax(1)][:, None]
    np.testing.assert_allclose(direction, policy_gradient(agent.theta, winner, np.ones((2, 1))))


def test_the_history_records_the_exact_kl_to_the_start():
    agent = agents.make("rlhf", gym.make_vec(ID, num_envs=4), seed=0)
    history = agent.learn(20)
    kl = history["kl_to_base"]
    assert kl.shape == (20, 4) and (kl[0] == 0).all() and (kl[-1] > 0).all()
    assert agents.make("rlhf", gym.make_vec(ID, num_envs=4), seed=0).learn(0)["kl_to_base"].shape == (0, 4)
    # Each round's record is the KL of the policy that sampled it.
    before = sequence_kl(agent.theta, agent.base)
    np.testing.assert_array_equal(agent.learn(1)["kl_to_base"][0], before)
    anchored = agents.make("rlhf-anchor", gym.make_vec(ID, num_envs=4), seed=0, anchor=5.0).learn(20)
    assert anchored["kl_to_base"][-1].mean() < kl[-1].mean()


def test_a_users_penalty_runs_unchanged_on_the_token_game():
    from agents.common.registration import temporary_registrations

    def overconfident_norm(z):
        return abs(z.reward - z.utility) * (z.grad_params * z.grad_params).sum(-1)

    with temporary_registrations():
        agents.register_penalty("abs-relaxed-token", overconfident_norm)
        history = agents.make("rlhf", gym.make_vec(ID, num_envs=4), seed=0, penalty="abs-relaxed-token", gamma=0.1).learn(30)
    assert np.isfinite(history["true_utility"]).all()


def test_sampling_follows_the_policy():
    """The sampled sequences' frequencies match ``pi_theta`` (a chi-square-sized tolerance)."""
    env = gym.make_vec(ID, num_envs=1, **TINY)
    agent = agents.make("rlhf", env, seed=0)
    agent.theta = _theta(6)
    rngs = [np.random.default_rng(0)]
    draws = np.concatenate([agent.sample(agent.theta, rngs)[0] for _ in range(20000)])
    index = (draws * np.array([9, 3, 1])).sum(1)
    freq = np.bincount(index, minlength=27) / len(index)
    p = _probs(agent.theta)[0]
    assert np.abs(freq - p).max() < 4 * np.sqrt(p.max() / len(index))
    assert softmax(np.zeros(3)).sum() == pytest.approx(1.0)
