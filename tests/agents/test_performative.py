"""The performative-prediction learners: RGD is RLHF's update, RRM best-responds exactly,
PerfGD's response fit recovers a known response and its objective gradient is the
performative proxy's under that fit (finite differences)."""

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401

torch = pytest.importorskip("torch")

from agents.learners.performative import _ResponseFit  # noqa: E402
from tests.conftest import central_difference  # noqa: E402


@pytest.mark.parametrize("game, rounds", [("FPO/LinearRM-v0", 50), ("FPO/NeuralRM-v0", 20)])
def test_rgd_is_rlhfs_update(game, rounds):
    config = {} if "Linear" in game else {"schedule_rounds": rounds}
    a = agents.make("rgd", gym.make_vec(game, num_envs=3), seed=1, **config).learn(rounds)
    b = agents.make("rlhf", gym.make_vec(game, num_envs=3), seed=1, **config).learn(rounds)
    for key in ("true_utility", "proxy_reward"):
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("action_cost", [0.1, 0.0])
def test_rrm_plays_the_exact_best_response_on_the_linear_game(action_cost):
    env = gym.make_vec("FPO/LinearRM-v0", num_envs=2, dim=5, signal_dims=2, action_cost=action_cost)
    agent = agents.make("rrm", env, seed=0)
    agent.learn(4)
    game = env.unwrapped
    w, bound = game.reward_model.w, game.single_action_space.high.astype(np.float64)
    output = agent._act()
    if action_cost:
        np.testing.assert_allclose(output, np.clip(w / (2 * action_cost), -bound, bound))
        # It maximises the objective over the box: no coordinate step improves it.
        value = lambda y: game.proxy(y, game.reward_model.reward(y))  # noqa: E731
        for i in range(5):
            for step in (-1e-3, 1e-3):
                moved = output.copy()
                moved[:, i] = np.clip(moved[:, i] + step, -bound[i], bound[i])
                assert (value(moved) <= value(output) + 1e-12).all()
    else:
        np.testing.assert_allclose(np.abs(output), bound[None].repeat(2, 0))
    action, _ = agent.predict(env.unwrapped._observation())
    np.testing.assert_allclose(action, output.astype(np.float32))


def test_rrm_on_the_neural_game_takes_four_times_rlhfs_steps():
    assert agents.make("rrm", gym.make("FPO/NeuralRM-v0"), seed=0).config.inner_steps == 60
    assert agents.make("rlhf", gym.make("FPO/NeuralRM-v0"), seed=0).config.inner_steps == 15


def test_the_response_fit_recovers_a_linear_response():
    rng = np.random.default_rng(0)
    d, p, window = 3, 7, 40
    jac = rng.normal(size=(2, p, d))  # two copies, each with its own response
    offset = rng.normal(size=(2, p))
    fit = _ResponseFit((2,), window, d, p, ridge=1e-9)
    for _ in range(window + 5):
        y = rng.normal(size=(2, d))
        fit.push(y, np.einsum("bpd,bd->bp", jac, y) + offset)
    np.testing.assert_allclose(fit.jacobian_t, jac.transpose(0, 2, 1), rtol=1e-6, atol=1e-8)
    # The running sums equal the window's own (after the ring has wrapped).
    y, dphi = fit.history()
    np.testing.assert_allclose(fit.sums["ydphi"], np.einsum("bhd,bhp->bdp", y, dphi), rtol=1e-10)
    np.testing.assert_allclose(fit.sums["yy"], np.einsum("bhd,bhe->bde", y, y), rtol=1e-10)
    fit.clear(np.array([True, False]))
    assert (fit.jacobian_t[0] == 0).all() and (fit.jacobian_t[1] != 0).any()


def _performative_value(game, rm, fit_t, base, steer, neural):
    """proxy(y) under the RM moved by the fitted response, phi + steer J (y - base), with the
    parameter move frozen at the base output's RM: its gradient at ``base`` is PerfGD's."""

    def value(y):
        move = steer * np.einsum("...dp,...d->...p", fit_t, y - base)
        if neural:
            moved = rm.replace(rm.params + torch.as_tensor(move))
            with torch.no_grad():
                r = moved.reward(torch.as_tensor(y)).numpy()
        else:
            r = rm.replace(rm.params + move).reward(y)
        return r - game.action_cost * (y * y).sum(-1)

    return value


@pytest.mark.parametrize("num_envs", [None, 3])
def test_perfgd_linear_gradient_is_the_performative_proxys(num_envs):
    kwargs = {"dim": 6, "signal_dims": 2}
    env = (
        gym.make("FPO/LinearRM-v0", **kwargs)
        if num_envs is None
        else gym.make_vec("FPO/LinearRM-v0", num_envs=num_envs, **kwargs)
    )
    agent = agents.make("perfgd", env, seed=0, steer=2.0, window=10)
    agent.learn(15)
    game, rm = env.unwrapped, env.unwrapped.reward_model
    assert np.abs(agent.fit.jacobian_t).max() > 0
    y = np.random.default_rng(1).normal(0.0, 1.0, rm.w.shape)
    expected = central_difference(_performative_value(game, rm, agent.fit.jacobian_t, y, 2.0, False), y)
    np.testing.assert_allclose(agent.objective_grad(y, rm), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("num_envs", [None, 2])
def test_perfgd_neural_gradient_is_the_performative_proxys(num_envs):
    kwargs = {"hidden": 6}
    env = (
        gym.make("FPO/NeuralRM-v0", **kwargs)
        if num_envs is None
        else gym.make_vec("FPO/NeuralRM-v0", num_envs=num_envs, **kwargs)
    )
    agent = agents.make("perfgd", env, seed=0, schedule_rounds=30, inner_steps=2, window=8, steer=0.5)
    agent.learn(12)
    game = env.unwrapped
    rm = game.reward_model.to(torch.float64)
    assert np.abs(agent.fit.jacobian_t).max() > 0
    y = np.random.default_rng(2).normal(0.0, 1.0, (*rm.params.shape[:-1], game.dim))
    expected = central_difference(_performative_value(game, rm, agent.fit.jacobian_t, y, 0.5, True), y)
    got = agent.objective_grad(torch.as_tensor(y), rm).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)


def test_perfgds_fit_is_the_observed_rm_changes_against_the_played_outputs():
    env = gym.make("FPO/LinearRM-v0", dim=4, signal_dims=2)
    agent = agents.make("perfgd", env, seed=0, window=5)
    played, params = [], [env.reset(seed=0)[0][:4].astype(np.float64)]
    agent.learn(0)
    for _ in range(7):
        action = agent._act()
        obs, _, _, _, info = env.step(action)
        played.append(action)
        params.append(obs[:4].astype(np.float64))
        agent._update(obs, info)
    y, dphi = agent.fit.history()
    np.testing.assert_allclose(y, np.array(played[-5:]))
    np.testing.assert_allclose(dphi, np.diff(params, axis=0)[-5:], rtol=1e-12)


def test_perfgd_beats_rlhf_on_the_linear_game():
    """Measured (20 seeds, 300 rounds): the estimated steering term lifts the final utility
    well above rlhf's; without exploration the fit sees one direction only and does not."""
    vec = lambda: gym.make_vec("FPO/LinearRM-v0", num_envs=20)  # noqa: E731
    rlhf = np.median(agents.make("rlhf", vec(), seed=0).learn(300)["true_utility"][-1])
    perfgd = np.median(agents.make("perfgd", vec(), seed=0).learn(300)["true_utility"][-1])
    blind = np.median(agents.make("perfgd", vec(), seed=0, explore=0.0).learn(300)["true_utility"][-1])
    assert perfgd > rlhf + 2.0 and blind < rlhf + 0.5


def test_config_errors_name_the_fix():
    env = gym.make("FPO/LinearRM-v0")
    for bad in ({"window": 1}, {"window": 2.5}, {"ridge": 0.0}, {"steer": -1.0}, {"explore": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            agents.make("perfgd", env, **bad)
    for learner in ("rrm", "perfgd"):
        with pytest.raises(ValueError, match="penalty must be 'none'"):
            agents.make(learner, env, penalty="relaxed")
