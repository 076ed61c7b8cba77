"""The linear game: RM maths, the paper's update, replay, vectorization, bad input."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import fpo_envs
from fpo_envs.models.linear import LinearRewardModel
from fpo_envs.models.oracles import GaussianBumpOracle


@pytest.fixture
def env():
    return gym.make("FPO/LinearRM-v0")


def _fd_grad(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = eps
        grad.flat[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return grad


def test_rm_gradients_match_direct_computation():
    rng = np.random.default_rng(0)
    w, y, u = rng.normal(size=7), rng.normal(size=7), 1.3
    rm = LinearRewardModel(w.copy(), lr=0.005, weight_decay=1e-4)
    assert rm.reward(y) == pytest.approx(w @ y)
    np.testing.assert_allclose(rm.grad_params(y), _fd_grad(lambda v: v @ y, w), atol=1e-8)
    np.testing.assert_allclose(rm.grad_input(y), _fd_grad(lambda v: w @ v, y), atol=1e-8)
    np.testing.assert_allclose(rm.loss_grad(y, u), _fd_grad(lambda v: (v @ y - u) ** 2, w), atol=1e-6)
    v = rng.normal(size=7)
    np.testing.assert_allclose(rm.grad_params_vjp(y, v), _fd_grad(lambda z: rm.grad_params(z) @ v, y), atol=1e-8)


def test_rm_update_is_the_papers_follower_step_and_preview_does_not_apply():
    rng = np.random.default_rng(1)
    w, y, u = rng.normal(size=5), rng.normal(size=5), 0.7
    rm = LinearRewardModel(w.copy(), lr=0.005, weight_decay=1e-4)
    expected = (1 - 1e-4) * w - 0.005 * 2 * (w @ y - u) * y
    np.testing.assert_allclose(rm.preview_update(y, u), expected)
    np.testing.assert_array_equal(rm.w, w)
    rm.update(y, u)
    np.testing.assert_allclose(rm.w, expected)


def test_rm_broadcasts_over_batches():
    rng = np.random.default_rng(2)
    w, y = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    rm = LinearRewardModel(w)
    np.testing.assert_allclose(rm.reward(y), [LinearRewardModel(w[i]).reward(y[i]) for i in range(4)])


def test_oracle_gradient_and_optimum():
    ideal = np.array([2.0, 2.0, 2.0, 0.0, 0.0])
    oracle = GaussianBumpOracle(ideal, 10.0, 0.3)
    y = np.random.default_rng(3).normal(size=5)
    np.testing.assert_allclose(oracle.grad(y), _fd_grad(oracle.utility, y), atol=1e-7)
    y_star, u_star = oracle.optimum()
    assert u_star == oracle.utility(y_star) == 10.0
    assert np.all(oracle.utility(y_star + np.eye(5) * 0.1) < u_star)


def test_env_optimum_is_the_papers_ideal(env):
    y_star, u_star = env.unwrapped.optimum()
    assert u_star == 10.0
    np.testing.assert_array_equal(y_star, np.r_[[2.0] * 3, np.zeros(47)])
    env.reset(seed=0)
    _, _, _, _, info = env.step(y_star.astype(np.float32))
    assert info["true_utility"] == pytest.approx(10.0)


def test_step_follows_the_paper_and_observation_shows_the_updated_rm(env):
    obs, _ = env.reset(seed=0)
    w0, y0 = env.unwrapped.split_observation(obs)
    np.testing.assert_array_equal(y0, 0.0)
    assert np.abs(w0 - np.r_[[1.0] * 3, np.zeros(47)]).max() < 0.5
    w0 = env.unwrapped.reward_model.w.copy()
    y = np.linspace(-1, 1, 50)
    obs, reward, _, _, info = env.step(y)
    u = 10 * np.exp(-0.3 * np.sum((y - np.r_[[2.0] * 3, np.zeros(47)]) ** 2))
    assert info["true_utility"] == pytest.approx(u)
    assert reward == pytest.approx(w0 @ y - 0.1 * y @ y)
    assert info["rm_error"] == pytest.approx(w0 @ y - u)
    assert info["signal_norm"] == pytest.approx(np.linalg.norm(y[:3]))
    assert info["noise_norm"] == pytest.approx(np.linalg.norm(y[3:]))
    w1 = (1 - 1e-4) * w0 - 0.005 * 2 * (w0 @ y - u) * y
    np.testing.assert_allclose(env.unwrapped.reward_model.w, w1)
    np.testing.assert_allclose(obs, np.r_[w1, y].astype(np.float32))


def test_reset_options_replay_a_run_exactly(env):
    w = np.full(50, 0.5)
    y = np.full(50, 0.1)
    obs, _ = env.reset(seed=123, options={"rm_params": w, "output": y})
    np.testing.assert_array_equal(obs, np.r_[w, y].astype(np.float32))
    other = gym.make("FPO/LinearRM-v0")
    other.reset(seed=9, options={"rm_params": w, "output": y})
    a, b = env.step(y), other.step(y)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_constructor_settings_change_the_game():
    env = gym.make(
        "FPO/LinearRM-v0",
        dim=8,
        signal_dims=2,
        ideal_value=1.0,
        utility_peak=3.0,
        utility_width=0.5,
        rm_init_std=0.0,
        action_cost=0.0,
        output_bound=4.0,
    )
    obs, _ = env.reset(seed=0)
    assert env.action_space.shape == (8,) and env.observation_space.shape == (16,)
    np.testing.assert_array_equal(obs[:8], [1, 1, 0, 0, 0, 0, 0, 0])
    y_star, u_star = env.unwrapped.optimum()
    assert u_star == 3.0 and list(y_star) == [1, 1, 0, 0, 0, 0, 0, 0]
    assert env.action_space.high[0] == 4.0


@pytest.mark.parametrize(
    "kwargs", [{"signal_dims": 0}, {"signal_dims": 51}, {"rm_lr": 0.0}, {"output_bound": 1.0}, {"action_cost": -1.0}]
)
def test_invalid_settings_are_errors(kwargs):
    with pytest.raises(ValueError):
        gym.make("FPO/LinearRM-v0", **kwargs)


@pytest.mark.parametrize("env_id", ["FPO/LinearRM-v0", "FPO/NeuralRM-v0"])
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dim": -3}, ValueError, "dim must be at least 1, got -3"),
        ({"dim": 3.5}, TypeError, r"dim must be a whole number, got 3.5 \(float\)"),
        ({"dim": "50"}, TypeError, r"dim must be a whole number, got '50' \(str\)"),
        ({"signal_dims": True}, TypeError, "signal_dims must be a whole number"),
        ({"rm_lr": "0.1"}, TypeError, "rm_lr must be a real number"),
        ({"utility_peak": float("nan")}, ValueError, "utility_peak must be finite"),
    ],
)
def test_settings_of_the_wrong_type_or_range_name_the_setting(env_id, kwargs, error, match):
    if env_id == "FPO/NeuralRM-v0":
        pytest.importorskip("torch")
    with pytest.raises(error, match=match):
        gym.make(env_id, **kwargs)
    with pytest.raises(error, match=match):
        gym.make_vec(env_id, num_envs=2, **kwargs)


def test_settings_are_one_params_object_whose_fields_are_the_signature():
    import inspect

    from fpo_envs.games.linear import LinearParams, LinearRMEnv, LinearRMVectorEnv

    env = gym.make("FPO/LinearRM-v0", dim=8, rm_init_std=0.1)
    game = env.unwrapped
    assert game.params == LinearParams(dim=8) and env.spec.kwargs == {"dim": 8, "rm_init_std": 0.1}
    assert all(getattr(game, name) == getattr(game.params, name) for name in LinearParams.names())
    # Given at its default, a setting is no change: the same game and the same store key.
    assert game.params.changed() == {"dim": 8} and game.params.store_key() == '{"dim": 8}'
    assert LinearParams(dim=np.int64(8), utility_peak=10).changed() == {"dim": 8}
    single = inspect.signature(LinearRMEnv).parameters
    assert list(single) == [*LinearParams.names(), "render_mode"]
    assert single["dim"].default == 50 and single["dim"].kind is inspect.Parameter.KEYWORD_ONLY
    vector = inspect.signature(LinearRMVectorEnv).parameters
    assert list(vector)[:4] == ["num_envs", "max_episode_steps", "render_mode", "autoreset_mode"]
    assert list(vector)[4:] == list(LinearParams.names())
    with pytest.raises(dataclasses.FrozenInstanceError):
        game.params.dim = 3


@pytest.mark.parametrize("make", [gym.make, lambda env_id, **kw: gym.make_vec(env_id, num_envs=2, **kw)])
def test_the_renamed_rm_init_noise_is_an_error_naming_rm_init_std(make):
    with pytest.raises(TypeError, match="`rm_init_noise` was renamed `rm_init_std`: pass rm_init_std=0.2"):
        make("FPO/LinearRM-v0", rm_init_noise=0.2)


@pytest.mark.parametrize(
    "action, match",
    [
        (np.zeros(49), "shape"),
        (np.zeros((1, 50)), "shape"),
        (np.r_[np.nan, np.zeros(49)], "NaN or inf"),
        (np.r_[np.inf, np.zeros(49)], "NaN or inf"),
        (np.r_[11.0, np.zeros(49)], "bounds"),
        ("not an action", "numeric"),
    ],
)
def test_bad_actions_raise_clear_errors(env, action, match):
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_bad_reset_options_raise_clear_errors(env):
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"rm_params": np.zeros(3)})
    with pytest.raises(ValueError, match="NaN"):
        env.reset(options={"output": np.full(50, np.nan)})


def test_diverging_rm_ends_the_episode_without_nan():
    env = gym.make("FPO/LinearRM-v0", rm_lr=5.0)
    obs, _ = env.reset(seed=0)
    y = np.full(50, 9.0, dtype=np.float32)
    for _ in range(50):
        obs, reward, terminated, truncated, info = env.step(y)
        assert np.all(np.isfinite(obs)) and np.isfinite(reward)
        assert env.observation_space.contains(obs)
        if terminated:
            break
    assert terminated and info["diverged"]
    assert np.all(np.isfinite(env.unwrapped.reward_model.w))


def test_time_limit_is_300_rounds(env):
    env.reset(seed=0)
    for t in range(300):
        _, _, terminated, truncated, _ = env.step(np.zeros(50))
        assert not terminated
        assert truncated == (t == 299)


def test_vector_env_is_batched_numpy_equal_to_single_envs():
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=4)
    assert isinstance(vec.unwrapped, fpo_envs.FeedbackLoopVectorEnv)
    assert vec.unwrapped.reward_model.w.shape == (4, 50)
    obs, _ = vec.reset(seed=10)
    singles = [gym.make("FPO/LinearRM-v0") for _ in range(4)]
    single_obs = [e.reset(seed=10 + i)[0] for i, e in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    rng = np.random.default_rng(0)
    for _ in range(10):
        actions = rng.uniform(-0.5, 0.5, (4, 50))
        obs, reward, _, _, info = vec.step(actions)
        outs = [e.step(a) for e, a in zip(singles, actions)]
        # Exactly equal: numpy's batched reductions sum each copy's row as the single env does.
        np.testing.assert_array_equal(obs, np.stack([o[0] for o in outs]))
        np.testing.assert_array_equal(reward, [o[1] for o in outs])
        for key in fpo_envs.INFO_KEYS:
            np.testing.assert_array_equal(info[key], [o[4][key] for o in outs], err_msg=key)


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_vector_env_resets_only_the_copies_that_end(mode):
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=3, rm_lr=5.0, autoreset_mode=mode)
    obs0, _ = vec.reset(seed=0)
    actions = np.zeros((3, 50))
    actions[1] = 9.0
    for _ in range(50):
        obs, _, terminated, truncated, info = vec.step(actions)
        if terminated.any():
            break
    assert list(terminated) == [False, True, False] and not truncated.any()
    assert info["diverged"][1]
    assert np.all(np.isfinite(obs))  # the diverged update was rolled back
    if mode == "SameStep":
        assert info["_final_obs"][1] and not info["_final_obs"][[0, 2]].any()
        np.testing.assert_array_equal(info["final_obs"][1, 50:], 9.0)
    else:
        assert "final_obs" not in info
        np.testing.assert_array_equal(obs[1, 50:], 9.0)  # the episode's last observation
        obs, reward, terminated, truncated, info = vec.step(actions)
        assert reward[1] == 0.0 and not terminated[1] and not truncated[1] and not info["diverged"][1]
        assert np.isnan(info["true_utility"][1]) and np.isfinite(info["true_utility"][[0, 2]]).all()
    # The ended copy restarted from a fresh RM drawn from its own generator; the others kept theirs.
    np.testing.assert_array_equal(obs[1, 50:], 0.0)
    assert not np.array_equal(obs[1, :50], obs0[1, :50])
    assert not np.array_equal(obs[0, :50], obs0[0, :50])


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_vector_env_truncates_at_the_time_limit_and_autoresets(mode):
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=2, max_episode_steps=3, autoreset_mode=mode)
    vec.reset(seed=0)
    steps = [vec.step(np.full((2, 50), 0.1)) for _ in range(5)]
    assert [s[3].tolist() for s in steps] == [[False, False], [False, False], [True, True], [False, False], [False, False]]
    # NEXT_STEP spends the step after the time limit on the reset (reward 0); SAME_STEP plays it.
    assert (steps[3][1] == 0).all() == (mode == "NextStep")
    first_of_new_episode = steps[3][0] if mode == "NextStep" else steps[2][0]
    np.testing.assert_array_equal(first_of_new_episode[:, 50:], 0.0)
    last = steps[2][0] if mode == "NextStep" else steps[2][4]["final_obs"]
    np.testing.assert_allclose(last[:, 50:], 0.1, rtol=1e-6)


def test_vector_env_per_copy_reset_options():
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=2)
    w = np.stack([np.full(50, 0.1), np.full(50, 0.2)])
    obs, _ = vec.reset(seed=0, options={"rm_params": w})
    np.testing.assert_allclose(obs[:, :50], w)
    with pytest.raises(TypeError, match="unknown argument"):
        gym.make_vec("FPO/LinearRM-v0", num_envs=2, no_such_setting=1)
