"""stable-baselines3 algorithms train on the FPO environments through the public API."""

import gymnasium as gym
import numpy as np
import pytest

import fpo_envs  # noqa: F401

sb3 = pytest.importorskip("stable_baselines3")

# Each game's output bound kept small so PPO's random start does not blow up the RM.
SB3_ENVS = {"FPO/LinearRM-v0": {"output_bound": 3.0}, "FPO/NeuralRM-v0": {"output_bound": 3.0}}


@pytest.mark.parametrize("env_id", list(SB3_ENVS))
def test_ppo_trains_through_the_public_api(env_id):
    env = gym.make(env_id, **SB3_ENVS[env_id])
    low = np.full(env.action_space.shape, -1.0, np.float32)
    env = gym.wrappers.RescaleAction(env, low, -low)
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
