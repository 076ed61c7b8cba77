"""Checks every registered FPO/ environment must pass."""

import copy
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import fpo_envs
from tests.conftest import TEXT_ID, small_action


def test_every_game_is_registered():
    registered = {k for k in gym.registry if k.startswith("FPO/")}
    assert registered == set(fpo_envs.ENV_IDS)


def test_gymnasium_check_env(env_id, make_kwargs):
    env = gym.make(env_id, render_mode="rgb_array", **make_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The action is the policy's output itself, so it is not normalized to [-1, 1].
        warnings.filterwarnings("ignore", message=".*symmetric and normalized")
        check_env(env.unwrapped, skip_render_check=False)


def test_sb3_check_env(env_id, make_kwargs):
    sb3_check_env = pytest.importorskip("stable_baselines3.common.env_checker").check_env
    env = gym.make(env_id, **make_kwargs)
    if env_id == TEXT_ID:
        # Text observations and actions are outside what stable-baselines3 supports; the
        # text game's learners are the LoRA learners of agents.families.text.
        with pytest.raises(AssertionError, match="numpy array"):
            sb3_check_env(env, warn=True)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*symmetric and normalized")
        sb3_check_env(env, warn=True)


def _flat(obs):
    return obs if isinstance(obs, np.ndarray) else np.asarray(sorted(obs.items()), dtype=object)


def _rollout(env, seed, rounds=12):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trajectory = [_flat(obs)]
    for _ in range(rounds):
        obs, reward, terminated, truncated, info = env.step(small_action(env, rng))
        trajectory.append((_flat(obs), reward, info["true_utility"], info["rm_error"]))
        if terminated or truncated:
            break
    return trajectory


def _same(a, b):
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


def test_seeded_determinism(env_id, make_kwargs):
    a = _rollout(gym.make(env_id, **make_kwargs), seed=3)
    b = _rollout(gym.make(env_id, **make_kwargs), seed=3)
    c = _rollout(gym.make(env_id, **make_kwargs), seed=4)
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    assert not all(_same(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e))])
def test_clone_continues_identically(env_id, make_kwargs, clone):
    env = gym.make(env_id, **make_kwargs)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(3):
        env.step(small_action(env, rng))
    twin = clone(env)
    for _ in range(3):
        action = small_action(env, rng)
        out_a, out_b = env.step(action), twin.step(action)
        assert _same(_flat(out_a[0]), _flat(out_b[0]))
        assert out_a[1:4] == out_b[1:4]
        assert out_a[4] == out_b[4]


def test_info_keys_are_finite_floats(env_id, make_kwargs):
    env = gym.make(env_id, **make_kwargs)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(small_action(env, np.random.default_rng(0)))
    assert set(fpo_envs.INFO_KEYS) | {"diverged"} <= set(info)
    assert isinstance(reward, float) and np.isfinite(reward)
    assert all(isinstance(info[k], float) and np.isfinite(info[k]) for k in fpo_envs.INFO_KEYS)
    assert info["diverged"] is False
    # The game's own list holds the shared keys and names only what a round reports.
    keys = env.unwrapped.info_keys
    assert set(fpo_envs.INFO_KEYS) <= set(keys) <= set(info) and len(set(keys)) == len(keys)
    assert all(np.isfinite(info[k]) for k in keys)


def test_render_rgb_array_shows_the_trajectory(env_id, make_kwargs):
    env = gym.make(env_id, render_mode="rgb_array", **make_kwargs)
    assert "rgb_array" in env.metadata["render_modes"] and env.metadata["render_fps"] > 0
    env.reset(seed=0)
    first = env.render()
    rng = np.random.default_rng(0)
    for _ in range(6):
        env.step(small_action(env, rng))
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert first.shape == frame.shape and not np.array_equal(first, frame)


def test_record_video_films_an_episode(env_id, make_kwargs, tmp_path):
    pytest.importorskip("moviepy")
    env = gym.wrappers.RecordVideo(
        gym.make(env_id, render_mode="rgb_array", **make_kwargs), str(tmp_path / "videos"), disable_logger=True
    )
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(small_action(env, rng))
    env.close()
    assert list((tmp_path / "videos").glob("*.mp4"))


def test_unknown_constructor_argument_is_an_error_that_lists_the_known_ones(env_id, make_kwargs):
    with pytest.raises(TypeError, match=r"no_such_setting.*known: \[.*'render_mode'"):
        gym.make(env_id, no_such_setting=1, **make_kwargs)


def test_unknown_reset_option_is_an_error(env_id, make_kwargs):
    env = gym.make(env_id, **make_kwargs)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"no_such_option": 1})


def test_step_before_reset_is_an_error(env_id, make_kwargs):
    env = gym.make(env_id, **make_kwargs).unwrapped
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())
