"""Frames: labelled, changing with the run, equal between a vector copy and its single env,
and the blind-spot map showing the RM's error where the model says it does."""

import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import agents  # noqa: E402
import fpo_envs  # noqa: E402, F401
from fpo_envs.render import BlindSpotMap, BlindSpotPanel, PhasePortrait, PortraitPanel, plane_basis, plane_coordinates  # noqa: E402

VECTOR_IDS = ("FPO/LinearRM-v0", "FPO/NeuralRM-v0")


def _play(env, rounds, seed=0):
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    space = env.action_space
    for _ in range(rounds):
        env.step((0.1 * space.high * rng.uniform(-1, 1, space.shape)).astype(space.dtype))


@pytest.mark.parametrize("env_id", VECTOR_IDS)
def test_vector_env_renders_each_copy_as_its_single_env(env_id):
    vec = gym.make_vec(env_id, num_envs=2, render_mode="rgb_array")
    assert "rgb_array" in vec.metadata["render_modes"]
    vec.reset(seed=5)
    singles = [gym.make(env_id, render_mode="rgb_array") for _ in range(2)]
    for i, env in enumerate(singles):
        env.reset(seed=5 + i)
    rng = np.random.default_rng(0)
    space = singles[0].action_space
    for _ in range(4):
        actions = (0.1 * space.high * rng.uniform(-1, 1, (2, *space.shape))).astype(space.dtype)
        vec.step(actions)
        for env, action in zip(singles, actions):
            env.step(action)
    frames = vec.render()
    assert isinstance(frames, tuple) and len(frames) == 2
    for frame, env in zip(frames, singles):
        np.testing.assert_array_equal(frame, env.render())
    assert not np.array_equal(frames[0], frames[1])


@pytest.mark.parametrize("env_id", VECTOR_IDS)
def test_vector_record_video_films_every_copy(env_id, tmp_path):
    pytest.importorskip("moviepy")
    vec = gym.make_vec(env_id, num_envs=2, render_mode="rgb_array")
    with warnings.catch_warnings():
        # The default NEXT_STEP autoreset keeps an episode's last frame: no warning that it is lost.
        warnings.simplefilter("error")
        vec = gym.wrappers.vector.RecordVideo(vec, str(tmp_path / "videos"), episode_trigger=lambda e: e == 0, video_length=5)
    vec.reset(seed=0)
    space = vec.unwrapped.single_action_space
    for _ in range(6):
        vec.step(np.zeros((2, *space.shape), space.dtype))
    vec.close()
    assert list((tmp_path / "videos").glob("*.mp4"))


def test_render_before_reset_or_without_a_mode():
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=2, render_mode="rgb_array")
    with pytest.raises(gym.error.ResetNeeded):
        vec.render()
    with pytest.raises(ValueError, match="render_mode must be one of"):
        gym.make_vec("FPO/LinearRM-v0", num_envs=2, render_mode="human")
    with pytest.warns(UserWarning, match="needs a render mode"):
        assert gym.make_vec("FPO/LinearRM-v0", num_envs=2).render() is None


def test_phase_portrait_draws_the_round_counter_and_moves_with_the_trajectory():
    env = gym.make("FPO/LinearRM-v0").unwrapped
    frame = PhasePortrait(env.oracle, env.signal_dims, labels=("a", "b"))
    assert frame.header.get_text() == ""
    traj = np.array([[0.5, 0.1], [1.0, 0.2]])
    first = frame.draw([PortraitPanel(traj, np.array([1.0, 2.0]), np.array([0.5, 1.5]))] * 2, round_index=2)
    assert frame.header.get_text() == "round 2"
    assert "2.00" in frame.boxes[0].get_text() and "1.50" in frame.boxes[0].get_text()
    moved = frame.draw([PortraitPanel(traj * 2, np.array([1.0, 3.0]), np.array([0.5, 1.5]))] * 2, round_index=3)
    assert first.shape == moved.shape and not np.array_equal(first, moved)
    assert [ax.get_xlabel() for ax in frame.axes] == ["signal magnitude ||y_signal||"] * 2
    with pytest.raises(ValueError, match="2 panels"):
        frame.draw([PortraitPanel(traj, np.ones(2), np.ones(2))], round_index=1)


def test_axes_grow_to_hold_a_trajectory_that_leaves_them():
    env = gym.make("FPO/LinearRM-v0").unwrapped
    frame = PhasePortrait(env.oracle, env.signal_dims)
    start = frame.limits
    frame.draw([PortraitPanel(np.array([[20.0, 9.0]]), np.ones(1), np.ones(1))], round_index=1)
    assert frame.limits[0] >= 20.0 and frame.limits[1] >= 9.0 and frame.limits[0] > start[0]


def test_plane_basis_is_orthonormal_with_the_ideal_on_its_first_axis():
    env = gym.make("FPO/LinearRM-v0", dim=6, signal_dims=2).unwrapped
    direction = np.array([5.0, -3.0, 1.0, 2.0, 0.0, -2.0])
    e1, e2 = plane_basis(env.oracle, 2, direction)
    np.testing.assert_allclose([e1 @ e1, e2 @ e2, e1 @ e2], [1.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(e1 @ env.oracle.ideal), np.linalg.norm(env.oracle.ideal))
    np.testing.assert_allclose(e2[:2], 0.0)
    np.testing.assert_allclose(e2[2:], direction[2:] / np.linalg.norm(direction[2:]))
    # No noise to follow: the first noise axis.
    np.testing.assert_allclose(plane_basis(env.oracle, 2, np.zeros(6))[1], np.eye(6)[2])
    y = 1.5 * e1 + 0.7 * e2
    np.testing.assert_allclose(plane_coordinates(y[None], e1, 2), [[1.5, 0.7]])


def test_blind_spot_map_colours_the_rms_error_on_the_policys_plane():
    env = gym.make("FPO/NeuralRM-v0").unwrapped
    oracle, s = env.oracle, env.signal_dims
    frame = BlindSpotMap(oracle, s, grid=16)
    seen = []

    def reward(y):
        seen.append(y)
        return y[:, 0] * 2.0 + y[:, 5]

    direction = np.zeros(env.dim)
    direction[5] = 3.0
    samples = np.tile(direction, (4, 1))
    frame.draw([BlindSpotPanel(reward, samples, samples, np.ones(1), np.ones(1), 0.1)], round_index=7)
    points = seen[0]
    e1, e2 = plane_basis(oracle, s, direction)
    # Every point the RM was asked about lies on the plane, on the frame's grid.
    coords = points @ np.stack([e1, e2], 1)
    np.testing.assert_allclose(points, coords @ np.stack([e1, e2]), atol=1e-12)
    image = np.asarray(frame.image[0].get_array())
    expected = reward(points) - oracle.utility(points)
    np.testing.assert_allclose(image.ravel(), expected, rtol=1e-10)
    # The samples sit at their signal component and noise magnitude: on the map's plane.
    np.testing.assert_allclose(frame.scatters[0].get_offsets(), [[0.0, 3.0]] * 4)


def test_neural_render_shows_the_live_rm_and_recent_samples():
    env = gym.make("FPO/NeuralRM-v0", render_mode="rgb_array")
    agent = agents.make("rlhf", env, seed=0, schedule_rounds=40)
    agent.learn(15)
    first = env.render()
    renderer = env.unwrapped._renderer
    assert len(renderer.scatters[0].get_offsets()) == 10 * env.unwrapped.samples_per_round
    agent.learn(15)
    assert not np.array_equal(first, env.render())
    assert renderer.header.get_text() == "round 30"


def test_text_frame_is_labelled(tiny_text):
    env = gym.make("FPO/TextRM-v0", render_mode="rgb_array", **tiny_text)
    env.reset(seed=0)
    env.step("the answer is light")
    frame = env.render()
    renderer = env.unwrapped._renderer
    assert frame.ndim == 3 and renderer.axes[0].get_xlabel() == "response length (tokens)"
    assert "true U" in renderer.boxes[0].get_text() and renderer.header.get_text() == "round 1"


@pytest.mark.parametrize("env_id", VECTOR_IDS)
def test_a_restored_or_copied_env_renders_as_the_original(env_id):
    import copy
    import pickle

    env = gym.make(env_id, render_mode="rgb_array")
    _play(env, 7)
    frame = env.render()
    fresh = gym.make(env_id, render_mode="rgb_array")
    fresh.reset(seed=1)
    fresh.unwrapped.load_state_dict(env.unwrapped.state_dict())
    np.testing.assert_array_equal(fresh.render(), frame)
    for clone in (copy.deepcopy(env), pickle.loads(pickle.dumps(env))):
        np.testing.assert_array_equal(clone.render(), frame)
    vec = gym.make_vec(env_id, num_envs=2, render_mode="rgb_array")
    _play(vec, 3)
    again = gym.make_vec(env_id, num_envs=2, render_mode="rgb_array")
    again.reset(seed=9)
    again.unwrapped.load_state_dict(vec.unwrapped.state_dict())
    for a, b in zip(again.render(), vec.render()):
        np.testing.assert_array_equal(a, b)


def test_the_dots_are_the_rms_buffer_whatever_its_size():
    env = gym.make("FPO/NeuralRM-v0", render_mode="rgb_array", buffer_size=20, samples_per_round=4)
    _play(env, 3)
    env.render()
    dots = env.unwrapped._renderer.scatters[0].get_offsets()
    assert len(dots) == 12  # 3 rounds of 4 samples, the buffer not yet full
    _play(env, 9)
    env.render()
    buffer = env.unwrapped.reward_model.buffer["y"].numpy()
    e1, _ = plane_basis(env.unwrapped.oracle, 2, None)
    np.testing.assert_allclose(env.unwrapped._renderer.scatters[0].get_offsets(), plane_coordinates(buffer, e1, 2), rtol=1e-6)


def test_frames_refuse_settings_they_cannot_draw():
    env = gym.make("FPO/LinearRM-v0", render_mode="rgb_array", utility_peak=-1.0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="utility_peak"):
        env.render()
    env = gym.make("FPO/NeuralRM-v0", render_mode="rgb_array", dim=2, signal_dims=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="signal_dims < dim"):
        env.render()
