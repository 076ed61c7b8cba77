"""The built-in learners give the numbers recorded in ``tests/data``.

The linear histories and tables were recorded before the learners became presets of policy
families, and the refactor reproduces them bit for bit. The neural histories were recorded
again when the penalties' ``||grad_phi r||^2`` and the RM's buffer gradient moved to the
MLP's closed forms (for speed): the same functions, rounded differently in float32 (the
histories moved by at most 2e-6 over these 150 rounds)."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401

DATA = Path(__file__).parent.parent / "data"
VARIANTS = [("rlhf", {}), ("fpo-practical", {}), ("fpo-relaxed", {}), ("fpo-relaxed-flip", None)]


def _variants(game):
    for label, config in VARIANTS:
        if config is None:  # the oracle-gradient switch away from the game's default
            yield label, "fpo-relaxed", {"oracle_gradient": game == "neural"}
        else:
            yield label, label, config


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA / "reference_histories.npz") as data:
        return dict(data)


@pytest.mark.parametrize("gradient", ["analytic", "finite-difference"])
@pytest.mark.parametrize("label, name, config", list(_variants("linear")))
def test_linear_histories_are_unchanged(reference, label, name, config, gradient):
    env = gym.make_vec("FPO/LinearRM-v0", num_envs=4)
    h = agents.make(name, env, seed=11, gradient=gradient, **config).learn(300)
    suffix = "-fd" if gradient == "finite-difference" else ""
    np.testing.assert_array_equal(h["true_utility"], reference[f"linear/{label}{suffix}/true_utility"])
    if not suffix:
        np.testing.assert_array_equal(h["noise_norm"], reference[f"linear/{label}/noise_norm"])


@pytest.mark.parametrize("label, name, config", list(_variants("neural")))
def test_neural_histories_are_unchanged(reference, label, name, config):
    torch = pytest.importorskip("torch")
    assert torch.get_num_threads() == 1  # recorded with one thread (tests/conftest.py sets it)
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=4)
    h = agents.make(name, env, seed=11, schedule_rounds=150, **config).learn(150)
    np.testing.assert_array_equal(h["theta_true_utility"], reference[f"neural/{label}/true_utility"])
    np.testing.assert_array_equal(h["noise_norm"], reference[f"neural/{label}/noise_norm"])


@pytest.mark.parametrize("gradient", ["analytic", "finite-difference"])
def test_the_linear_reproduction_prints_the_same_table(gradient, tmp_path):
    pytest.importorskip("matplotlib")
    import sys

    sys.path.insert(0, str(DATA.parents[1] / "scripts"))
    try:
        import reproduce
    finally:
        sys.path.pop(0)
    reproduce.main(["--game", "linear", "--gradient", gradient, "--out", str(tmp_path)])
    expected = (DATA / f"linear_table_{gradient.replace('-', '_')}.md").read_text()
    assert (tmp_path / "linear" / "table.md").read_text() == expected
