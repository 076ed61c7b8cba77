"""The RM-ensemble learners: their aggregates' gradients against finite differences, their
objective gradients on both games, what they reduce to, and the ensemble they need."""

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401

torch = pytest.importorskip("torch")

from agents.learners.ensemble import AGGREGATES, aggregate_grad, aggregate_value  # noqa: E402
from tests.conftest import central_difference  # noqa: E402

IDS = [f"rlhf-ensemble-{a}" for a in AGGREGATES]


class _Quadratic:
    """Members r_k(y) = a_k . y + y^T B_k y / 2: rewards and input gradients in closed form."""

    def __init__(self, k, d, seed=0):
        rng = np.random.default_rng(seed)
        self.a = rng.normal(size=(k, d))
        b = rng.normal(size=(k, d, d))
        self.b = b + b.transpose(0, 2, 1)

    def rewards(self, y):
        return np.einsum("kd,...d->...k", self.a, y) + 0.5 * np.einsum("...d,kde,...e->...k", y, self.b, y)

    def grads(self, y):
        return self.a + np.einsum("kde,...e->...kd", self.b, y)


@pytest.mark.parametrize("aggregate", AGGREGATES)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_aggregate_gradient_equals_finite_differences(aggregate, backend):
    members = _Quadratic(4, 3)
    y = np.random.default_rng(1).normal(size=(5, 3))
    value = lambda v: aggregate_value(members.rewards(v), aggregate, 0.7)  # noqa: E731
    expected = central_difference(value, y)
    r, g = members.rewards(y), members.grads(y)
    if backend == "torch":
        got = aggregate_grad(torch.as_tensor(r), torch.as_tensor(g), aggregate, 0.7).numpy()
        np.testing.assert_allclose(aggregate_value(torch.as_tensor(r), aggregate, 0.7).numpy(), value(y), rtol=1e-12)
    else:
        got = aggregate_grad(r, g, aggregate, 0.7)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


def test_uwo_at_zero_spread_is_the_mean_and_finite():
    r = np.ones((2, 3))
    g = np.random.default_rng(0).normal(size=(2, 3, 4))
    np.testing.assert_allclose(aggregate_grad(r, g, "uwo", 5.0), g.mean(-2))


@pytest.mark.parametrize("learner_id", IDS)
@pytest.mark.parametrize("num_envs", [None, 3])
def test_linear_objective_gradient_equals_finite_differences(learner_id, num_envs):
    kwargs = {"rm_ensemble": 4, "dim": 6, "signal_dims": 2}
    env = (
        gym.make("FPO/LinearRM-v0", **kwargs)
        if num_envs is None
        else gym.make_vec("FPO/LinearRM-v0", num_envs=num_envs, **kwargs)
    )
    agent = agents.make(learner_id, env, seed=0, beta=0.8)
    agent.learn(5)
    game, rm = env.unwrapped, env.unwrapped.reward_model
    y = np.random.default_rng(1).normal(0.0, 1.0, rm.params.shape[:-1] + (6,))
    value = lambda v: agent.aggregate(v, rm) - game.action_cost * (v * v).sum(-1)  # noqa: E731
    np.testing.assert_allclose(agent.objective_grad(y, rm), central_difference(value, y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("learner_id", IDS)
@pytest.mark.parametrize("num_envs", [None, 2])
def test_neural_objective_gradient_equals_finite_differences(learner_id, num_envs):
    kwargs = {"rm_ensemble": 3, "hidden": 8}
    env = (
        gym.make("FPO/NeuralRM-v0", **kwargs)
        if num_envs is None
        else gym.make_vec("FPO/NeuralRM-v0", num_envs=num_envs, **kwargs)
    )
    agent = agents.make(learner_id, env, seed=0, schedule_rounds=20, beta=0.8)
    agent.learn(4)
    game = env.unwrapped
    rm = game.reward_model.to(torch.float64)
    y = torch.as_tensor(np.random.default_rng(2).normal(0.0, 1.0, (*rm.params.shape[:-1], game.dim)))

    def value(v):
        v = torch.as_tensor(v)
        with torch.no_grad():
            return (agent.aggregate(v, rm) - game.action_cost * (v * v).sum(-1)).numpy()

    np.testing.assert_allclose(agent.objective_grad(y, rm).numpy(), central_difference(value, y.numpy()), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("game", ["FPO/LinearRM-v0", "FPO/NeuralRM-v0"])
def test_uwo_with_beta_zero_is_the_mean(game):
    config = {} if "Linear" in game else {"schedule_rounds": 30}
    runs = [
        agents.make(i, gym.make_vec(game, num_envs=2, rm_ensemble=3), seed=0, **config, **extra).learn(30)
        for i, extra in (("rlhf-ensemble-mean", {}), ("rlhf-ensemble-uwo", {"beta": 0.0}))
    ]
    np.testing.assert_array_equal(runs[0]["true_utility"], runs[1]["true_utility"])


def test_worst_case_follows_the_lowest_member():
    env = gym.make("FPO/LinearRM-v0", rm_ensemble=3, dim=4, signal_dims=2)
    agent = agents.make("rlhf-ensemble-worst", env, seed=0)
    agent.learn(1)
    rm = env.unwrapped.reward_model
    y = np.array([0.5, -0.2, 1.0, 0.3])
    lowest = int(np.argmin(rm.member_rewards(y)))
    np.testing.assert_allclose(agent.objective_grad(y, rm), rm.members[lowest].grad_input(y) - 2 * env.unwrapped.action_cost * y)


def test_an_ensemble_of_five_lifts_the_linear_game_over_rlhf():
    """Measured: the members' mean averages out the RM's initial noise, so its slope into the
    noise directions is smaller (20 seeds, 300 rounds)."""
    single = agents.make("rlhf", gym.make_vec("FPO/LinearRM-v0", num_envs=20), seed=0).learn(300)
    mean = agents.make("rlhf-ensemble-mean", gym.make_vec("FPO/LinearRM-v0", num_envs=20, rm_ensemble=5), seed=0).learn(300)
    assert np.median(mean["true_utility"][-1]) > np.median(single["true_utility"][-1]) + 0.5
    # The members are trained on the outputs the leader plays, so at those outputs they come to
    # agree: the spread there rises as the leader moves off its start, then vanishes.
    spread = mean["ensemble_spread"]
    assert spread.shape == (300, 20) and spread[1:20].max() > 0.05 and spread[-1].max() < 1e-6


@pytest.mark.parametrize("learner_id", IDS)
def test_errors_name_the_fix(learner_id):
    with pytest.raises(ValueError, match="rm_ensemble"):
        agents.make(learner_id, gym.make("FPO/LinearRM-v0"))
    env = gym.make("FPO/LinearRM-v0", rm_ensemble=2)
    with pytest.raises(ValueError, match="aggregate must be one of"):
        agents.make(learner_id, env, aggregate="median")
    for beta in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="beta"):
            agents.make(learner_id, env, beta=beta)
    with pytest.raises(ValueError, match="penalty must be 'none'"):
        agents.make(learner_id, env, penalty="practical")
    assert agents.spec(learner_id).env_kwargs == {"rm_ensemble": 5}


def test_the_spread_script_end_to_end(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "ensemble_spread.py"
    spec = importlib.util.spec_from_file_location("ensemble_spread", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--seeds", "2", "--rounds", "5"])
    out = capsys.readouterr().out
    assert "2 seeds, 5 RMs" in out and "spread at theta" in out and "at the ideal" in out
