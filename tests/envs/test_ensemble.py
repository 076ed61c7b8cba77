"""RM ensembles (``rm_ensemble=K``): each member is the game's RM trained as a single env
would train it from that member's start; the ensemble scores as the members' mean; its
gradients are the mean's; one RM stays the default."""

import gymnasium as gym
import numpy as np
import pytest

import fpo_envs  # noqa: F401
from fpo_envs.models.ensemble import RewardModelEnsemble
from tests.conftest import central_difference

torch = pytest.importorskip("torch")

GAMES = {"FPO/LinearRM-v0": {"dim": 6, "signal_dims": 2}, "FPO/NeuralRM-v0": {"dim": 4, "hidden": 6, "buffer_size": 10}}


def _member_params(env):
    rm = env.unwrapped.reward_model
    p = rm.stacked.params
    return np.array(p.detach().numpy() if hasattr(p, "detach") else p, dtype=np.float64)


def _actions(env, rounds, seed=0):
    rng = np.random.default_rng(seed)
    space = env.action_space
    return [(0.3 * space.high * rng.uniform(-1, 1, space.shape)).astype(np.float32) for _ in range(rounds)]


@pytest.mark.parametrize("env_id", GAMES)
def test_each_member_trains_as_a_single_rm_from_its_start(env_id):
    kwargs = GAMES[env_id]
    ensemble = gym.make(env_id, rm_ensemble=3, **kwargs)
    ensemble.reset(seed=4)
    starts = _member_params(ensemble)
    actions = _actions(ensemble, 6)
    for action in actions:
        obs, *_ = ensemble.step(action)
    after = _member_params(ensemble)
    for k in range(3):
        single = gym.make(env_id, **kwargs)
        single.reset(seed=0, options={"rm_params": starts[k]})
        for action in actions:
            single.step(action)
        p = single.unwrapped.reward_model.params
        np.testing.assert_allclose(after[k], np.asarray(p.detach() if hasattr(p, "detach") else p), rtol=1e-6, atol=1e-7)
    # The observation carries every member, then the output.
    np.testing.assert_allclose(obs[: after.size], after.ravel().astype(np.float32))
    assert ensemble.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", GAMES)
def test_member_zero_is_the_single_rm_of_the_same_seed_and_the_members_differ(env_id):
    kwargs = GAMES[env_id]
    single, ensemble = gym.make(env_id, **kwargs), gym.make(env_id, rm_ensemble=4, **kwargs)
    obs, _ = single.reset(seed=11)
    ensemble.reset(seed=11)
    members = _member_params(ensemble)
    p = single.unwrapped.num_params
    np.testing.assert_allclose(members[0], np.asarray(obs[:p], dtype=np.float64), rtol=1e-6, atol=1e-7)
    assert all(not np.allclose(members[0], members[k]) for k in range(1, 4))


@pytest.mark.parametrize("env_id", GAMES)
def test_the_reward_and_info_are_the_members_mean_and_spread(env_id):
    linear = "Linear" in env_id
    env = gym.make(env_id, rm_ensemble=3, **GAMES[env_id])
    env.reset(seed=0)
    rm = env.unwrapped.reward_model
    assert isinstance(rm, RewardModelEnsemble) and rm.size == 3
    action = _actions(env, 1)[0]
    y = action.astype(np.float64) if linear else torch.as_tensor(action)
    at = y if linear else y.mean(0)  # where info is measured: the round's mean output
    members = [np.asarray(m.reward(y), dtype=np.float64) for m in rm.members]
    spread = np.std([float(m.reward(at)) for m in rm.members])
    np.testing.assert_allclose(np.asarray(rm.reward(y), dtype=np.float64), np.mean(members, 0), rtol=1e-6)
    _, reward, _, _, info = env.step(action)
    proxy = np.mean(members, 0) - env.unwrapped.action_cost * (np.asarray(y, dtype=np.float64) ** 2).sum(-1)
    np.testing.assert_allclose(reward, np.mean(proxy), rtol=1e-5)
    np.testing.assert_allclose(info["ensemble_spread"], spread, rtol=1e-5)


def test_the_linear_ensembles_gradients_are_the_means():
    env = gym.make_vec("FPO/LinearRM-v0", num_envs=2, rm_ensemble=3, dim=5, signal_dims=2)
    env.reset(seed=1)
    rm = env.unwrapped.reward_model
    y = np.random.default_rng(0).normal(size=(2, 5))
    np.testing.assert_allclose(rm.grad_input(y), central_difference(rm.reward, y), rtol=1e-7, atol=1e-9)
    params = rm.params.copy()
    by_params = central_difference(lambda p: rm.replace(p).reward(y), params)
    np.testing.assert_allclose(rm.grad_params(y), by_params, rtol=1e-7, atol=1e-9)
    # The practical penalty's chain rule: grad_y ||grad_phi r(y)||^2 = 2 vjp(y, grad_phi r).
    sqnorm = lambda z: (rm.grad_params(z) ** 2).sum(-1)  # noqa: E731
    np.testing.assert_allclose(2 * rm.grad_params_vjp(y, rm.grad_params(y)), central_difference(sqnorm, y), rtol=1e-6, atol=1e-9)
    spread = central_difference(rm.member_spread, y)
    r, g = rm.member_rewards(y), rm.member_grad_input(y)
    assert r.shape == (2, 3) and g.shape == (2, 3, 5)
    assert np.isfinite(spread).all()


def test_the_neural_ensembles_gradients_are_the_means():
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=2, rm_ensemble=3, **GAMES["FPO/NeuralRM-v0"])
    env.reset(seed=1)
    env.step(np.asarray(_actions(env, 1)[0]))
    rm = env.unwrapped.reward_model.to(torch.float64)
    y = torch.as_tensor(np.random.default_rng(0).normal(size=(2, 5, 4)))
    reward = lambda v: rm.reward(torch.as_tensor(v)).numpy()  # noqa: E731
    np.testing.assert_allclose(rm.grad_input(y).numpy(), central_difference(reward, y.numpy()), rtol=1e-6, atol=1e-9)
    g = rm.grad_params(y)
    assert g.shape == (2, 5, 3 * rm.stacked.num_params)
    params = rm.params.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(rm.replace(params).reward(y)[:, 2].sum(), params)
    np.testing.assert_allclose(g[:, 2].numpy(), auto.numpy(), rtol=1e-10, atol=1e-12)
    assert rm.member_rewards(y).shape == (2, 5, 3) and rm.member_grad_input(y).shape == (2, 5, 3, 4)


@pytest.mark.parametrize("env_id", GAMES)
def test_state_round_trip_reset_options_and_errors(env_id):
    kwargs = GAMES[env_id]
    env = gym.make_vec(env_id, num_envs=2, rm_ensemble=2, **kwargs)
    env.reset(seed=0)
    env.step(np.asarray(_actions(env, 1)[0]))
    state = env.unwrapped.state_dict()
    first = env.step(np.asarray(_actions(env, 1, 5)[0]))[0]
    env.unwrapped.load_state_dict(state)
    np.testing.assert_array_equal(env.step(np.asarray(_actions(env, 1, 5)[0]))[0], first)
    p = env.unwrapped.num_params // 2
    start = np.random.default_rng(0).normal(0, 0.1, (2, p))
    env.reset(seed=0, options={"rm_params": start})
    np.testing.assert_allclose(_member_params(env)[0], start, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="rm_params"):
        env.reset(options={"rm_params": np.zeros(p)})
    for bad in (0, -1):
        with pytest.raises(ValueError, match="rm_ensemble"):
            gym.make(env_id, rm_ensemble=bad)
    with pytest.raises(TypeError, match="rm_ensemble"):
        gym.make(env_id, rm_ensemble=2.5)


@pytest.mark.parametrize("env_id", GAMES)
def test_one_rm_is_the_default_and_has_no_ensemble_info(env_id):
    env = gym.make(env_id, **GAMES[env_id])
    env.reset(seed=0)
    assert not isinstance(env.unwrapped.reward_model, RewardModelEnsemble)
    info = env.step(_actions(env, 1)[0])[4]
    assert "ensemble_spread" not in info


def test_fpo_exact_runs_through_an_ensembles_follower_step():
    import agents

    env = gym.make("FPO/LinearRM-v0", rm_ensemble=3, dim=6, signal_dims=2)
    agent = agents.make("fpo-exact", env, seed=0)
    agent.learn(3)
    rm = env.unwrapped.reward_model
    y, u = np.full(6, 0.5), 1.0
    stepped = rm.stepped(y, u, 1)
    np.testing.assert_allclose(stepped.params, rm.preview_update(y, u))
    for k, member in enumerate(rm.members):
        np.testing.assert_allclose(stepped.members[k].params, member.preview_update(y, u))
