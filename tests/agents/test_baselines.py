"""The baselines (distance anchor, reward cap): their objective gradients against finite
differences, their registration, and what they reduce to."""

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401

torch = pytest.importorskip("torch")

from tests.conftest import central_difference  # noqa: E402


def _objective(game, rm, learner):
    """The baseline's objective as a function of outputs (numpy in, numpy out)."""
    c = learner.config

    def value(y):
        yt = y if game.__class__.__name__.startswith("Linear") else torch.as_tensor(y)
        r = np.asarray(rm.reward(yt) if not hasattr(rm, "params") or hasattr(rm, "w") else rm.reward(yt).detach())
        r = np.asarray(r, dtype=np.float64)
        if hasattr(c, "cap"):
            r = np.minimum(r, c.cap)
        out = r - game.action_cost * (y * y).sum(-1)
        if hasattr(c, "anchor"):
            anchor = np.asarray(learner.anchor_point, dtype=np.float64)
            out = out - c.anchor * ((y - anchor) ** 2).sum(-1)
        return out

    return value


@pytest.mark.parametrize("learner_id, config", [("rlhf-anchor", {"anchor": 0.3}), ("rlhf-cap", {"cap": 1.0})])
@pytest.mark.parametrize("num_envs", [None, 3])
def test_linear_objective_gradient_equals_finite_differences(learner_id, config, num_envs):
    env = (
        gym.make("FPO/LinearRM-v0", dim=6, signal_dims=2)
        if num_envs is None
        else gym.make_vec("FPO/LinearRM-v0", num_envs=num_envs, dim=6, signal_dims=2)
    )
    agent = agents.make(learner_id, env, seed=0, **config)
    agent.learn(5)
    game, rm = env.unwrapped, env.unwrapped.reward_model
    y = np.random.default_rng(1).normal(0.0, 1.0, rm.w.shape)
    expected = central_difference(_objective(game, rm, agent), y)
    np.testing.assert_allclose(agent.objective_grad(y, rm), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("learner_id, config", [("rlhf-anchor", {"anchor": 0.3}), ("rlhf-cap", {"cap": 0.0})])
@pytest.mark.parametrize("num_envs", [None, 2])
def test_neural_objective_gradient_equals_finite_differences(learner_id, config, num_envs):
    if num_envs is None:
        env = gym.make("FPO/NeuralRM-v0", hidden=8)
    else:
        env = gym.make_vec("FPO/NeuralRM-v0", num_envs=num_envs, hidden=8)
    if "cap" in config and num_envs is None:
        config = {"cap": -1.0}  # the single RM scores this output near -0.1: the cap binds
    agent = agents.make(learner_id, env, seed=0, schedule_rounds=20, **config)
    agent.learn(4)
    game = env.unwrapped
    live = game.reward_model
    rm = live.to(torch.float64)
    agent.anchor_point = agent.anchor_point.double() if hasattr(agent, "anchor_point") else None
    y = torch.as_tensor(np.random.default_rng(2).normal(0.0, 1.0, (*live.params.shape[:-1], game.dim)))
    r = rm.reward(y).detach().numpy()
    if "cap" in config:  # vector: one copy above the cap and one below, so both branches are checked
        above = np.atleast_1d(r >= config["cap"])
        assert above.all() if num_envs is None else (above.any() and not above.all()), r
    got = agent.objective_grad(y, rm).numpy()
    expected = central_difference(lambda v: _objective_neural(game, rm, agent, v), y.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)


def _objective_neural(game, rm, agent, y):
    with torch.no_grad():
        r = rm.reward(torch.as_tensor(y)).numpy()
    c = agent.config
    if hasattr(c, "cap"):
        r = np.minimum(r, c.cap)
    out = r - game.action_cost * (y * y).sum(-1)
    if hasattr(c, "anchor"):
        out = out - c.anchor * ((y - agent.anchor_point.numpy()) ** 2).sum(-1)
    return out


def test_the_anchor_at_the_origin_is_the_linear_practical_penalty():
    """The linear RM's practical penalty is ||grad_w r||^2 = ||y||^2: an anchor at y_0 = 0 with
    the same weight is the same learner (a check of both)."""
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=10)
    anchor = agents.make("rlhf-anchor", vec, seed=0, anchor=0.1).learn(100)["true_utility"]
    practical = agents.make("fpo-practical", vec, seed=0).learn(100)["true_utility"]
    np.testing.assert_allclose(anchor, practical, rtol=1e-9)


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_the_anchor_follows_each_copys_start(mode):
    """The anchor is each copy's start, again after its episode ends (the reset options hold for
    the new episode), with the same history whichever autoreset the vector env uses."""
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=2, max_episode_steps=5, autoreset_mode=mode)
    start = np.zeros((2, 50))
    start[1, 0] = 1.0
    agent = agents.make("rlhf-anchor", vec, seed=0)
    agent._obs, _ = vec.reset(seed=0, options={"output": start})
    agent._start(agent._obs, None)
    np.testing.assert_array_equal(agent.anchor_point, start)
    history = agent.learn(7)  # the episodes end after round 5
    np.testing.assert_array_equal(agent.anchor_point, start)
    # Round 6 is the new episode's first: each copy plays its start again, as in round 1.
    np.testing.assert_array_equal(history["signal_norm"][5], history["signal_norm"][0])
    np.testing.assert_array_equal(history["signal_norm"][0], [0.0, 1.0])
    if mode == "SameStep":
        return
    other = gym.make_vec("FPO/LinearRM-v0", num_envs=2, max_episode_steps=5, autoreset_mode="SameStep")
    same = agents.make("rlhf-anchor", other, seed=0)
    same._obs, _ = other.reset(seed=0, options={"output": start})
    same._start(same._obs, None)
    for key, value in same.learn(7).items():
        np.testing.assert_array_equal(history[key], value, err_msg=key)


def test_a_cap_above_every_score_is_rlhf():
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=5)
    capped = agents.make("rlhf-cap", vec, seed=0, cap=1e6).learn(100)["true_utility"]
    rlhf = agents.make("rlhf", vec, seed=0).learn(100)["true_utility"]
    np.testing.assert_array_equal(capped, rlhf)


def test_registered_through_the_plugin_group_and_saved(tmp_path):
    from importlib.metadata import entry_points

    assert "agents.learners.baselines" in [p.value for p in entry_points(group=agents.PLUGIN_GROUP)]
    env = gym.make("FPO/NeuralRM-v0")
    agent = agents.make("rlhf-anchor", env, seed=0, schedule_rounds=10)
    agent.learn(3)
    agent.save(tmp_path / "a.zip")
    more = agent.learn(3)
    loaded = agents.load(tmp_path / "a.zip", gym.make("FPO/NeuralRM-v0"))
    np.testing.assert_array_equal(loaded.learn(3)["true_utility"], more["true_utility"])


@pytest.mark.parametrize(
    "learner_id, config, match",
    [
        ("rlhf-anchor", {"anchor": -1.0}, "anchor must be >= 0"),
        ("rlhf-anchor", {"penalty": "relaxed"}, "penalty must be 'none'"),
        ("rlhf-cap", {"cap": float("inf")}, "cap must be finite"),
    ],
)
def test_bad_config_names_the_fix(learner_id, config, match):
    with pytest.raises(ValueError, match=match):
        agents.make(learner_id, gym.make("FPO/LinearRM-v0"), **config)


def test_the_tuning_script_chooses_on_tuning_seeds_and_reports_defaults_and_choices(tmp_path, monkeypatch):
    """scripts/tune_baselines.py end to end on tiny runs: every budget setting is scored on the
    tuning seeds, the best is chosen, and the report holds each method at default and tuned."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "tune_baselines.py"
    spec = importlib.util.spec_from_file_location("tune_baselines", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    tiny = {
        "FPO/LinearRM-v0": {"rounds": 20, "tune_seeds": 2, "seeds": 3, "batch": 3},
        "FPO/NeuralRM-v0": {"rounds": 6, "tune_seeds": 2, "seeds": 2, "batch": 2, "metric_prefix": "theta_"},
    }
    monkeypatch.setattr(script, "GAMES", tiny)
    script.main(["--out", str(tmp_path / "results"), "--docs", str(tmp_path / "docs")])
    tuning = (tmp_path / "docs" / "tuning.md").read_text()
    assert tuning.count("**") == 2 * len(script.BUDGET) * len(tiny)  # one bold choice per method and game
    board = (tmp_path / "docs" / "leaderboard.md").read_text()
    for method in script.BUDGET:
        assert f"| {method} (default) |" in board and f"| {method} (tuned: " in board
    for method in script.NO_KNOB:
        assert f"| {method} |" in board and f"| {method} | {script.ASSUMES[method]} | none |" in tuning
