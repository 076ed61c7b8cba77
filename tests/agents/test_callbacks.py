"""Callbacks of ``learn`` on every learner of the linear game: what they see, early stopping,
checkpoints and a resumed run equal to an uninterrupted one; the crash points of the fault tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import agents
from agents.common import faults, io
from agents.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    MetricsCallback,
    as_callback,
    checkpoints,
    run_callbacks,
)
from tests.agents import external_algo  # noqa: F401 - registers a user's learners, which must pass too

ROOT = Path(__file__).resolve().parents[2]
LEARNERS = agents.ids("linear")
PPO = {"n_steps": 4, "batch_size": 4, "n_epochs": 1}


def _config(learner):
    return dict(PPO) if learner.startswith("ppo") else {}


def _env(learner, num_envs=None):
    kwargs = dict(agents.spec(learner).env_kwargs)  # an RM ensemble for the ensemble learners
    return (
        gym.make("FPO/LinearRM-v0", **kwargs)
        if num_envs is None
        else gym.make_vec("FPO/LinearRM-v0", num_envs=num_envs, **kwargs)
    )


def _make(learner, seed=0, num_envs=None):
    return agents.make(learner, _env(learner, num_envs), seed=seed, **_config(learner))


def _state(learner_, path):
    learner_.save(path)
    meta, state = io.read(path)
    return meta["num_rounds"], state


def _equal(a, b):
    """Recursive equality of decoded learner states (arrays, tensors, values)."""
    if isinstance(a, dict):
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if hasattr(a, "detach"):
        return bool((a == b).all())
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    return a == b


class Recorder(BaseCallback):
    """Records every call; stops after round ``stop_at`` (if given)."""

    def __init__(self, stop_at=None):
        self.calls, self.rows, self.stop_at = [], [], stop_at

    def on_training_start(self, learner, total_rounds):
        self.calls.append(("start", learner.num_rounds, total_rounds))

    def on_round(self, learner, info):
        self.calls.append(("round", learner.num_rounds))
        self.rows.append(dict(info))
        return self.stop_at is None or learner.num_rounds < self.stop_at

    def on_training_end(self, learner):
        self.calls.append(("end", learner.num_rounds))


@pytest.mark.parametrize("learner", LEARNERS)
def test_callbacks_see_every_round_and_its_history_row(learner):
    agent = _make(learner)
    recorder = Recorder()
    history = agent.learn(8, callback=[recorder, lambda learner_, info: None])
    assert recorder.calls[0] == ("start", 0, 8) and recorder.calls[-1] == ("end", 8)
    assert [c[1] for c in recorder.calls[1:-1]] == list(range(1, 9))
    for key, values in history.items():
        np.testing.assert_array_equal(np.stack([row[key] for row in recorder.rows]), values, err_msg=key)
    # A second call goes on counting.
    agent.learn(4, callback=recorder)
    assert recorder.calls[-6] == ("start", 8, 4) and recorder.calls[-1] == ("end", 12)


@pytest.mark.parametrize("learner", LEARNERS)
def test_a_callback_stops_training_early(learner):
    agent = _make(learner)
    history = agent.learn(12, callback=Recorder(stop_at=5))
    # PPO learns on whole rollouts of n_steps = 4 rounds: it stops at the end of the rollout.
    played = 8 if learner.startswith("ppo") else 5
    assert agent.num_rounds == played and len(history["true_utility"]) == played
    full = _make(learner).learn(played)
    for key in full:
        np.testing.assert_array_equal(history[key], full[key], err_msg=key)


@pytest.mark.parametrize("learner", LEARNERS)
def test_a_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one(learner, tmp_path):
    """An interrupted run (stopped after round 7, past its checkpoint of round 5; PPO, which
    learns on rollouts of 4 rounds, after round 16, past its checkpoint at the end of the
    rollout that passed round 10) resumes from the newest checkpoint on a fresh env; the
    rounds it plays, its metrics files and its final state are those of a run never
    interrupted."""
    rounds, every, stop, checkpointed = (20, 10, 13, 12) if learner.startswith("ppo") else (12, 5, 7, 5)
    full = _make(learner, seed=2)
    history = full.learn(rounds, callback=run_callbacks(tmp_path / "full", every))
    run = tmp_path / "run"
    first = _make(learner, seed=2)
    first.learn(rounds, callback=[run_callbacks(run, every), Recorder(stop_at=stop)])
    assert first.num_rounds > checkpointed
    resumed = agents.Agent.resume(run, _env(learner))
    start = resumed.num_rounds
    assert type(resumed) is type(full) and start == checkpointed
    rest = resumed.learn(rounds - start, callback=run_callbacks(run, every))
    for key in history:
        np.testing.assert_array_equal(rest[key], history[key][start:], err_msg=key)
    for name in ("metrics.jsonl", "metrics.csv"):
        assert (run / name).read_text() == (tmp_path / "full" / name).read_text(), name
    assert [p.name for p in agents.Agent.checkpoints(run)] == [p.name for p in agents.Agent.checkpoints(tmp_path / "full")]
    a, b = _state(resumed, tmp_path / "a.fpo"), _state(full, tmp_path / "b.fpo")
    assert a[0] == b[0] == rounds and _equal(a[1], b[1])


def test_metrics_of_a_vector_env_hold_one_value_per_copy_and_a_resumed_run_writes_each_round_once(tmp_path):
    agent = _make("rlhf", num_envs=3)
    history = agent.learn(6, callback=MetricsCallback(tmp_path))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["round"] for row in rows] == list(range(6))
    np.testing.assert_allclose([row["true_utility"] for row in rows], history["true_utility"])
    assert len(rows[0]["true_utility"]) == 3
    # A learner resumed at round 4 drops the rows after it as it starts, then writes its own.
    four = _make("rlhf", num_envs=3)
    four.learn(4)
    four.learn(2, callback=MetricsCallback(tmp_path))
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == rows
    with open(tmp_path / "metrics.csv") as fh:
        assert len(fh.read().splitlines()) == 1 + 6


def test_checkpoints_are_whole_files_and_only_the_newest_are_kept(tmp_path):
    agent = _make("fpo-relaxed")
    agent.learn(9, callback=CheckpointCallback(2, tmp_path, keep=3))
    assert [p.name for p in checkpoints(tmp_path)] == ["round_000004.fpo", "round_000006.fpo", "round_000008.fpo"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round_000004.fpo", "round_000006.fpo", "round_000008.fpo"]
    loaded = agents.load(checkpoints(tmp_path)[-1], _env("fpo-relaxed"))
    assert loaded.num_rounds == 8
    with pytest.raises(ValueError, match="save_freq must be a whole number of rounds >= 1"):
        CheckpointCallback(0, tmp_path)
    with pytest.raises(ValueError, match="keep must be"):
        CheckpointCallback(5, tmp_path, keep=0)


def test_resume_without_a_checkpoint_names_the_folder_and_the_way_to_write_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint under .*checkpoints.*run_callbacks"):
        agents.Agent.resume(tmp_path, _env("rlhf"))


def test_what_learn_takes_as_a_callback():
    assert isinstance(as_callback(None), CallbackList) and not as_callback(None).callbacks
    nested = as_callback([Recorder(), [Recorder(), None], lambda learner, info: True])
    assert len(list(nested)) == 3
    with pytest.raises(TypeError, match="callback must be"):
        _make("rlhf").learn(2, callback="checkpoint")


def test_the_progress_bar_is_a_callback(capsys):
    pytest.importorskip("tqdm")
    history = _make("rlhf").learn(3, progress_bar=True)
    assert len(history["true_utility"]) == 3 and "proxy=" in capsys.readouterr().err


def test_a_family_defining_a_retired_hook_is_told_the_new_one():
    from agents.families.gradient import GradientLeader

    with pytest.raises(TypeError, match=r"defines _observe.*use _update\(obs, info\)"):

        class Old(GradientLeader):
            def _observe(self, obs):
                pass


@pytest.mark.parametrize("value", ["x", "-1", "1.5"])
def test_a_crash_point_that_is_not_a_round_count_is_an_error_naming_it(monkeypatch, value):
    monkeypatch.setenv(faults.CRASH_AT_ROUND, value)
    with pytest.raises(ValueError, match="FPO_CRASH_AT_ROUND must be a whole number"):
        _make("rlhf").learn(1)


def test_a_crash_point_ends_the_process_after_the_rounds_callbacks(tmp_path):
    """``FPO_CRASH_AT_ROUND=7`` ends a run after round 7, its metrics row written; the resumed run
    (from the checkpoint of round 5, the variable unset) equals an uninterrupted one."""
    script = (
        "import sys, gymnasium as gym, agents\n"
        "from agents.common.callbacks import run_callbacks\n"
        "agent = agents.make('fpo-relaxed', gym.make('FPO/LinearRM-v0'), seed=1)\n"
        "agent.learn(12, callback=run_callbacks(sys.argv[1], 5))\n"
        "print('not reached')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (faults.CRASH_AT_ROUND, faults.CRASH_AFTER_RUNS)}
    env.update(PYTHONPATH=str(ROOT), FPO_CRASH_AT_ROUND="7")
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", script, str(run)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == faults.CRASH_EXIT_CODE and "not reached" not in result.stdout, result.stderr
    assert "FPO_CRASH_AT_ROUND=7" in result.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 7
    assert [p.name for p in agents.Agent.checkpoints(run)] == ["round_000005.fpo"]
    resumed = agents.Agent.resume(run, gym.make("FPO/LinearRM-v0"))
    resumed.learn(12 - resumed.num_rounds, callback=run_callbacks(run, 5))
    full = agents.make("fpo-relaxed", gym.make("FPO/LinearRM-v0"), seed=1)
    full.learn(12, callback=run_callbacks(tmp_path / "full", 5))
    assert (run / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()
    assert _equal(_state(resumed, tmp_path / "a.fpo")[1], _state(full, tmp_path / "b.fpo")[1])


@pytest.mark.parametrize("learner", ["rlhf", "perfgd"])
def test_a_gaussian_run_resumed_mid_call_keeps_the_schedule_of_the_call(learner, tmp_path):
    """The Gaussian family steps its policy right before each round, on the schedule of the
    call that plays it (``schedule_rounds`` unset: the call's end); resumed from a checkpoint
    taken inside a call, ``learn`` of the remaining rounds has the same end and replays the
    same rounds."""
    pytest.importorskip("torch")

    def make():
        return agents.make(learner, gym.make("FPO/NeuralRM-v0"), seed=3, inner_steps=3)

    full = make()
    history = full.learn(9, callback=run_callbacks(tmp_path / "full", 4))
    make().learn(9, callback=[run_callbacks(tmp_path / "run", 4), Recorder(stop_at=6)])
    resumed = agents.Agent.resume(tmp_path / "run", gym.make("FPO/NeuralRM-v0"))
    assert resumed.num_rounds == 4
    rest = resumed.learn(5, callback=run_callbacks(tmp_path / "run", 4))
    assert resumed.schedule_rounds == full.schedule_rounds == 9
    for key in history:
        np.testing.assert_array_equal(rest[key], history[key][4:], err_msg=key)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()
    assert _equal(_state(resumed, tmp_path / "a.fpo")[1], _state(full, tmp_path / "b.fpo")[1])
