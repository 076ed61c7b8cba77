"""Noisy labels: Gaussian noise on the regression games' labels and sampled preferences in the
text game, drawn from the env's seeded generator; without noise every number is unchanged."""

import copy

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401


def test_zero_noise_changes_nothing():
    base = agents.make("fpo-relaxed", gym.make_vec("FPO/LinearRM-v0", num_envs=4), seed=0).learn(50)
    zero = agents.make("fpo-relaxed", gym.make_vec("FPO/LinearRM-v0", num_envs=4, label_noise=0.0), seed=0).learn(50)
    for key in base:
        np.testing.assert_array_equal(base[key], zero[key])


def test_the_linear_follower_is_trained_on_the_label_plus_noise_from_the_envs_generator():
    env = gym.make("FPO/LinearRM-v0", label_noise=0.5).unwrapped
    env.reset(seed=3)
    rm = env.reward_model
    y = np.full(env.dim, 0.2)
    w, rng = rm.w.copy(), copy.deepcopy(env.np_random)
    _, _, _, _, info = env.step(y)
    label = env.oracle.utility(y) + rng.normal(0.0, 0.5, ())
    expected = (1 - rm.weight_decay) * w - rm.lr * 2 * (w @ y - label) * y
    np.testing.assert_allclose(env.reward_model.w, expected, rtol=1e-12)
    assert info["true_utility"] == pytest.approx(env.oracle.utility(y))  # the metric stays noise-free


@pytest.mark.parametrize("env_id", ["FPO/LinearRM-v0", "FPO/NeuralRM-v0"])
def test_noise_is_seeded_and_changes_the_run(env_id):
    config = {"schedule_rounds": 30} if "Neural" in env_id else {}

    def run(noise, seed=0):
        vec = gym.make_vec(env_id, num_envs=3, label_noise=noise)
        return agents.make("rlhf", vec, seed=seed, **config).learn(30)["true_utility"]

    np.testing.assert_array_equal(run(1.0), run(1.0))
    assert not np.array_equal(run(1.0), run(0.0))


def test_a_noisy_vector_copy_is_its_single_env():
    vec = agents.make("rlhf", gym.make_vec("FPO/LinearRM-v0", num_envs=2, label_noise=1.0), seed=4).learn(40)
    single = agents.make("rlhf", gym.make("FPO/LinearRM-v0", label_noise=1.0), seed=5).learn(40)
    np.testing.assert_allclose(vec["true_utility"][:, 1], single["true_utility"], rtol=1e-12)


def test_negative_noise_is_an_error():
    with pytest.raises(ValueError, match="label_noise must be non-negative"):
        gym.make("FPO/LinearRM-v0", label_noise=-0.1)
    with pytest.raises(ValueError, match="label_noise must be non-negative"):
        gym.make_vec("FPO/NeuralRM-v0", num_envs=2, label_noise=-1.0)


def test_sampled_preferences_are_seeded_choices(tiny_text):
    def labels(sampled, seed=0):
        env = gym.make("FPO/TextRM-v0", sampled_preferences=sampled, **tiny_text)
        env.reset(seed=seed)
        out = []
        for text in ("the answer is yes", "no", "water is light", "it is clear", "because"):
            _, _, _, _, info = env.step(text)
            out.append((info["label"], info["preference"]))
        return np.array(out)

    soft, sampled = labels(False), labels(True)
    np.testing.assert_array_equal(soft[:, 0], soft[:, 1])  # the default target is the soft preference
    assert set(sampled[:, 0]) <= {0.0, 1.0}
    np.testing.assert_array_equal(sampled, labels(True))
    with pytest.raises(TypeError, match="sampled_preferences must be True or False"):
        gym.make("FPO/TextRM-v0", sampled_preferences="yes", **tiny_text)
