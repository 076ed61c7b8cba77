"""The learner registry: external modules, ``module:id``, plugins, objectives, the save format."""

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401
from agents.common import io

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    path = [str(ROOT)] + ([str(extra_path)] if extra_path else [])
    env = {"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


USER_MODULE = """
import agents


def abs_relaxed(z):
    return abs(z.reward - z.utility) * (z.grad_params * z.grad_params).sum(-1)


agents.register_penalty("abs-relaxed", abs_relaxed)
agents.register("abs-fpo", kwargs={"penalty": "abs-relaxed"}, games=("linear", "neural"))
"""


def test_a_learner_from_a_users_module_is_made_saved_and_loaded_on_both_games(tmp_path):
    (tmp_path / "my_algo.py").write_text(USER_MODULE)
    result = _python(
        """
        import gymnasium as gym, numpy as np, torch
        import agents, fpo_envs
        torch.set_num_threads(1)
        for env_id, config in [("FPO/LinearRM-v0", {}), ("FPO/NeuralRM-v0", {"schedule_rounds": 10})]:
            for vector in (False, True):
                make = (lambda: gym.make_vec(env_id, num_envs=2)) if vector else (lambda: gym.make(env_id))
                agent = agents.make("my_algo:abs-fpo", make(), seed=0, **config)
                assert agent.id == "abs-fpo" and agent.config.penalty == "abs-relaxed"
                agent.learn(4)
                agent.save(f"{env_id[4:10]}-{vector}.zip")
                rest = agent.learn(3)["true_utility"]
                again = agents.load(f"{env_id[4:10]}-{vector}.zip", make()).learn(3)["true_utility"]
                np.testing.assert_array_equal(rest, again)
        print("ok")
    """,
        tmp_path,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    # A fresh process that has not imported the module is told which module to import.
    result = _python(
        """
        import gymnasium as gym, agents, fpo_envs
        agents.load("Linear-False.zip", gym.make("FPO/LinearRM-v0"))
    """,
        tmp_path,
    )
    assert result.returncode != 0
    assert "'abs-fpo', which is not registered: import my_algo" in result.stderr


def test_an_installed_package_registers_through_the_entry_point_group(tmp_path):
    site = tmp_path / "site"
    (site / "fpo_plugin_demo").mkdir(parents=True)
    (site / "fpo_plugin_demo" / "__init__.py").write_text(
        "import agents\n\ndef register():\n    agents.register('plugin-fpo', kwargs={'penalty': 'practical', 'gamma': 0.5})\n"
    )
    dist = site / "fpo_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fpo-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fpo_envs.learners]\ndemo = fpo_plugin_demo:register\n")
    result = _python(
        """
        import gymnasium as gym, agents, fpo_envs
        assert "plugin-fpo" in agents.ids("linear")
        print(agents.make("plugin-fpo", gym.make("FPO/LinearRM-v0")).config.gamma)
    """,
        tmp_path,
        site,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.5"


def test_registry_errors_name_the_fix():
    env = gym.make("FPO/LinearRM-v0")
    with pytest.raises(ImportError, match="the module 'no_such_module' does not import"):
        agents.make("no_such_module:my-algo", env)
    agents.register("broken", "no_such_module:Learner", games=("linear",))
    try:
        with pytest.raises(ImportError, match="learner 'broken': its entry point 'no_such_module:Learner' does not load"):
            agents.make("broken", env)
    finally:
        agents.unregister("broken")
    with pytest.raises(ValueError, match="unknown game"):
        agents.register("x", kwargs={}, games=("chess",))
    with pytest.raises(ValueError, match="name the games"):
        agents.register("x", "my.module:Learner")
    with pytest.raises(ValueError, match="without ':'"):
        agents.register("a:b")
    assert "x" not in agents.registry and "fpo-relaxed" in agents.ids("text")
    assert set(agents.ids("linear")) >= {"rlhf", "fpo-practical", "fpo-relaxed", "ppo", "ppo-fpo-practical", "ppo-fpo-relaxed"}
    assert "ppo" not in agents.ids("text")


def test_a_user_penalty_works_on_numpy_and_torch_and_its_gradients_are_right():
    torch = pytest.importorskip("torch")
    name = "test-abs-relaxed"
    agents.register_penalty(name, lambda z: abs(z.reward - z.utility) * (z.grad_params * z.grad_params).sum(-1))
    try:
        # Linear: no registered gradient, so the leader takes central differences of the penalty.
        env = gym.make_vec("FPO/LinearRM-v0", num_envs=2)
        env.reset(seed=0)
        rm = env.unwrapped.reward_model
        y = np.random.default_rng(0).normal(0.5, 0.5, (2, 50))
        for oracle_gradient in (True, False):
            agent = agents.make("rlhf", env, penalty=name, gamma=0.3, oracle_gradient=oracle_gradient)
            u = None if oracle_gradient else env.unwrapped.oracle.utility(y)
            expected = np.zeros_like(y)
            for i in range(50):
                e = np.zeros(50)
                e[i] = 1e-6
                expected[:, i] = (agent.objective.value(y + e, rm, u) - agent.objective.value(y - e, rm, u)) / 2e-6
            np.testing.assert_allclose(agent.objective_grad(y, rm), expected, rtol=1e-5, atol=1e-6)
        # Neural: the same function on torch tensors, differentiated by autograd.
        env = gym.make("FPO/NeuralRM-v0")
        env.reset(seed=0)
        rm = env.unwrapped.reward_model.replace(env.unwrapped.reward_model.params.double())
        agent = agents.make("rlhf", env, penalty=name, gamma=0.01, oracle_gradient=True)
        y = torch.as_tensor(np.random.default_rng(1).normal(1.0, 0.5, 10))
        expected = torch.zeros(10, dtype=torch.float64)
        for i in range(10):
            e = torch.zeros(10, dtype=torch.float64)
            e[i] = 1e-6
            expected[i] = (agent.objective.value(y + e, rm) - agent.objective.value(y - e, rm)) / 2e-6
        torch.testing.assert_close(agent.objective_grad(y, rm), expected, rtol=1e-6, atol=1e-8)
    finally:
        agents.unregister_penalty(name)


def test_the_builtin_analytic_penalty_gradients_match_their_central_differences():
    env = gym.make_vec("FPO/LinearRM-v0", num_envs=2)
    env.reset(seed=3)
    rm = env.unwrapped.reward_model
    y = np.random.default_rng(3).normal(0.5, 0.5, (2, 50))
    for penalty in ("practical", "relaxed"):
        for oracle_gradient in (True, False):
            objective = agents.Objective(env.unwrapped, penalty, 0.1, oracle_gradient)
            analytic = objective.grad_numpy(y, rm)
            numeric = objective.game.proxy_grad(y, rm.grad_input(y)) - 0.1 * objective._central_difference(y, rm, 1e-6)
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)


def test_the_learner_file_is_one_zip_without_pickles(tmp_path):
    torch = pytest.importorskip("torch")
    agent = agents.make("fpo-relaxed", gym.make("FPO/NeuralRM-v0"), seed=0, schedule_rounds=5)
    agent.learn(2)
    agent.save(tmp_path / "agent.zip")
    with zipfile.ZipFile(tmp_path / "agent.zip") as archive:
        assert set(archive.namelist()) == {"learner.json", "arrays.npz", "tensors.pt"}
        header = json.loads(archive.read("learner.json"))
    assert (header["id"], header["module"], header["num_rounds"]) == ("fpo-relaxed", "agents", 2)
    assert header["config"]["gamma"] == 0.005
    meta, state = io.read(tmp_path / "agent.zip")
    assert isinstance(state["learner"]["theta"], torch.Tensor)
    (tmp_path / "not.zip").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an fpo-envs learner file"):
        agents.load(tmp_path / "not.zip", gym.make("FPO/NeuralRM-v0"))
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as archive:
        archive.writestr("learner.json", json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not an fpo-envs learner file"):
        agents.load(tmp_path / "foreign.zip", gym.make("FPO/NeuralRM-v0"))
    with pytest.raises(TypeError, match="holds a GaussianLeader, not a GradientLeader"):
        from agents.families.gradient import GradientLeader

        GradientLeader.load(tmp_path / "agent.zip", gym.make("FPO/NeuralRM-v0"))
