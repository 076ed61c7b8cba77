"""Bad input is a clear error that names the fix: registering over a built-in, loading a
learner a script registered, config values, seeds, ``learn`` and ``predict`` arguments, and
the ``fpo-animate`` command (one argparse line, exit 2, no traceback)."""

import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
import typing
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401
from agents.common.config import ConfigError
from agents.common.objectives import PENALTIES
from agents.common.registration import _load_entry_point, temporary_registrations
from tests.agents import external_algo
from tests.agents.test_learner_contract import CASES, _config, make_env  # noqa: F401 - make_env is a fixture

ROOT = Path(__file__).resolve().parents[2]


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# Registration ------------------------------------------------------------------------------
def test_a_builtin_penalty_is_replaced_only_with_override():
    builtin = PENALTIES["relaxed"]
    env = gym.make("FPO/LinearRM-v0")
    before = agents.make("fpo-relaxed", env, seed=0).learn(300)["true_utility"][-1]

    def signless(z):
        return abs(z.reward - z.utility) * z.grad_sqnorm

    with pytest.raises(ValueError, match=r"'relaxed' is a built-in penalty.*another name, or pass override=True"):
        agents.register_penalty("relaxed", signless)
    assert PENALTIES["relaxed"] is builtin
    with temporary_registrations():
        agents.register_penalty("relaxed", signless, override=True)
        agent = agents.make("fpo-relaxed", gym.make("FPO/LinearRM-v0"), seed=0)
        assert agent.objective.penalty.fn is signless and agent.objective.penalty.grad is None
        assert agent.learn(300)["true_utility"][-1] != before
    assert PENALTIES["relaxed"] is builtin
    assert agents.make("fpo-relaxed", gym.make("FPO/LinearRM-v0"), seed=0).learn(300)["true_utility"][-1] == before
    with pytest.raises(ValueError, match="built-in penalty"):
        agents.register_penalty("practical", signless)


def test_a_builtin_learner_is_replaced_only_with_override():
    builtin = agents.registry["rlhf"]
    for id in ("rlhf", "fpo-relaxed", "ppo", "rgd", "fpo-exact", "rlhf-anchor"):
        with pytest.raises(ValueError, match=rf"'{id}' is a built-in learner \(registered by agents.*pass override=True"):
            agents.register(id, kwargs={"penalty": "practical"}, games=("linear",))
    assert agents.registry["rlhf"] is builtin
    with temporary_registrations():
        mine = agents.register("rlhf", kwargs={"penalty": "practical", "gamma": 0.3}, games=("linear",), override=True)
        assert agents.spec("rlhf") is mine and agents.make("rlhf", gym.make("FPO/LinearRM-v0")).config.gamma == 0.3
        with pytest.raises(ValueError, match="'rlhf' is a built-in learner and stays registered"):
            agents.unregister("rlhf")
    assert agents.registry["rlhf"] is builtin


def test_a_builtin_plugins_id_is_taken_before_a_users_module_registers():
    """The package's own plugins (fpo-exact, the baselines, ...) load on first use: a user who
    registers before anything used the registry still cannot take their ids silently."""
    code = "import agents\nagents.register('rgd', kwargs={'penalty': 'practical'}, games=('linear',))\n"
    result = _python(["-c", code], ROOT)
    assert result.returncode != 0 and "'rgd' is a built-in learner (registered by agents.learners.performative)" in result.stderr


def test_registering_the_same_definitions_again_is_a_no_op_and_another_under_a_users_id_warns():
    path = Path(external_algo.__file__)
    try:
        with temporary_registrations():
            # The same file imported again under another module name (as a plugin loader or a
            # second sys.path entry may): every registration is the same definition, silently.
            module_spec = importlib.util.spec_from_file_location("external_algo_again", path)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                again = sys.modules["external_algo_again"] = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(again)
                agents.register_penalty("relaxed", PENALTIES["relaxed"].fn, PENALTIES["relaxed"].grad)
            assert agents.spec("momentum-fpo").source == str(path)
            with pytest.warns(UserWarning, match="replacing the learner 'abs-fpo' registered by external_algo_again"):
                agents.register("abs-fpo", kwargs={"penalty": "practical"}, games=("linear",))
            with pytest.warns(UserWarning, match="replacing the penalty 'abs-relaxed'"):
                agents.register_penalty("abs-relaxed", lambda z: z.grad_sqnorm)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                agents.register("abs-fpo", kwargs={"penalty": "relaxed"}, games=("linear",), override=True)
    finally:
        sys.modules.pop("external_algo_again", None)


# A learner a script registered ---------------------------------------------------------------
SCRIPT = """
import gymnasium as gym
import agents, fpo_envs

agents.register("script-fpo", kwargs={"penalty": "practical", "gamma": 0.2}, games=("linear",))

if __name__ == "__main__":
    agent = agents.make("script-fpo", gym.make("FPO/LinearRM-v0"), seed=0)
    agent.learn(2)
    agent.save("script.zip")
"""


def test_a_learner_saved_by_a_script_names_the_script_and_loads_once_it_is_run(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    assert _python(["train.py"], tmp_path).returncode == 0
    script = str((tmp_path / "train.py").resolve())
    with zipfile.ZipFile(tmp_path / "script.zip") as archive:
        header = json.loads(archive.read("learner.json"))
    assert (header["module"], header["source"]) == ("__main__", script)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    load = "import gymnasium as gym, agents, fpo_envs\nagents.load({path!r}, gym.make('FPO/LinearRM-v0'))\n"
    result = _python(["-c", load.format(path=str(tmp_path / "script.zip"))], elsewhere)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert f"'script-fpo', which is not registered: it was registered by the script {script} (run as __main__)" in message
    assert f"runpy.run_path({script!r})" in message and f"import train with {tmp_path.resolve()} on sys.path" in message
    # Following the hint: the script's top level registers it, its training is skipped.
    follow = f"import runpy\nrunpy.run_path({script!r})\n" + load.format(path=str(tmp_path / "script.zip"))
    follow += "agent = agents.load({path!r}, gym.make('FPO/LinearRM-v0'))\nprint(agent.id, agent.num_rounds)\n"
    result = _python(["-c", follow.format(path=str(tmp_path / "script.zip"))], elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["script-fpo", "2"]


def test_a_script_run_with_dash_m_is_saved_as_its_module(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    assert _python(["-m", "train"], tmp_path).returncode == 0
    with zipfile.ZipFile(tmp_path / "script.zip") as archive:
        assert json.loads(archive.read("learner.json"))["module"] == "train"
    (tmp_path / "elsewhere").mkdir()
    saved = str(tmp_path / "script.zip")
    code = f"import gymnasium as gym, agents, fpo_envs\nagents.load({saved!r}, gym.make('FPO/LinearRM-v0'))"
    result = _python(["-c", code], tmp_path / "elsewhere")
    assert "which is not registered: import train (the module that registered it) first" in result.stderr


# Config values, seeds, learn and predict, over every learner and game -----------------------------
def _wrong_value(hint):
    """A value of the wrong type for a field annotated ``hint``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return [3] if args[0] is str else ["x"]
    base = args[0] if args else hint
    return {bool: "yes", int: 2.5, float: "x", str: 3}[base]


@pytest.mark.parametrize("learner, game", CASES)
def test_every_config_field_rejects_a_value_of_the_wrong_type_naming_it(learner, game):
    family = _load_entry_point(agents.spec(learner).entry_points[game], learner)
    hints = typing.get_type_hints(family.config_cls)
    fields = dataclasses.fields(family.config_cls)
    assert fields
    for field in fields:
        value = _wrong_value(hints[field.name])
        name = rf"{family.config_cls.__name__}\.{field.name}"
        with pytest.raises(ConfigError, match=rf"^{name} must be .*, got {value!r}".replace("[", r"\[")):
            agents.common.registration.check_config(learner, game, {field.name: value})


@pytest.mark.parametrize(
    "learner, game, config, match",
    [
        ("fpo-relaxed", "linear", {"lr": "x"}, r"GradientConfig.lr must be a number \(float\), got 'x' \(str\)"),
        ("fpo-relaxed", "linear", {"oracle_gradient": "yes"}, "GradientConfig.oracle_gradient must be True or False, got 'yes'"),
        ("fpo-relaxed", "linear", {"lr": float("inf")}, "GradientConfig.lr must be finite, got inf"),
        ("fpo-relaxed", "linear", {"lr": -1}, "lr and fd_eps must be positive, got lr=-1"),
        ("fpo-relaxed", "neural", {"inner_steps": 0}, "inner_steps must be at least 1, got 0"),
        ("ppo", "linear", {"discount": 2.0}, r"discount must be in \[0, 1\], got 2.0"),
        ("ppo", "linear", {"net_arch": [64, 0]}, "net_arch's layer widths must be at least 1"),
        ("rlhf", "text", {"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
        ("rlhf", "text", {"keep_checkpoints": 0}, "keep_checkpoints must be at least 1, got 0"),
        ("rlhf", "text", {"checkpoint_every": 5}, "checkpoint_every=5 needs a run_dir"),
    ],
)
def test_config_ranges_name_the_field_and_the_value(learner, game, config, match):
    with pytest.raises(ValueError, match=match):
        agents.common.registration.check_config(learner, game, config)


def test_a_float_field_takes_an_int():
    assert agents.make("fpo-relaxed", gym.make("FPO/LinearRM-v0"), lr=1).config.lr == 1


@pytest.mark.parametrize("learner, game", CASES)
def test_seed_learn_and_predict_arguments_are_checked(learner, game, make_env):  # noqa: F811 - the imported fixture
    env = make_env(game)
    for seed in (-1, 2.5, "0", True):
        with pytest.raises(ValueError, match=rf"seed must be a non-negative integer or None, got {seed!r}"):
            agents.make(learner, env, seed=seed, **_config(learner, game))
    agent = agents.make(learner, env, seed=np.int64(0), **_config(learner, game))
    for rounds in ("10", 2.5, True, None):
        with pytest.raises(TypeError, match=rf"total_rounds must be a non-negative whole number \(int\), got {rounds!r}"):
            agent.learn(rounds)
    with pytest.raises(ValueError, match="total_rounds must be a non-negative whole number"):
        agent.learn(-1)
    assert agent.num_rounds == 0
    if game == "text":
        with pytest.raises(
            ValueError, match=r"predict takes an observation of its env, a dict with keys \['prompt', 'reference'\]"
        ):
            agent.predict(np.zeros(3))
    else:
        expected = env.observation_space.shape
        with pytest.raises(
            ValueError,
            match=rf"{re.escape(learner)}.predict takes an observation of shape {re.escape(str(expected))}.*got shape \(3,\)",
        ):
            agent.predict(np.zeros(3))


def test_predict_on_a_vector_env_names_the_batched_shape():
    agent = agents.make("rlhf", gym.make_vec("FPO/LinearRM-v0", num_envs=2), seed=0)
    agent.learn(1)
    with pytest.raises(
        ValueError, match=r"shape \(2, 100\) \(its env's observation_space, 2 copies of a vector env\), got shape \(100,\)"
    ):
        agent.predict(agent._obs[0])
    assert agent.predict(agent._obs)[0].shape == (2, 50)


# fpo-animate -----------------------------------------------------------------------------------
def _cli_error(main, argv, capsys) -> str:
    """The one error line a command prints for ``argv``, after asserting it exits 2 without a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()  # argparse's usage, then the one error line
    assert lines[-1].startswith(("fpo-animate: error: ", "fpo-bench run: error: ")) and err.count("error:") == 1
    return lines[-1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learners", "no-such-learner"], "unknown learner 'no-such-learner'; registered for the linear game"),
        (["--learners", "no_such_module:x"], "the module 'no_such_module' does not import"),
        (["--rounds", "0"], "argument --rounds: must be at least 1, got 0"),
        (["--frames", "0"], "argument --frames: must be at least 2, got 0"),
        (["--frames", "x"], "argument --frames: must be a whole number >= 2, got 'x'"),
        (["--seed", "-1"], "argument --seed: must be at least 0, got -1"),
        (["--fps", "0"], "argument --fps: must be at least 1, got 0"),
        (["--rounds", "3", "--frames", "5"], r"rounds (3) must be at least frames (5)"),
        (["--out", "a.png"], "must end in .gif"),
    ],
)
def test_animate_command_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    from agents.tools import animate

    monkeypatch.chdir(tmp_path)
    line = _cli_error(animate.main, ["linear", "--no-mp4", *argv], capsys)
    assert message in line
    assert not any(tmp_path.iterdir())  # nothing was written


def test_animate_does_not_create_a_missing_folder(capsys, tmp_path):
    pytest.importorskip("PIL")
    from agents.tools import animate

    out = tmp_path / "missing" / "dir" / "a.gif"
    line = _cli_error(animate.main, ["linear", "--out", str(out), "--no-mp4"], capsys)
    assert f"the folder {out.parent} does not exist: create it first" in line
    with pytest.raises(ValueError, match="does not exist: create it first"):
        animate.write_gif([np.zeros((4, 4, 3), np.uint8)] * 2, out)
    assert not (tmp_path / "missing").exists()
    line = _cli_error(animate.main, ["linear", "--out", str(tmp_path), "--no-mp4"], capsys)
    assert "must end in .gif" in line


USER_ALGO = textwrap.dedent(
    """
    import agents

    agents.register("cwd-fpo", kwargs={"penalty": "practical", "gamma": 0.3}, games=("linear", "neural"))
    """
)


@pytest.fixture
def module_in_cwd(tmp_path, monkeypatch):
    """A user's module ``cwd_algo.py`` in the working folder (not otherwise on sys.path)."""
    (tmp_path / "cwd_algo.py").write_text(USER_ALGO)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    with temporary_registrations():
        yield tmp_path
    sys.modules.pop("cwd_algo", None)


def test_both_commands_import_module_colon_id_from_the_working_folder(module_in_cwd, capsys):
    pytest.importorskip("PIL")
    pytest.importorskip("rliable")
    from agents.bench import cli
    from agents.tools import animate

    with pytest.raises(ImportError, match="the module 'cwd_algo' does not import"):
        agents.spec("cwd_algo:cwd-fpo")  # the library does not look in the working folder
    animate.main(
        ["linear", "--learners", "cwd_algo:cwd-fpo", "rlhf", "--rounds", "4", "--frames", "2", "--out", "a.gif", "--no-mp4"]
    )
    assert "linear: 2 frames -> a.gif" in capsys.readouterr().out and (module_in_cwd / "a.gif").exists()
    sys.modules.pop("cwd_algo")
    agents.unregister("cwd-fpo")
    suite = module_in_cwd / "tiny.toml"
    suite.write_text('[[games]]\nid = "FPO/LinearRM-v0"\nrounds = 3\nseeds = 2\n\n[[learners]]\nid = "rlhf"\n')
    argv = ["run", str(suite), "--learner", "cwd_algo:cwd-fpo", "--out", "out", "--backend", "serial", "--no-plots"]
    assert cli.main([*argv, "--reps", "20"]) == 0
    assert "| cwd-fpo | 2 |" in capsys.readouterr().out
