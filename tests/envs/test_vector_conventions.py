"""Gymnasium's vector conventions on every game with a native vector env: the autoreset modes
(NEXT_STEP by default), ``reset_mask``, and the ``gymnasium.wrappers.vector`` wrappers that
need them; and the action dtypes every array game refuses."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import vector as wrappers

import fpo_envs
from tests.conftest import random_action

VECTOR_IDS = [i for i in fpo_envs.ENV_IDS if gym.spec(i).vector_entry_point is not None]
"""Every registered game with a native vector env (a new one is covered as it registers)."""
BOX_IDS = [i for i in VECTOR_IDS if isinstance(gym.make(i).action_space, gym.spaces.Box)]
"""Those whose action is a float output (the token game's are token ids: tests/envs/test_token.py)."""

N = 4


def _needs(env_id):
    if "Neural" in gym.spec(env_id).vector_entry_point:
        pytest.importorskip("torch")


@pytest.fixture(params=VECTOR_IDS)
def vec_id(request):
    _needs(request.param)
    return request.param


def _actions(space, rng, steps):
    """Modest random actions for a batched space (a tenth of its bounds; token ids for the token game)."""
    return [random_action(space, rng) for _ in range(steps)]


def _assert_close(env_id, a, b, err_msg=""):
    """The linear and token games' copies are exact; the neural game's within float32 rounding
    (tests/envs/test_neural.py, COPY_ATOL, and NeuralRMVectorEnv's docstring)."""
    if "Neural" not in env_id:
        np.testing.assert_array_equal(a, b, err_msg=err_msg)
    else:
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6, err_msg=err_msg)


# Autoreset modes ---------------------------------------------------------------------------
def test_next_step_is_the_default_and_metadata_is_the_instances(vec_id):
    default = gym.make_vec(vec_id, num_envs=2)
    assert default.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert default.unwrapped.autoreset_mode is AutoresetMode.NEXT_STEP
    for given, mode in [
        ("SameStep", AutoresetMode.SAME_STEP),
        (AutoresetMode.DISABLED, AutoresetMode.DISABLED),
        ("same_step", AutoresetMode.SAME_STEP),
    ]:
        assert gym.make_vec(vec_id, num_envs=2, autoreset_mode=given).metadata["autoreset_mode"] is mode
    # One instance's mode does not leak into the class or the next instance.
    assert type(default.unwrapped).metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert gym.make_vec(vec_id, num_envs=2).metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    with pytest.raises(ValueError, match="autoreset_mode must be .*NextStep"):
        gym.make_vec(vec_id, num_envs=2, autoreset_mode="sometimes")


def test_next_step_resets_on_the_step_after_the_end_as_a_single_env_reset_would(vec_id):
    """The step after a truncation returns the fresh observation, reward 0 and no end, ignores
    the action; the new episode then plays as the single env seeded ``s + i`` plays after its
    own ``reset()`` (the copy's generator continues; label noise exercises it)."""
    kwargs = {"max_episode_steps": 3, "label_noise": 0.5}
    vec = gym.make_vec(vec_id, num_envs=N, **kwargs)
    singles = [gym.make(vec_id, **kwargs) for _ in range(N)]
    vec.reset(seed=20)
    for i, env in enumerate(singles):
        env.reset(seed=20 + i)
    actions = _actions(vec.action_space, np.random.default_rng(1), 7)
    for t, batch in enumerate(actions):
        if t == 3:  # the reset step: an action the env must ignore, even an invalid one
            batch = np.full_like(batch, np.nan if batch.dtype.kind == "f" else -1)
        obs, reward, terminated, truncated, info = vec.step(batch)
        if t == 3:
            fresh = [env.reset()[0] for env in singles]
            np.testing.assert_array_equal(obs, np.stack(fresh))  # the seeded start is exact
            assert (reward == 0).all() and not terminated.any() and not truncated.any()
            assert not info["diverged"].any() and np.isnan(info["true_utility"]).all()
            continue
        outs = [env.step(a) for env, a in zip(singles, batch)]
        _assert_close(vec_id, obs, np.stack([o[0] for o in outs]), f"round {t}")
        _assert_close(vec_id, reward, [o[1] for o in outs], f"round {t}")
        assert truncated.tolist() == [o[3] for o in outs] == [t in (2, 6)] * N


def test_same_step_plays_the_same_episodes_without_the_reset_step(vec_id):
    """SAME_STEP resets inside the ending step (``final_obs`` holds the last observation);
    given the same actions for the rounds played, both modes play the same episodes."""
    a = _actions(gym.make_vec(vec_id, num_envs=N).action_space, np.random.default_rng(0), 4)
    same = gym.make_vec(vec_id, num_envs=N, max_episode_steps=2, autoreset_mode="SameStep")
    nxt = gym.make_vec(vec_id, num_envs=N, max_episode_steps=2)
    np.testing.assert_array_equal(same.reset(seed=3)[0], nxt.reset(seed=3)[0])
    s = [same.step(x) for x in a]
    n = [nxt.step(x) for x in (a[0], a[1], np.zeros_like(a[0]), a[2], a[3])]  # n[2]: the reset step
    assert [x[3].all() for x in s] == [False, True, False, True] and [x[3].all() for x in n] == [False, True, False, False, True]
    assert "final_obs" not in n[1][4] and s[1][4]["_final_obs"].all()
    np.testing.assert_array_equal(s[1][4]["final_obs"], n[1][0])  # the episode's last observation
    np.testing.assert_array_equal(s[3][4]["final_obs"], n[4][0])
    for k, m in enumerate([0, 1, 3, 4]):  # SAME_STEP's rounds are NEXT_STEP's, less its reset step
        np.testing.assert_array_equal(s[k][1], n[m][1])
        np.testing.assert_array_equal(s[k][4]["true_utility"], n[m][4]["true_utility"])
    np.testing.assert_array_equal(s[1][0], n[2][0])  # the new episode's first observation
    np.testing.assert_array_equal(s[2][0], n[3][0])


def test_disabled_waits_for_a_masked_reset(vec_id):
    vec = gym.make_vec(vec_id, num_envs=N, max_episode_steps=2, autoreset_mode="Disabled")
    nxt = gym.make_vec(vec_id, num_envs=N, max_episode_steps=2)
    for env in (vec, nxt):
        env.reset(seed=0)
    actions = _actions(vec.action_space, np.random.default_rng(2), 4)
    for a in actions[:2]:
        _, _, _, truncated, _ = vec.step(a)
        nxt.step(a)
    with pytest.raises(gym.error.ResetNeeded, match="reset_mask"):
        vec.step(actions[2])
    obs, _ = vec.reset(options={"reset_mask": truncated})
    np.testing.assert_array_equal(obs, nxt.step(actions[2])[0])  # the same fresh episode as NEXT_STEP's
    _assert_close(vec_id, vec.step(actions[3])[0], nxt.step(actions[3])[0])


def test_reset_mask_resets_only_those_copies(vec_id):
    vec = gym.make_vec(vec_id, num_envs=N)
    start, _ = vec.reset(seed=0)
    played, _, _, _, _ = vec.step(_actions(vec.action_space, np.random.default_rng(0), 1)[0])
    mask = np.array([False, True, False, True])
    obs, _ = vec.reset(seed=50, options={"reset_mask": mask})
    np.testing.assert_array_equal(obs[~mask], played[~mask])
    # The masked copies are reseeded alone: copy i from seed + i, as a single env.
    for i in np.flatnonzero(mask):
        np.testing.assert_array_equal(obs[i], gym.make(vec_id).reset(seed=50 + int(i))[0])
    assert vec.unwrapped._elapsed.tolist() == [1, 0, 1, 0]
    # Without a seed, a copy's new start continues its generator (not its old start again).
    obs, _ = vec.reset(options={"reset_mask": ~mask})
    assert not np.array_equal(obs[0], start[0])
    for bad, error, match in [
        ([True] * N, TypeError, "numpy bool array"),
        (np.ones(N, dtype=int), TypeError, "numpy bool array"),
        (np.ones(N + 1, dtype=bool), ValueError, "shape"),
        (np.zeros(N, dtype=bool), ValueError, "selects no copy"),
    ]:
        with pytest.raises(error, match=match):
            vec.reset(options={"reset_mask": bad})
    with pytest.raises(ValueError, match="reset_mask"):
        vec.reset(options={"no_such_option": 1})
    with pytest.raises(gym.error.ResetNeeded):
        gym.make_vec(vec_id, num_envs=N).reset(options={"reset_mask": mask})


def test_a_pending_reset_survives_state_dict(vec_id):
    vec = gym.make_vec(vec_id, num_envs=2, max_episode_steps=1)
    vec.reset(seed=0)
    actions = _actions(vec.action_space, np.random.default_rng(0), 2)
    vec.step(actions[0])  # both copies end; their reset is pending
    other = gym.make_vec(vec_id, num_envs=2, max_episode_steps=1)
    other.reset(seed=9)
    other.unwrapped.load_state_dict(vec.unwrapped.state_dict())
    a, b = vec.step(actions[1]), other.step(actions[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert (a[1] == 0).all() and (b[1] == 0).all()


# gymnasium.wrappers.vector -------------------------------------------------------------------
def _raw_and_wrapped(vec_id, wrap, steps=6, **kwargs):
    """The observations, rewards and infos of the bare vector env and of ``wrap(env)``, both
    seeded 0 and given the same actions."""
    out = []
    for env in (gym.make_vec(vec_id, num_envs=N, **kwargs), wrap(gym.make_vec(vec_id, num_envs=N, **kwargs))):
        obs, _ = env.reset(seed=0)
        record = {"obs": [obs], "reward": [], "info": []}
        for a in _actions(env.action_space, np.random.default_rng(0), steps):
            obs, reward, _, _, info = env.step(a)
            record["obs"].append(obs)
            record["reward"].append(reward)
            record["info"].append(info)
        out.append((env, record))
    return out


def test_normalize_observation_tracks_the_running_mean(vec_id):
    (_, raw), (env, _) = _raw_and_wrapped(vec_id, wrappers.NormalizeObservation)
    seen = np.concatenate(raw["obs"])  # (steps + 1) * N observations
    assert env.obs_rms.count == pytest.approx(len(seen), abs=1e-3)
    np.testing.assert_allclose(env.obs_rms.mean, seen.mean(0), rtol=1e-3, atol=1e-5)
    assert np.abs(env.obs_rms.mean).max() > 0.1  # it moved from its start at 0


def test_transform_observation_clips(vec_id):
    clip = lambda obs: np.clip(obs, -0.05, 0.05)  # noqa: E731
    (_, raw), (_, wrapped) = _raw_and_wrapped(vec_id, lambda e: wrappers.TransformObservation(e, clip))
    for r, w in zip(raw["obs"], wrapped["obs"]):
        np.testing.assert_array_equal(w, clip(r))
    assert np.abs(np.concatenate(raw["obs"])).max() > 0.05


def test_flatten_observation_keeps_the_flat_observation(vec_id):
    (_, raw), (env, wrapped) = _raw_and_wrapped(vec_id, wrappers.FlattenObservation)
    assert env.single_observation_space.shape == gym.make(vec_id).observation_space.shape
    for r, w in zip(raw["obs"], wrapped["obs"]):
        np.testing.assert_array_equal(w, r)


def test_record_episode_statistics_reports_each_episode(vec_id):
    (_, raw), (env, wrapped) = _raw_and_wrapped(vec_id, wrappers.RecordEpisodeStatistics, steps=7, max_episode_steps=3)
    # Episodes end at steps 3 and 7 (step 4 is NEXT_STEP's reset, which no episode counts).
    ends = [t for t, info in enumerate(wrapped["info"]) if "episode" in info]
    assert ends == [2, 6]
    for t, first in ((2, 0), (6, 4)):
        stats = wrapped["info"][t]["episode"]
        assert wrapped["info"][t]["_episode"].all() and (stats["l"] == 3).all()
        np.testing.assert_allclose(stats["r"], np.sum(raw["reward"][first : t + 1], axis=0), rtol=1e-12)
    assert env.episode_count == 2 * N and list(env.length_queue) == [3] * (2 * N)


def test_normalize_reward_scales_by_the_return_spread(vec_id):
    (_, raw), (env, wrapped) = _raw_and_wrapped(vec_id, wrappers.NormalizeReward, max_episode_steps=3)
    scale = np.sqrt(env.return_rms.var + env.epsilon)
    np.testing.assert_allclose(wrapped["reward"][-1] * scale, raw["reward"][-1], rtol=1e-6)
    assert not np.allclose(wrapped["reward"][-1], raw["reward"][-1])


def test_the_cleanrl_wrapper_stack_runs_across_episode_ends(vec_id):
    """CleanRL's Gymnasium-1.x ``make_env`` stack on the native vector env (no sync fallback)."""
    env = gym.make_vec(vec_id, num_envs=N, max_episode_steps=3)
    env = wrappers.FlattenObservation(env)
    env = wrappers.RecordEpisodeStatistics(env)
    if isinstance(env.action_space, gym.spaces.Box):  # CleanRL clips continuous actions only
        env = wrappers.ClipAction(env)
    env = wrappers.NormalizeObservation(env)
    env = wrappers.TransformObservation(env, lambda obs: np.clip(obs, -10, 10))
    env = wrappers.NormalizeReward(env, gamma=0.99)
    env = wrappers.TransformReward(env, lambda reward: np.clip(reward, -10, 10))
    obs, _ = env.reset(seed=0)
    rng, episodes = np.random.default_rng(0), 0
    for _ in range(8):
        obs, reward, terminated, truncated, info = env.step(_actions(env.action_space, rng, 1)[0])
        assert np.isfinite(obs).all() and np.isfinite(reward).all() and np.abs(obs).max() <= 10
        episodes += int(info.get("_episode", np.zeros(N, bool)).sum())
    assert episodes == 2 * N


# Action dtypes -------------------------------------------------------------------------------
@pytest.mark.parametrize("vector", [False, True], ids=["single", "vector"])
@pytest.mark.parametrize("env_id", BOX_IDS)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.complex128, np.complex64])
def test_integer_bool_and_complex_actions_are_refused(env_id, vector, dtype):
    _needs(env_id)
    env = gym.make_vec(env_id, num_envs=2) if vector else gym.make(env_id)
    env.reset(seed=0)
    shape = env.action_space.shape
    name = np.dtype(dtype).name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused outright: no ComplexWarning, no cast
        with pytest.raises(ValueError, match=rf"float array of shape .*np\.asarray\(x, dtype=np\.float32\); got dtype {name}"):
            env.step(np.zeros(shape, dtype=dtype))
        with pytest.raises(ValueError, match="got dtype"):  # as a list (of ints, bools or complex numbers)
            env.step(np.zeros(shape, dtype=dtype).tolist())
        # Floats of any width, and lists of floats, play.
        for ok in (
            np.zeros(shape, np.float32),
            np.zeros(shape, np.float64),
            np.zeros(shape, np.float16),
            np.zeros(shape).tolist(),
        ):
            env.step(ok)


@pytest.mark.parametrize("env_id", BOX_IDS)
def test_reset_options_refuse_the_same_dtypes(env_id):
    _needs(env_id)
    env = gym.make(env_id)
    dim = env.unwrapped.dim
    with pytest.raises(ValueError, match="reset option 'output' must be a float array .*got dtype int64"):
        env.reset(options={"output": np.zeros(dim, dtype=np.int64)})
    with pytest.raises(ValueError, match="got dtype complex128"):
        env.reset(options={"output": np.zeros(dim, dtype=complex)})
    env.reset(options={"output": np.zeros(dim)})
