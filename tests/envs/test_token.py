"""FPO/TokenRM-v0: the exact optimum, the follower's steps, the info it reports, bad input, and
the collapse it exists to show (64 seeds)."""

import itertools

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401
from fpo_envs.core.numerics import sigmoid
from fpo_envs.games.token import TokenRMEnv
from fpo_envs.models.tokens import token_features

ID = "FPO/TokenRM-v0"
TINY = {"vocab_size": 4, "seq_len": 3, "samples_per_round": 2, "feature_dims": 3, "hack_tokens": 1, "ideal_value": 1.0}


def _tokens(env, rng):
    return rng.integers(0, env.unwrapped.vocab_size, env.action_space.shape)


def test_the_optimum_is_the_best_of_every_sequence():
    env = gym.make(ID, **TINY).unwrapped
    tokens, best = env.optimum()
    every = np.array(list(itertools.product(range(4), repeat=3)))
    values = env.oracle.score(every)
    assert best == pytest.approx(values.max(), rel=1e-12) and env.oracle.score(tokens) == pytest.approx(best)


def test_the_default_game_has_headroom_above_the_uniform_policy():
    env = gym.make(ID).unwrapped
    _, best = env.optimum()
    assert best == pytest.approx(9.8722, abs=1e-4)
    uniform = np.random.default_rng(0).integers(0, 12, (4096, 8))
    assert env.oracle.score(uniform).mean() < best / 2


def test_the_blind_spot_by_construction():
    """At the RM's start the hack tokens earn more credit than the rest, and cost true utility
    through their noise features: their noise is larger."""
    features = token_features(12, 6, 2, 4, 0.5, 1.0, 0.3, 0)
    credit = features[:, :2].sum(1)  # the unperturbed start w = (1, 1, 0, ...)
    assert credit[:4].mean() > credit[4:].mean() + 0.9
    assert np.abs(features[:4, 2:]).mean() > 2 * np.abs(features[4:, 2:]).mean()


def test_a_round_scores_labels_and_retrains_as_documented():
    env = gym.make(ID).unwrapped
    env.reset(seed=3)
    w = env.reward_model.w.copy()
    tokens = _tokens(env, np.random.default_rng(0))
    _, reward, _, _, info = env.step(tokens)
    s = tokens.reshape(8, 8)
    y = env.features[s].sum(1)
    r, u = y @ w, env.oracle.utility(y)
    assert reward == pytest.approx(r.mean(), rel=1e-12) and info["true_utility"] == pytest.approx(u.mean(), rel=1e-12)
    assert info["rm_error"] == pytest.approx((r - u).mean(), rel=1e-12)
    assert info["rm_margin_to_optimum"] == pytest.approx(r.mean() - w @ env.optimal_features, rel=1e-12)
    assert info["hack_share"] == pytest.approx((s < 4).mean())
    expected = (1 - 1e-4) * w - 5e-4 * (2 * (r - u)[:, None] * y).mean(0)
    np.testing.assert_allclose(env.reward_model.w, expected, rtol=1e-13)
    obs = env._observation()
    np.testing.assert_allclose(obs[:6], expected.astype(np.float32))
    assert (obs[6:] == tokens).all()


def test_bradley_terry_trains_on_the_preference_over_a_reference():
    env = gym.make(ID, rm_loss="bradley-terry", rm_lr=0.01).unwrapped
    env.reset(seed=1)
    w = env.reward_model.w.copy()
    ref = env._state["reference"]
    assert ref.shape == (8, 8) and len(np.unique(ref)) > 1  # drawn from the uniform policy
    tokens = _tokens(env, np.random.default_rng(1))
    _, _, _, _, info = env.step(tokens)
    y, y_ref = env.features[tokens.reshape(8, 8)].sum(1), env.features[ref].sum(1)
    p = sigmoid(env.oracle.utility(y) - env.oracle.utility(y_ref))
    delta = y - y_ref
    expected = (1 - 1e-4) * w - 0.01 * ((sigmoid(delta @ w) - p)[:, None] * delta).mean(0)
    np.testing.assert_allclose(env.reward_model.w, expected, rtol=1e-13)
    assert info["rm_error"] == pytest.approx((sigmoid(delta @ w) - p).mean(), rel=1e-12)


def test_the_same_seed_draws_the_same_rm_under_either_loss():
    a, b = gym.make(ID).unwrapped, gym.make(ID, rm_loss="bradley-terry").unwrapped
    a.reset(seed=5)
    b.reset(seed=5)
    np.testing.assert_array_equal(a.reward_model.w, b.reward_model.w)


@pytest.mark.parametrize("m", [1, 3])
def test_retrain_every_m_holds_the_rm_then_takes_m_steps_on_the_buffer(m):
    env = gym.make(ID, retrain_every=m).unwrapped
    env.reset(seed=0)
    rng = np.random.default_rng(2)
    w0, data = env.reward_model.w.copy(), []
    for t in range(m):
        tokens = _tokens(env, rng)
        _, _, _, _, info = env.step(tokens)
        data.append(env.features[tokens.reshape(8, 8)].sum(1))
        assert info["retrained"] == (t == m - 1)
        if t < m - 1:
            np.testing.assert_array_equal(env.reward_model.w, w0)  # fixed between retrainings
    y = np.concatenate(data)
    u, w = env.oracle.utility(y), w0
    for _ in range(m):
        w = (1 - 1e-4) * w - 5e-4 * (2 * (y @ w - u)[:, None] * y).mean(0)
    np.testing.assert_allclose(env.reward_model.w, w, rtol=1e-12)


def test_vector_copies_equal_single_envs_exactly():
    vec = gym.make_vec(ID, num_envs=3, label_noise=0.3, retrain_every=2)
    singles = [gym.make(ID, label_noise=0.3, retrain_every=2) for _ in range(3)]
    obs, _ = vec.reset(seed=10)
    for i, env in enumerate(singles):
        np.testing.assert_array_equal(obs[i], env.reset(seed=10 + i)[0])
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.integers(0, 12, vec.action_space.shape)
        obs, reward, _, _, info = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, _, _, single = env.step(actions[i])
            np.testing.assert_array_equal(obs[i], o)
            assert reward[i] == r and info["rm_margin_to_optimum"][i] == single["rm_margin_to_optimum"]


def test_actions_of_shape_k_by_l_play_as_flat_ones():
    a, b = gym.make(ID), gym.make(ID)
    a.reset(seed=0)
    b.reset(seed=0)
    tokens = np.random.default_rng(0).integers(0, 12, (8, 8))
    np.testing.assert_array_equal(a.step(tokens)[0], b.step(tokens.ravel())[0])


@pytest.mark.parametrize(
    "action, match",
    [
        (np.zeros(64), "integer token ids.*got dtype float64"),
        (np.zeros(64, dtype=bool), "got dtype bool"),
        (np.zeros(63, dtype=int), r"shape \(63,\).*of shape \(64,\)"),
        (np.full(64, 12), "tokens outside the vocabulary.*12.*\\[0, 12\\)"),
        (np.full(64, -1), "tokens outside the vocabulary"),
        ("the answer", "integer token ids"),
    ],
)
def test_bad_actions_name_the_fix(action, match):
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"vocab_size": 0}, ValueError, "vocab_size must be at least 1"),
        ({"seq_len": 0}, ValueError, "seq_len must be at least 1"),
        ({"samples_per_round": 0}, ValueError, "samples_per_round must be at least 1"),
        ({"seq_len": 2.5}, TypeError, "seq_len must be a whole number"),
        ({"rm_loss": "hinge"}, ValueError, r"rm_loss must be one of \['regression', 'bradley-terry'\]"),
        ({"hack_tokens": 13}, ValueError, "hack_tokens must be in"),
        ({"signal_dims": 7}, ValueError, "signal_dims must be in"),
        ({"vocab_size": 50, "seq_len": 12}, ValueError, "choose a smaller vocab_size or seq_len"),
        ({"vocab": 12}, TypeError, r"unknown argument\(s\) \['vocab'\].*vocab_size"),
    ],
)
def test_bad_settings_name_the_fix(kwargs, error, match):
    with pytest.raises(error, match=match):
        gym.make(ID, **kwargs)


def test_the_signature_shows_every_setting():
    import inspect

    params = inspect.signature(TokenRMEnv).parameters
    assert params["rm_loss"].default == "regression" and params["rm_loss"].annotation is str
    assert params["retrain_every"].default == 1


# The loop the game exists to show -------------------------------------------------------------
def _run(learner, seed=0, seeds=64, **env_kwargs):
    env = gym.make_vec(ID, num_envs=seeds, **env_kwargs)
    return agents.make(learner, env, seed=seed).learn(600)


def _collapse(history):
    u = history["true_utility"]
    smooth = np.stack([np.convolve(u[:, i], np.ones(10) / 10, "valid") for i in range(u.shape[1])], 1)
    falls = smooth[-1] <= 0.75 * smooth.max(0)
    prefers = history["rm_margin_to_optimum"][-10:].mean(0) > 0
    return falls, prefers


def test_rlhf_collapses_on_most_of_64_seeds_and_the_rm_ends_preferring_the_collapse():
    """Seeds 0-63, none tuned on: U peaks and falls to at most 3/4 of its peak, and the RM ends
    scoring the policy's output above the optimum (measured: 95% and 100%)."""
    history = _run("rlhf")
    falls, prefers = _collapse(history)
    assert (falls & prefers).mean() >= 0.8
    assert history["true_utility"][-10:].mean() < 0.6 * history["true_utility"][:10].mean()
    assert history["hack_share"][-10:].mean() > 0.7  # the output filled with hack tokens


@pytest.mark.parametrize("learner", ["fpo-practical", "fpo-relaxed"])
def test_fpo_prevents_the_collapse_on_64_seeds(learner):
    history = _run(learner)
    falls, prefers = _collapse(history)
    assert falls.mean() <= 0.1 and prefers.mean() <= 0.2
    assert history["true_utility"][-10:].mean() > 7.0  # of U* = 9.87, from about 4


def test_the_vector_action_space_stays_multidiscrete():
    """A batched ``MultiDiscrete`` stays one (Gymnasium's ``batch_space`` would make it an integer
    ``Box``, which samplers and wrappers read as continuous)."""
    vec = gym.make_vec(ID, num_envs=3)
    assert isinstance(vec.action_space, gym.spaces.MultiDiscrete) and vec.action_space.shape == (3, 64)
    assert (vec.action_space.nvec == 12).all() and isinstance(vec.observation_space, gym.spaces.Box)
