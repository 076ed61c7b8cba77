"""The built-in learners give the numbers recorded in ``tests/data``, on any machine.

A run repeats bit for bit on one machine (same seed, same thread count: tested below). Against
the recorded references, which another CPU wrote, the comparison allows what other float
kernels move each history: ``python scripts/kernel_paths.py`` replays these runs under each
kernel path that torch, MKL, OpenBLAS and numpy choose by CPU, and measured at most 6.2e-14
on the linear game (float64; numpy's SIMD loops round ``exp`` differently) and 2.1e-6 on the
neural game (float32, 150 rounds). The tolerances are ten times those and more, far below
what any change of the arithmetic moves (a changed step size or penalty moves these
histories by 1e-2 and more). CI runs this file a second time under
``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE NPY_DISABLE_CPU_FEATURES=...``.

The linear histories and tables were recorded before the learners became presets of policy
families, and the refactor reproduces them. The neural histories were recorded again when
the penalties' ``||grad_phi r||^2`` and the RM's buffer gradient moved to the MLP's closed
forms (for speed), and again when the round was made faster (torch's fused Adam kernel, one
forward pass over the buffer per round, the penalties' input gradients in closed form): that
moved them by at most 5.3e-5, the float32 rounding of a reordered sum."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import agents
import fpo_envs  # noqa: F401

DATA = Path(__file__).parent.parent / "data"
LINEAR_ATOL = 1e-12
"""Largest deviation allowed from a recorded linear history (measured at most 6.2e-14)."""
NEURAL_ATOL = 2e-5
"""Largest deviation allowed from a recorded neural history (measured at most 2.1e-6)."""
pytestmark = pytest.mark.pinned
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


def run_linear(label: str, name: str, config: dict, gradient: str) -> dict[str, np.ndarray]:
    """One recorded linear run, under its reference key(s)."""
    env = gym.make_vec("FPO/LinearRM-v0", num_envs=4)
    h = agents.make(name, env, seed=11, gradient=gradient, **config).learn(300)
    if gradient == "finite-difference":
        return {f"linear/{label}-fd/true_utility": h["true_utility"]}
    return {f"linear/{label}/true_utility": h["true_utility"], f"linear/{label}/noise_norm": h["noise_norm"]}


def run_neural(label: str, name: str, config: dict) -> dict[str, np.ndarray]:
    """One recorded neural run (150 rounds, 4 copies), under its reference keys."""
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=4)
    h = agents.make(name, env, seed=11, schedule_rounds=150, **config).learn(150)
    return {f"neural/{label}/true_utility": h["theta_true_utility"], f"neural/{label}/noise_norm": h["noise_norm"]}


def replay(game: str) -> dict[str, np.ndarray]:
    """Every recorded run of ``game`` played again (``scripts/kernel_paths.py`` uses it)."""
    out: dict[str, np.ndarray] = {}
    for label, name, config in _variants(game):
        if game == "linear":
            for gradient in ("analytic", "finite-difference"):
                out.update(run_linear(label, name, config, gradient))
        else:
            out.update(run_neural(label, name, config))
    return out


@pytest.mark.parametrize("gradient", ["analytic", "finite-difference"])
@pytest.mark.parametrize("label, name, config", list(_variants("linear")))
def test_linear_histories_are_unchanged(reference, label, name, config, gradient):
    for key, value in run_linear(label, name, config, gradient).items():
        np.testing.assert_allclose(value, reference[key], rtol=0, atol=LINEAR_ATOL, err_msg=key)


@pytest.mark.parametrize("label, name, config", list(_variants("neural")))
def test_neural_histories_are_unchanged(reference, label, name, config):
    torch = pytest.importorskip("torch")
    assert torch.get_num_threads() == 1  # recorded with one thread (tests/conftest.py sets it)
    for key, value in run_neural(label, name, config).items():
        np.testing.assert_allclose(value, reference[key], rtol=0, atol=NEURAL_ATOL, err_msg=key)


def test_the_tolerances_catch_a_change_of_the_arithmetic(reference):
    """A change far smaller than any real edit (the RM's learning rate by 1%) leaves the
    tolerances: they absorb kernels' rounding, not changes of what the games compute."""
    env = gym.make_vec("FPO/LinearRM-v0", num_envs=4, rm_lr=0.00505)
    moved = agents.make("rlhf", env, seed=11).learn(300)["true_utility"]
    assert np.abs(moved - reference["linear/rlhf/true_utility"]).max() > 1e3 * LINEAR_ATOL
    pytest.importorskip("torch")
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=4, rm_lr=1.01e-3)
    moved = agents.make("rlhf", env, seed=11, schedule_rounds=150).learn(150)["theta_true_utility"]
    assert np.abs(moved - reference["neural/rlhf/true_utility"]).max() > 10 * NEURAL_ATOL


@pytest.mark.parametrize("game", ["linear", "neural"])
def test_a_run_repeats_bit_for_bit_on_one_machine(game):
    if game == "neural":
        pytest.importorskip("torch")
    label, name, config = next(_variants(game))
    run = (lambda: run_linear(label, name, config, "analytic")) if game == "linear" else (lambda: run_neural(label, name, config))
    first, second = run(), run()
    for key in first:
        assert first[key].tobytes() == second[key].tobytes(), key


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
