"""The shared penalties and their gradients, against finite differences and their definitions."""

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401
from agents.common import penalties
from fpo_envs.models.linear import LinearRewardModel
from fpo_envs.models.oracles import GaussianBumpOracle


def _central(f, y, eps=1e-6):
    """Central differences of a batched scalar function ``f: (*B, d) -> (*B,)``."""
    grad = np.zeros_like(y)
    for i in range(y.shape[-1]):
        e = np.zeros(y.shape[-1])
        e[i] = eps
        grad[..., i] = (f(y + e) - f(y - e)) / (2 * eps)
    return grad


@pytest.fixture
def game():
    rng = np.random.default_rng(0)
    d = 6
    ideal = np.r_[2.0, 2.0, np.zeros(d - 2)]
    rm = LinearRewardModel(rng.normal(size=(3, d)))  # a batch of three RMs
    return rm, GaussianBumpOracle(ideal, 10.0, 0.3), rng.normal(size=(3, d))


def test_penalties_follow_their_definitions(game):
    rm, oracle, y = game
    g = rm.grad_params(y)
    np.testing.assert_allclose(penalties.penalty("practical", rm, oracle, y), (y * y).sum(-1))
    r, u = rm.reward(y), oracle.utility(y)
    np.testing.assert_allclose(penalties.penalty("relaxed", rm, oracle, y), (r - u) * (g * g).sum(-1))


def test_relaxed_penalty_is_the_rms_self_influence(game):
    rm, oracle, y = game
    # The follower loss is (r - U)^2, so <grad r, grad l> = 2 * R_tilde: the first-order
    # change of r(y) from one follower step is -lr * 2 * R_tilde.
    u = oracle.utility(y)
    np.testing.assert_allclose(penalties.self_influence(rm, y, u), 2 * penalties.penalty("relaxed", rm, oracle, y))
    r_next = rm.replace(rm.preview_update(y, u)).reward(y) - (1 - rm.weight_decay) * rm.reward(y)
    np.testing.assert_allclose(r_next, -rm.lr * penalties.self_influence(rm, y, u))


@pytest.mark.parametrize("kind", penalties.PENALTY_KINDS)
@pytest.mark.parametrize("oracle_gradient", [True, False])
def test_penalty_gradient_matches_finite_differences(game, kind, oracle_gradient):
    rm, oracle, y = game
    value, grad = penalties.penalty_grad(kind, rm, oracle, y, oracle_gradient)
    np.testing.assert_allclose(value, penalties.penalty(kind, rm, oracle, y))
    if oracle_gradient or kind == "practical":
        expected = _central(lambda z: penalties.penalty(kind, rm, oracle, z), y)
    else:
        u = oracle.utility(y)  # U detached: a constant label
        expected = _central(lambda z: penalties.relaxed_penalty(rm.grad_params(z), rm.reward(z) - u), y)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6)


def test_bradley_terry_penalties_are_self_influence_of_the_bt_loss():
    rng = np.random.default_rng(1)
    w, z, z_ref = rng.normal(size=4), rng.normal(size=4), rng.normal(size=4)
    u, u_ref = 0.3, -0.2
    # A linear RM under the Bradley-Terry loss -[p log s(r - r') + (1 - p) log s(r' - r)].
    r, r_ref = w @ z, w @ z_ref
    p = 1 / (1 + np.exp(-(u - u_ref)))
    sig = 1 / (1 + np.exp(-(r - r_ref)))
    loss_grad = (sig - p) * (z - z_ref)
    r_bar = penalties.practical_penalty(z, z_ref)
    assert r_bar == pytest.approx(z @ (z - z_ref))
    residual = penalties.overconfidence(r, u, r_ref, u_ref)
    assert residual == pytest.approx(sig - p)
    assert penalties.relaxed_penalty(z, residual, z_ref) == pytest.approx(z @ loss_grad)


def test_penalties_accept_torch_tensors():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    g, g_ref, r, u = rng.normal(size=(2, 5)), rng.normal(size=(2, 5)), rng.normal(size=2), rng.normal(size=2)
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    for args in [(g,), (g, g_ref)]:
        np.testing.assert_allclose(penalties.practical_penalty(*map(t, args)).numpy(), penalties.practical_penalty(*args))
    np.testing.assert_allclose(penalties.overconfidence(t(r), t(u), t(u), t(r)).numpy(), penalties.overconfidence(r, u, u, r))


def test_unknown_penalty_is_an_error(game):
    with pytest.raises(ValueError, match="unknown penalty"):
        penalties.penalty("exact", *game)


@pytest.mark.parametrize("name", agents.NAMES)
def test_analytic_objective_gradient_matches_finite_differences(name):
    env = gym.make_vec("FPO/LinearRM-v0", num_envs=3)
    env.reset(seed=0)
    agent = agents.make(name, env)
    rm = env.unwrapped.reward_model
    y = np.random.default_rng(0).normal(0.5, 0.5, (3, 50))
    np.testing.assert_allclose(
        agent.objective_grad(y, rm), _central(lambda z: agent.objective.value(z, rm), y), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "name, config", [("rlhf", {}), ("fpo-practical", {}), ("fpo-relaxed", {}), ("fpo-relaxed", {"oracle_gradient": False})]
)
def test_finite_difference_mode_is_the_papers_forward_difference(name, config):
    env = gym.make_vec("FPO/LinearRM-v0", num_envs=2)
    env.reset(seed=1)
    rm = env.unwrapped.reward_model
    agent = agents.make(name, env, gradient="finite-difference", **config)
    y = np.random.default_rng(1).normal(0.5, 0.5, (2, 50))
    u = env.unwrapped.oracle.utility(y) if config.get("oracle_gradient") is False else None
    expected = np.zeros_like(y)
    for i in range(50):
        e = np.zeros(50)
        e[i] = 0.05
        expected[:, i] = (agent.objective.value(y + e, rm, u) - agent.objective.value(y, rm, u)) / 0.05
    np.testing.assert_allclose(agent.objective_grad(y, rm), expected, rtol=1e-9, atol=1e-9)
    # Forward differences with eps = 0.05 approximate, but do not equal, the analytic gradient.
    analytic = agents.make(name, env, **config).objective_grad(y, rm)
    assert 0 < np.abs(expected - analytic).max() < 2.0
