"""stable-baselines3 algorithms train on the FPO environments through the public API."""

import gymnasium as gym
import numpy as np
import pytest

import fpo_envs  # noqa: F401

sb3 = pytest.importorskip("stable_baselines3")


def test_ppo_trains_on_linear_rm():
    env = gym.wrappers.RescaleAction(gym.make("FPO/LinearRM-v0", output_bound=3.0), np.float32(-1.0), np.float32(1.0))
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
