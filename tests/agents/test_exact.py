"""fpo-exact: its gradient equals finite differences of the proxy under the previewed next RM
(float64; linear and neural, single and vector), it reduces to the first-order penalty as the
follower's step vanishes, and it registers through the plugin group like an external learner."""

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import agents  # noqa: E402
import fpo_envs  # noqa: E402, F401
from agents.common.objectives import Objective  # noqa: E402
from agents.learners import exact  # noqa: E402
from tests.conftest import central_difference  # noqa: E402


def _played(env_id, num_envs=None, rounds=6, seed=0, **kwargs):
    """An env (single or vector) after a few random rounds: a non-trivial RM, buffer and Adam state."""
    env = gym.make(env_id, **kwargs) if num_envs is None else gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    space = env.action_space
    for _ in range(rounds):
        env.step((0.3 * space.high * rng.uniform(-1, 1, space.shape)).astype(space.dtype))
    return env.unwrapped


@pytest.mark.parametrize("num_envs", [None, 3])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("oracle_gradient", [True, False])
def test_linear_exact_gradient_equals_finite_differences(num_envs, steps, oracle_gradient):
    game = _played("FPO/LinearRM-v0", num_envs, dim=6, signal_dims=2)
    rm = game.reward_model
    rng = np.random.default_rng(1)
    y = rng.normal(0.0, 1.0, rm.w.shape)
    u0 = game.oracle.utility(y)

    def proxy_next(v):  # numpy, the env's own follower step previewed `steps` times
        u = game.oracle.utility(v) if oracle_gradient else u0
        return game.proxy(v, rm.stepped(v, u, steps).reward(v))

    expected = central_difference(proxy_next, y)
    got = exact.exact_grad(game, rm, y, steps, oracle_gradient)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("num_envs", [None, 2])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("oracle_gradient", [True, False])
def test_neural_exact_gradient_equals_finite_differences(num_envs, steps, oracle_gradient):
    game = _played("FPO/NeuralRM-v0", num_envs, hidden=8)
    rm = game.reward_model.to(torch.float64)
    batch = rm.params.shape[:-1]
    rng = np.random.default_rng(2)
    y = rng.normal(0.0, 1.0, (*batch, game.samples_per_round, game.dim))
    u0 = torch.as_tensor(game.oracle.utility(y))

    def proxy_next(v):
        v = torch.as_tensor(v)
        u = game.oracle.utility(v) if oracle_gradient else u0
        with torch.no_grad():
            return game.proxy(v, rm.stepped(v, u, steps).reward(v)).numpy()

    expected = central_difference(proxy_next, y)
    yt = torch.as_tensor(y).requires_grad_(True)
    (got,) = torch.autograd.grad(exact.exact_objective(game, rm, yt, steps, oracle_gradient).sum(), yt)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-8)


def test_stepped_once_is_the_env_follower_step():
    game = _played("FPO/NeuralRM-v0", 2, hidden=8)
    rm = game.reward_model
    y = torch.randn(2, game.samples_per_round, game.dim, generator=torch.Generator().manual_seed(0))
    u = game.oracle.utility(y)
    torch.testing.assert_close(rm.stepped(y, u, 1).params, rm.preview_update(y, u))
    linear = _played("FPO/LinearRM-v0", 2).reward_model
    y = np.random.default_rng(0).normal(size=linear.w.shape)
    np.testing.assert_array_equal(linear.stepped(y, np.ones(2), 1).w, linear.preview_update(y, np.ones(2)))


def test_first_order_limit_of_the_linear_follower_is_the_relaxed_penalty():
    """unroll_steps=1 with a vanishing follower step: (grad exact - grad proxy) / (2 lr) -> -grad R_relaxed."""
    rng = np.random.default_rng(3)
    errors = []
    for lr in (1e-2, 1e-3, 1e-4):
        game = _played("FPO/LinearRM-v0", 4, dim=6, signal_dims=2, rm_lr=lr, rm_weight_decay=0.0)
        rm = game.reward_model
        y = rng.normal(0.0, 1.0, rm.w.shape)
        rlhf = Objective(game, "none", 0.0).grad_numpy(y, rm)
        relaxed = Objective(game, "relaxed", 1.0, oracle_gradient=True)
        penalty_grad = rlhf - relaxed.grad_numpy(y, rm)  # gamma = 1: grad R_relaxed
        correction = (exact.exact_grad(game, rm, y, 1, True) - rlhf) / (2 * lr)
        errors.append(np.abs(correction + penalty_grad).max() / np.abs(penalty_grad).max())
    # For the linear RM one SGD step is linear in w, so first order is exact at every step size.
    assert max(errors) < 1e-9, errors


def test_first_order_limit_of_the_neural_follower():
    """The exact correction shrinks with the RM's step size as lr times its first-order term:
    (grad exact - grad rlhf) / lr converges as lr -> 0 (its error falls linearly in lr)."""
    rng = np.random.default_rng(4)
    base = _played("FPO/NeuralRM-v0", None, hidden=8, rounds=12)
    y = torch.as_tensor(rng.normal(0.0, 1.0, (base.samples_per_round, base.dim)))

    def correction(lr):
        rm = base.reward_model.to(torch.float64)
        rm.lr = lr
        yt = y.clone().requires_grad_(True)
        (g_exact,) = torch.autograd.grad(exact.exact_objective(base, rm, yt, 1, True).sum(), yt)
        yt = y.clone().requires_grad_(True)
        (g_rlhf,) = torch.autograd.grad(base.proxy(yt, rm.reward(yt)).sum(), yt)
        return ((g_exact - g_rlhf) / lr).numpy()

    limit = correction(1e-9)
    gaps = [np.abs(correction(lr) - limit).max() for lr in (1e-3, 1e-4, 1e-5)]
    assert gaps[1] < 0.2 * gaps[0] and gaps[2] < 0.2 * gaps[1], gaps
    assert np.abs(limit).max() > 0


def test_unrolling_recovers_most_of_the_papers_foresight_on_the_linear_game():
    vec = gym.make_vec("FPO/LinearRM-v0", num_envs=20)
    final = {
        steps: np.median(agents.make("fpo-exact", vec, seed=0, unroll_steps=steps).learn(300)["true_utility"][-1])
        for steps in (1, 10)
    }
    rlhf = np.median(agents.make("rlhf", vec, seed=0).learn(300)["true_utility"][-1])
    assert rlhf < final[1] < final[10] and final[10] > 9.5, (rlhf, final)


@pytest.mark.parametrize("env_id", ["FPO/LinearRM-v0", "FPO/NeuralRM-v0"])
def test_vector_copy_matches_single_env_on_the_linear_game_and_runs_on_both(env_id):
    kwargs = {"schedule_rounds": 20} if "Neural" in env_id else {}
    vec = gym.make_vec(env_id, num_envs=2)
    h = agents.make("fpo-exact", vec, seed=5, **kwargs).learn(8)
    assert np.isfinite(h["true_utility"]).all() and h["true_utility"].shape == (8, 2)
    if "Linear" in env_id:
        single = agents.make("fpo-exact", gym.make(env_id), seed=6).learn(8)
        np.testing.assert_allclose(h["true_utility"][:, 1], single["true_utility"], rtol=1e-12)


def test_registered_through_the_plugin_group():
    from importlib.metadata import entry_points

    assert "agents.learners.exact" in [p.value for p in entry_points(group=agents.PLUGIN_GROUP)]
    assert agents.spec("fpo-exact").module == "agents.learners.exact"
    assert set(agents.spec("fpo-exact").games) == {"linear", "neural", "token"}


def test_save_and_load_continue_exactly(tmp_path):
    env = gym.make("FPO/NeuralRM-v0")
    agent = agents.make("fpo-exact", env, seed=0, schedule_rounds=10, unroll_steps=2)
    agent.learn(4)
    agent.save(tmp_path / "exact.zip")
    more = agent.learn(3)
    loaded = agents.load(tmp_path / "exact.zip", gym.make("FPO/NeuralRM-v0"))
    assert loaded.config.unroll_steps == 2
    np.testing.assert_array_equal(loaded.learn(3)["true_utility"], more["true_utility"])


@pytest.mark.parametrize(
    "config, match",
    [
        ({"unroll_steps": 0}, "unroll_steps must be a whole number >= 1"),
        ({"unroll_steps": 1.5}, r"unroll_steps must be a whole number \(int\), got 1.5"),
        ({"penalty": "relaxed"}, "penalty must be 'none'"),
        ({"gradient": "finite-difference"}, "gradient must be 'analytic'"),
    ],
)
def test_bad_config_names_the_fix(config, match):
    with pytest.raises(ValueError, match=match):
        agents.make("fpo-exact", gym.make("FPO/LinearRM-v0"), **config)


def test_the_accuracy_script_finds_the_relaxed_penalty_exact_on_the_linear_game(tmp_path):
    """scripts/exact_accuracy.py end to end on a few seeds: on the linear game one SGD step is
    linear in w, so the relaxed penalty at gamma = 2 eta is the exact correction (cosine 1)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "exact_accuracy.py"
    spec = importlib.util.spec_from_file_location("exact_accuracy", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "accuracy.md"
    script.main(["--games", "linear", "--linear-seeds", "4", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| rlhf | relaxed")]
    assert rows and rows[0].split("|")[3].strip().startswith("1.000"), rows
