"""stable-baselines3 algorithms train on the FPO environments through the public API."""

import gymnasium as gym
import numpy as np
import pytest

import fpo_envs  # noqa: F401

sb3 = pytest.importorskip("stable_baselines3")

# Each game's output bound kept small so PPO's random start does not blow up the RM.
SB3_ENVS = {"FPO/LinearRM-v0": {"output_bound": 3.0}, "FPO/NeuralRM-v0": {"output_bound": 3.0}, "FPO/TokenRM-v0": {}}


@pytest.mark.parametrize("env_id", list(SB3_ENVS))
def test_ppo_trains_through_the_public_api(env_id):
    env = gym.make(env_id, **SB3_ENVS[env_id])
    if isinstance(env.action_space, gym.spaces.Box):
        low = np.full(env.action_space.shape, -1.0, np.float32)
        env = gym.wrappers.RescaleAction(env, low, -low)
    else:  # the token game: a MultiDiscrete action of k * L token ids, PPO's MultiCategorical policy
        assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
    model = sb3.PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
    assert any(not np.allclose(a, b.detach()) for a, b in zip(before, model.policy.parameters()))
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    _, reward, _, _, info = env.step(action)
    assert np.isfinite(reward) and np.isfinite(info["true_utility"])


def test_every_vector_output_game_has_an_sb3_test():
    assert {i for i in fpo_envs.ENV_IDS if i != "FPO/TextRM-v0"} == set(SB3_ENVS)


@pytest.mark.parametrize("env_id", [i for i in SB3_ENVS if "Token" not in i])
@pytest.mark.parametrize("penalty", ["practical", "relaxed"])
def test_penalty_reward_pays_proxy_minus_gamma_penalty_under_the_rm_before_its_update(env_id, penalty):
    from agents import Objective
    from agents.common.wrappers import PenaltyReward

    env = PenaltyReward(gym.make(env_id), penalty=penalty, gamma=0.3)
    plain = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    plain.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        action = (0.3 * rng.uniform(-1, 1, env.action_space.shape)).astype(np.float32)
        game = env.unwrapped
        objective = Objective(game, penalty, 0.3)
        y = game._check_action(action)
        z = objective.outputs(y, game.reward_model.replace(game.reward_model.params))
        expected_penalty = float(np.asarray(objective.penalty_value(z), dtype=np.float64).mean())
        _, reward, _, _, info = env.step(action)
        _, plain_reward, _, _, _ = plain.step(action)
        assert info["unpenalized_reward"] == plain_reward
        assert info["penalty"] == pytest.approx(expected_penalty, rel=1e-6)
        assert reward == pytest.approx(plain_reward - 0.3 * expected_penalty, rel=1e-6)


def test_vector_penalty_reward_equals_the_single_wrapper():
    from agents.common.wrappers import PenaltyReward, VectorPenaltyReward

    vec = VectorPenaltyReward(gym.make_vec("FPO/LinearRM-v0", num_envs=2), penalty="relaxed")
    vec.reset(seed=4)
    singles = [PenaltyReward(gym.make("FPO/LinearRM-v0"), penalty="relaxed") for _ in range(2)]
    for i, s in enumerate(singles):
        s.reset(seed=4 + i)
    actions = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 50)).astype(np.float32)
    _, rewards, _, _, info = vec.step(actions)
    for i, s in enumerate(singles):
        _, reward, _, _, single_info = s.step(actions[i])
        assert rewards[i] == pytest.approx(reward, rel=1e-12) and info["penalty"][i] == pytest.approx(single_info["penalty"])


def test_penalty_wrappers_reject_what_they_cannot_do():
    from agents.common.wrappers import PenaltyReward

    with pytest.raises(ValueError, match="penalty='none' adds nothing"):
        PenaltyReward(gym.make("FPO/LinearRM-v0"), penalty="none")
    with pytest.raises(ValueError, match="unknown penalty"):
        PenaltyReward(gym.make("FPO/LinearRM-v0"), penalty="exactt")
    with pytest.raises(TypeError, match="not an fpo-envs game"):
        PenaltyReward(gym.make("CartPole-v1"))
    env = PenaltyReward(gym.make("FPO/LinearRM-v0"))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(50, np.nan, np.float32))


def test_sb3_ppo_trains_on_the_penalized_reward():
    from agents.common.wrappers import PenaltyReward

    env = PenaltyReward(gym.make("FPO/LinearRM-v0", output_bound=3.0), penalty="practical")
    env = gym.wrappers.RescaleAction(env, np.float32(-1), np.float32(1))
    model = sb3.PPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps == 64 and np.isfinite(model.rollout_buffer.rewards).all()


@pytest.mark.parametrize("name", ["ppo", "ppo-fpo-practical", "ppo-fpo-relaxed"])
def test_ppo_learners_train_on_the_objective_and_record_the_shared_history(name):
    import torch

    import agents

    torch.set_num_threads(1)
    agent = agents.make(name, gym.make_vec("FPO/LinearRM-v0", num_envs=4), seed=0, n_steps=64)
    h = agent.learn(100)  # rounded up to whole rollouts of 64 rounds
    assert h["true_utility"].shape == (128, 4) and agent.num_rounds == 128
    assert set(fpo_envs.INFO_KEYS) | {"diverged"} <= set(h)
    # The rewards PPO trained on in its last rollout are the proxy minus gamma times the penalty.
    gamma = agent.config.gamma
    expected = h["proxy_reward"][-64:] - gamma * h["penalty"][-64:] if name != "ppo" else h["proxy_reward"][-64:]
    assert ("penalty" in h) == (name != "ppo") and gamma == (0.0 if name == "ppo" else 0.1)
    np.testing.assert_allclose(agent.model.rollout_buffer.rewards, expected, rtol=1e-5, atol=1e-5)
