"""One contract, run over every registered learner on every game it supports: seeded
determinism, save/load continuing identically, ``predict`` leaving the learner unchanged,
unknown config keys, and vector env == single envs where the copies are independent."""

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs
from agents.common import io
from tests.agents import external_algo  # noqa: F401 - registers a user's learners, which must pass too

ENV_IDS = {game: ids[0] for game, (_, ids) in fpo_envs.GAMES.items()}  # each game by its first env id
ROUNDS = {"linear": 6, "neural": 4, "text": 2, "token": 6}
# Small settings so each learner finishes its rounds in seconds.
FAST = {
    "neural": {"schedule_rounds": 20, "inner_steps": 3},
    "text": {"n_candidates": 2, "max_new_tokens": 6, "min_new_tokens": 1, "grad_accum": 2},
    "ppo": {"n_steps": 4, "batch_size": 4, "n_epochs": 1},
}
CASES = [(i, g) for i in agents.ids() for g in agents.spec(i).games]


def _config(learner, game):
    config = dict(FAST.get(game, {}))
    if learner.startswith("ppo"):
        config = dict(FAST["ppo"])
    return config


@pytest.fixture
def make_env(request):
    # The env a learner registered as needing (an RM ensemble), as the benchmark makes it.
    callspec = getattr(request.node, "callspec", None)
    learner = callspec.params.get("learner") if callspec else None
    needs = dict(agents.spec(learner).env_kwargs) if learner else {}

    def make(game, num_envs=None, **extra):
        kwargs = request.getfixturevalue("tiny_text") if game == "text" else dict(needs)
        kwargs.update(extra)
        if game != "linear":
            pytest.importorskip("torch")
        if num_envs is None:
            return gym.make(ENV_IDS[game], **kwargs)
        return gym.make_vec(ENV_IDS[game], num_envs=num_envs, **kwargs)

    return make


def _assert_same(a, b):
    assert set(a) == set(b)
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.dtype.kind in "fc":
            np.testing.assert_array_equal(x, y, err_msg=key)
        else:
            assert x.tolist() == y.tolist(), key


def _equal_state(a, b):
    """Recursive equality of decoded learner states (arrays, tensors, values)."""
    if isinstance(a, dict):
        return set(a) == set(b) and all(_equal_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal_state(x, y) for x, y in zip(a, b))
    if hasattr(a, "detach"):
        return bool((a == b).all())
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    return a == b


def test_every_learner_runs_on_some_game():
    assert CASES and {g for _, g in CASES} == set(fpo_envs.GAMES)
    assert {"rlhf", "fpo-practical", "fpo-relaxed", "ppo", "abs-fpo", "momentum-fpo"} <= set(agents.ids())


@pytest.mark.parametrize("learner, game", CASES)
def test_same_seed_same_history(learner, game, make_env):
    config = _config(learner, game)
    first = agents.make(learner, make_env(game), seed=3, **config).learn(ROUNDS[game])
    again = agents.make(learner, make_env(game), seed=3, **config).learn(ROUNDS[game])
    _assert_same(first, again)
    assert set(fpo_envs.INFO_KEYS) <= set(first)
    if game != "text":  # the text game's first rounds can pick the same words for two seeds
        other = agents.make(learner, make_env(game), seed=4, **config).learn(ROUNDS[game])
        assert not np.array_equal(first["true_utility"], other["true_utility"])


@pytest.mark.parametrize("learner, game", CASES)
def test_save_and_load_continue_identically(learner, game, make_env, tmp_path):
    config = _config(learner, game)
    agent = agents.make(learner, make_env(game), seed=5, **config)
    agent.learn(ROUNDS[game])
    agent.save(tmp_path / "learner.zip")
    rest = agent.learn(ROUNDS[game])
    loaded = agents.load(tmp_path / "learner.zip", make_env(game))
    assert type(loaded) is type(agent) and loaded.id == learner and loaded.config == agent.config
    _assert_same(loaded.learn(ROUNDS[game]), rest)


@pytest.mark.parametrize("learner, game", CASES)
def test_predict_leaves_the_learner_unchanged(learner, game, make_env, tmp_path):
    agent = agents.make(learner, make_env(game), seed=0, **_config(learner, game))
    agent.learn(ROUNDS[game])
    agent.save(tmp_path / "before.zip")
    action, state = agent.predict(agent._obs)
    assert state is None and agent.env.action_space.contains(action)
    agent.predict(agent._obs, deterministic=False)
    agent.save(tmp_path / "after.zip")
    assert _equal_state(io.read(tmp_path / "before.zip")[1], io.read(tmp_path / "after.zip")[1])


@pytest.mark.parametrize("learner, game", CASES)
def test_unknown_config_key_is_a_type_error(learner, game, make_env):
    with pytest.raises(TypeError, match="unknown config key.*'gammma'"):
        agents.make(learner, make_env(game), gammma=0.1)


@pytest.mark.parametrize("learner, game", CASES)
def test_vector_env_equals_single_envs_where_the_family_says_so(learner, game, make_env):
    """Copy i of a vector env seeded s is the single env and learner seeded s + i, for the
    families that declare it; the others still run on a vector env with per-copy histories."""
    if game == "text":
        with pytest.raises(TypeError, match="holds text-game envs one per copy; a learner takes a single env"):
            agents.make(learner, make_env(game, num_envs=2))
        return
    config = _config(learner, game)
    agent = agents.make(learner, make_env(game, num_envs=3), seed=7, **config)
    vec = agent.learn(ROUNDS[game])
    assert vec["true_utility"].shape[1:] == (3,)
    if not agent.copies_match_single_envs:
        return
    for i in range(3):
        single = agents.make(learner, make_env(game), seed=7 + i, **config).learn(ROUNDS[game])
        np.testing.assert_allclose(vec["true_utility"][:, i], single["true_utility"], rtol=1e-10)


@pytest.mark.parametrize("learner, game", [(i, g) for i, g in CASES if g != "text"])
def test_history_is_the_same_in_every_autoreset_mode(learner, game, make_env):
    """A vector run that crosses episode ends (a time limit of 2 rounds) gives the same history
    whether the env resets an ended copy on the next step (Gymnasium's default), in the same
    step, or never: the learner resets ended copies itself, so no reset step is recorded as a
    round played."""
    config = _config(learner, game)
    histories = {}
    for mode in ("NextStep", "SameStep", "Disabled"):
        env = make_env(game, num_envs=2, max_episode_steps=2, autoreset_mode=mode)
        histories[mode] = agents.make(learner, env, seed=1, **config).learn(ROUNDS[game] + 1)
    assert len(histories["NextStep"]["true_utility"]) >= 5  # two episode ends at least
    assert np.isfinite(histories["NextStep"]["true_utility"]).all()  # no blank reset row
    _assert_same(histories["NextStep"], histories["SameStep"])
    _assert_same(histories["Disabled"], histories["SameStep"])


@pytest.mark.parametrize("learner, game", [(i, g) for i, g in CASES if g in ("linear", "neural")])
def test_predict_on_an_rm_ensemble_env(learner, game, make_env):
    """``predict`` works on the RM-ensemble env of each vector game (it once rebuilt an MLP RM
    by hand and failed there), and gives the action the env takes."""
    env = make_env(game, num_envs=2, rm_ensemble=3)
    agent = agents.make(learner, env, seed=0, **_config(learner, game))
    agent.learn(ROUNDS[game])
    action, _ = agent.predict(agent._obs)
    again, _ = agent.predict(agent._obs)
    assert np.shape(action) == env.action_space.shape and np.all(np.isfinite(action))
    np.testing.assert_array_equal(action, again)
    env.step(action)
