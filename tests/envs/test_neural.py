"""The neural game: per-sample RM gradients, the Adam follower, the buffer, vectorization."""

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fpo_envs  # noqa: E402
from fpo_envs.models.mlp import MLPRewardModel, mlp_num_params  # noqa: E402

D, H = 4, 6


@pytest.fixture
def rm():
    rng = np.random.default_rng(0)
    params = torch.as_tensor(np.stack([MLPRewardModel.init_params(rng, D, H, 0.5) for _ in range(3)]))
    return MLPRewardModel(params, D, H)  # float64, a batch of three RMs


def _autograd_grad(rm, flat, y):
    flat = flat.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(rm.reward_single(flat, y), flat)
    return g


def test_stacked_forward_matches_the_single_sample_definition(rm):
    y = torch.randn(3, 5, D, dtype=torch.float64)
    r = rm.reward(y)
    assert r.shape == (3, 5)
    for b in range(3):
        for k in range(5):
            assert r[b, k].item() == pytest.approx(rm.reward_single(rm.params[b], y[b, k]).item(), rel=1e-12)
    assert rm.reward(y[:, 0]).shape == (3,)


def test_per_sample_gradients_match_autograd_one_sample_at_a_time(rm):
    y = torch.randn(3, 5, D, dtype=torch.float64)
    g = rm.grad_params(y)  # torch.func
    r_cf, g_cf = rm.reward_and_grad_params(y)  # closed form
    assert g.shape == (3, 5, mlp_num_params(D, H))
    for b in range(3):
        for k in range(5):
            expected = _autograd_grad(rm, rm.params[b], y[b, k])
            torch.testing.assert_close(g[b, k], expected)
            torch.testing.assert_close(g_cf[b, k], expected)
    torch.testing.assert_close(r_cf, rm.reward(y))
    torch.testing.assert_close(rm.grad_params(y[:, 0]), g[:, 0])


def test_input_gradient_and_loss_gradient_match_autograd(rm):
    y = torch.randn(3, D, dtype=torch.float64, requires_grad=True)
    u = torch.randn(3, dtype=torch.float64)
    (expected,) = torch.autograd.grad(rm.reward(y).sum(), y)
    torch.testing.assert_close(rm.grad_input(y.detach()), expected)
    flat = rm.params.clone().requires_grad_(True)
    (loss_g,) = torch.autograd.grad(((rm.reward(y.detach(), flat) - u) ** 2).sum(), flat)
    torch.testing.assert_close(rm.loss_grad(y.detach(), u), loss_g)


def test_closed_form_gradient_is_differentiable_in_the_output(rm):
    y = torch.randn(3, D, dtype=torch.float64, requires_grad=True)
    _, g = rm.reward_and_grad_params(y)
    (by_closed_form,) = torch.autograd.grad((g * g).sum(), y)
    y2 = y.detach().requires_grad_(True)
    (by_func,) = torch.autograd.grad((rm.grad_params(y2) ** 2).sum(), y2)
    torch.testing.assert_close(by_closed_form, by_func)


def test_follower_is_torch_adam_on_the_buffer_mse():
    env = gym.make("FPO/NeuralRM-v0")
    env.reset(seed=0)
    live = env.unwrapped.reward_model
    param = torch.nn.Parameter(live.params.clone())
    opt = torch.optim.Adam([param], lr=1e-3, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    seen_y, seen_u = [], []
    for _ in range(14):  # past 50 samples, so the FIFO drops the oldest
        y = rng.normal(1.0, 1.0, (5, 10)).astype(np.float32)
        env.step(y)
        yt = torch.as_tensor(y)
        seen_y.append(yt)
        seen_u.append(env.unwrapped.oracle.utility(yt))
        buf_y, buf_u = torch.cat(seen_y)[-50:], torch.cat(seen_u)[-50:]
        opt.zero_grad()
        ((live.reward(buf_y, param) - buf_u) ** 2).mean().backward()
        opt.step()
        torch.testing.assert_close(env.unwrapped.reward_model.params, param.detach(), rtol=1e-5, atol=1e-6)
    buffer = env.unwrapped.reward_model.buffer
    assert buffer["count"].item() == 50
    torch.testing.assert_close(buffer["y"], torch.cat(seen_y)[-50:])


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_step_is_torch_adam_on_numpy_and_torch(weight_decay):
    from fpo_envs.core.numerics import adam_step

    rng = np.random.default_rng(0)
    start, grads = rng.normal(size=(2, 7)), rng.normal(size=(6, 2, 7))
    param = torch.nn.Parameter(torch.tensor(start))  # a copy: the step changes it in place
    opt = torch.optim.Adam([param], lr=1e-2, weight_decay=weight_decay)
    zeros = np.zeros_like(start)
    as_numpy = (start, {"exp_avg": zeros, "exp_avg_sq": zeros, "step": 0})
    # Two RMs, one step count each (as the batched MLP RM holds them).
    f64 = torch.float64
    as_torch = (torch.tensor(start), {"exp_avg": torch.zeros(2, 7, dtype=f64), "exp_avg_sq": torch.zeros(2, 7, dtype=f64)})
    as_torch[1]["step"] = torch.zeros(2, dtype=f64)
    for g in grads:
        param.grad = torch.as_tensor(g)
        opt.step()
        as_numpy = adam_step(*as_numpy, g, 1e-2, weight_decay)
        as_torch = adam_step(*as_torch, torch.as_tensor(g), 1e-2, weight_decay)
        np.testing.assert_allclose(as_numpy[0], param.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(as_torch[0].numpy(), param.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert set(as_numpy[1]) == set(opt.state[param]) == {"exp_avg", "exp_avg_sq", "step"}
    assert as_numpy[1]["step"] == 6 and as_torch[1]["step"].tolist() == [6.0, 6.0]


def test_neural_settings_are_checked_together_and_shown_in_the_signature():
    import inspect

    from fpo_envs.games.neural import NeuralParams, NeuralRMEnv

    with pytest.raises(ValueError, match=r"samples_per_round must be in \[1, buffer_size=4\], got 5"):
        gym.make("FPO/NeuralRM-v0", buffer_size=4)
    with pytest.raises(ValueError, match=r"signal_dims must be in \[1, dim=10\], got 11"):
        gym.make_vec("FPO/NeuralRM-v0", num_envs=2, signal_dims=11)
    with pytest.raises(ValueError, match=r"output_bound=2.0 must exceed the ideal's coordinates \(2.5\)"):
        gym.make("FPO/NeuralRM-v0", output_bound=2.0)
    vec = gym.make_vec("FPO/NeuralRM-v0", num_envs=2, hidden=8, samples_per_round=5)
    assert vec.unwrapped.params.changed() == {"hidden": 8} and vec.unwrapped.hidden == 8
    assert vec.unwrapped.num_params == mlp_num_params(10, 8) and vec.action_space.shape == (2, 5, 10)
    assert list(inspect.signature(NeuralRMEnv).parameters) == [*NeuralParams.names(), "render_mode"]


def test_preview_update_does_not_apply_and_equals_the_update():
    env = gym.make("FPO/NeuralRM-v0")
    env.reset(seed=1)
    env.step(np.ones((5, 10), np.float32))
    rm = env.unwrapped.reward_model
    before = rm.params.clone()
    y = torch.full((5, 10), 0.5)
    u = env.unwrapped.oracle.utility(y)
    preview = rm.preview_update(y, u)
    torch.testing.assert_close(rm.params, before, rtol=0, atol=0)
    env.step(y.numpy())
    torch.testing.assert_close(env.unwrapped.reward_model.params, preview)


def test_info_is_measured_at_the_mean_output():
    env = gym.make("FPO/NeuralRM-v0")
    env.reset(seed=0)
    rm = env.unwrapped.reward_model
    y = np.random.default_rng(0).normal(1.0, 0.3, (5, 10)).astype(np.float32)
    yt, mean = torch.as_tensor(y), torch.as_tensor(y).mean(0)
    r_mean = rm.reward(mean).item()
    proxy = (rm.reward(yt) - 0.01 * (yt * yt).sum(-1)).mean().item()
    _, reward, _, _, info = env.step(y)
    u_mean = 10 * np.exp(-0.2 * np.sum((mean.numpy() - np.r_[2.5, 2.5, np.zeros(8)]) ** 2))
    assert info["true_utility"] == pytest.approx(u_mean, rel=1e-5)
    assert info["rm_error"] == pytest.approx(r_mean - u_mean, rel=1e-4, abs=1e-5)
    assert info["signal_norm"] == pytest.approx(np.linalg.norm(mean[:2]), rel=1e-5)
    assert info["noise_norm"] == pytest.approx(np.linalg.norm(mean[2:]), rel=1e-5)
    assert reward == pytest.approx(proxy, rel=1e-5)
    labels = 10 * np.exp(-0.2 * np.sum((y - np.r_[2.5, 2.5, np.zeros(8)]) ** 2, -1))
    expected_buffer_error = np.abs(env.unwrapped.reward_model.reward(yt).numpy() - labels).mean()
    assert info["buffer_rm_error"] == pytest.approx(expected_buffer_error, rel=1e-4)


def test_reset_restores_optimizer_and_buffer_and_clones_keep_them():
    env = gym.make("FPO/NeuralRM-v0")
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.ones((5, 10), np.float32))
    rm = env.unwrapped.reward_model
    assert rm.opt_state["step"].item() == 3 and rm.opt_state["exp_avg"].abs().sum() > 0
    for twin in (copy.deepcopy(env), pickle.loads(pickle.dumps(env))):
        for key, value in rm.opt_state.items():
            torch.testing.assert_close(twin.unwrapped.reward_model.opt_state[key], value, rtol=0, atol=0)
    env.reset(seed=0)
    rm = env.unwrapped.reward_model
    assert rm.opt_state["step"].item() == 0 and rm.opt_state["exp_avg"].abs().sum() == 0
    assert rm.buffer["count"].item() == 0


def test_reset_options_set_the_rm_and_the_start():
    env = gym.make("FPO/NeuralRM-v0")
    p = env.unwrapped.num_params
    params = np.linspace(-0.1, 0.1, p)
    obs, _ = env.reset(seed=0, options={"rm_params": params, "output": np.full(10, 0.5)})
    np.testing.assert_allclose(obs, np.r_[params, np.full(10, 0.5)].astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"rm_params": np.zeros(p - 1)})


@pytest.mark.parametrize(
    "action, match",
    [
        (np.zeros((5, 9)), "shape"),
        (np.zeros((4, 10)), "shape"),
        (np.zeros(10), "shape"),
        (np.full((5, 10), np.nan), "NaN or inf"),
        (np.full((5, 10), 11.0), "bounds"),
    ],
)
def test_bad_actions_raise_clear_errors(action, match):
    env = gym.make("FPO/NeuralRM-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_rm_api_rejects_outputs_of_the_wrong_shape(rm):
    with pytest.raises(ValueError, match="outputs must have shape"):
        rm.reward(torch.zeros(2, D, dtype=torch.float64))


def test_diverging_rm_ends_the_episode_without_nan():
    env = gym.make("FPO/NeuralRM-v0", rm_lr=1e7)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.ones((5, 10), np.float32))
    assert terminated and info["diverged"] and np.isfinite(reward)
    assert torch.isfinite(env.unwrapped.reward_model.params).all()
    assert env.unwrapped.reward_model.params.abs().max() <= 1e6


# How far copy i of the vector env may be from the single env seeded s + i over 5 rounds. The
# vector env's products with one row or one column (the output layer ``h2 @ w3^T``; the first
# layers at the round's mean output) run as batched torch.bmm, the single env's as torch.mm,
# and the CPU kernels sum the dot products in different orders (NeuralRMVectorEnv's docstring).
# Measured over 5 rounds of 3 copies (this test's actions), the largest absolute differences
# on the default kernels, ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE, and
# MKL_ENABLE_INSTRUCTIONS=AVX2: obs 3.0e-8, reward 8.9e-8, info 2.4e-7; the bounds below
# leave a factor of 8 or more.
COPY_ATOL = {"obs": 3e-7, "reward": 1e-6, "info": 2e-6}


@pytest.mark.pinned  # float32 tolerances: CI checks them under other kernels too
def test_vector_env_equals_single_envs():
    vec = gym.make_vec("FPO/NeuralRM-v0", num_envs=3)
    assert vec.unwrapped.reward_model.params.shape == (3, 1441)
    obs, _ = vec.reset(seed=7)
    singles = [gym.make("FPO/NeuralRM-v0") for _ in range(3)]
    # The seeded start is exact: the same draws from the same generators.
    np.testing.assert_array_equal(obs, np.stack([e.reset(seed=7 + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.normal(0.5, 0.5, (3, 5, 10)).astype(np.float32)
        obs, reward, _, _, info = vec.step(actions)
        outs = [e.step(a) for e, a in zip(singles, actions)]
        np.testing.assert_allclose(obs, np.stack([o[0] for o in outs]), rtol=0, atol=COPY_ATOL["obs"])
        np.testing.assert_allclose(reward, [o[1] for o in outs], rtol=0, atol=COPY_ATOL["reward"])
        for key in fpo_envs.INFO_KEYS + ("buffer_rm_error",):
            np.testing.assert_allclose(info[key], [o[4][key] for o in outs], rtol=0, atol=COPY_ATOL["info"], err_msg=key)
        assert info["diverged"].tolist() == [o[4]["diverged"] for o in outs]


def test_closed_form_gradient_norm_equals_the_per_sample_gradients_norm(rm):
    y = torch.as_tensor(np.random.default_rng(5).normal(0.5, 1.0, (*rm.params.shape[:-1], 5, rm.dim)), dtype=rm.params.dtype)
    y.requires_grad_(True)
    r, n = rm.reward_and_grad_sqnorm(y)
    r_ref, g = rm.reward_and_grad_params(y)
    torch.testing.assert_close(r, r_ref)
    torch.testing.assert_close(n, (g * g).sum(-1))
    # ... and its gradient in y too (the learners differentiate it).
    (dn,) = torch.autograd.grad(n.sum(), y, retain_graph=True)
    (dref,) = torch.autograd.grad((g * g).sum(-1).sum(), y)
    torch.testing.assert_close(dn, dref)


def test_buffer_loss_gradient_by_hand_equals_autograd(rm):
    rng = np.random.default_rng(7)
    size, batch = 12, rm.params.shape[:-1]
    buffer = {
        "y": torch.as_tensor(rng.normal(0.5, 1.0, (*batch, size, rm.dim))),
        "u": torch.as_tensor(rng.uniform(0, 10, (*batch, size))),
        "count": torch.as_tensor(rng.integers(1, size + 1, batch)),  # partly filled FIFOs
    }
    from fpo_envs.models.mlp import _filled

    mask = _filled(buffer)
    params = rm.params.clone().requires_grad_(True)
    residual = rm.reward(buffer["y"], params) - buffer["u"]
    (expected,) = torch.autograd.grad(((mask / mask.sum(-1, keepdim=True)) * residual**2).sum(), params)
    torch.testing.assert_close(rm.buffer_loss_grad(buffer), expected)


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("samples", [None, 5])
def test_penalty_input_gradients_in_closed_form_equal_autograd(batch, samples):
    """The penalised policy step's closed form: r, ||grad_phi r||^2 and their input gradients,
    against autograd through :meth:`reward_and_grad_sqnorm` (float64, one RM, a batch, an
    ensemble's shape; one output or k per RM)."""
    rng = np.random.default_rng(3)
    n = int(np.prod(batch)) if batch else 1
    params = np.stack([MLPRewardModel.init_params(rng, D, H, 0.3) for _ in range(n)]).reshape(*batch, -1)
    rm = MLPRewardModel(torch.as_tensor(params), D, H)
    shape = (*batch, D) if samples is None else (*batch, samples, D)
    y = torch.as_tensor(rng.normal(0.5, 1.0, shape)).requires_grad_(True)
    r, n_ = rm.reward_and_grad_sqnorm(y)
    (dr,) = torch.autograd.grad(r.sum(), y, retain_graph=True)
    (dn,) = torch.autograd.grad(n_.sum(), y)
    r2, n2, dr2, dn2 = rm.penalty_input_grads(y.detach())
    for got, want in ((r2, r), (n2, n_), (dr2, dr), (dn2, dn)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("penalty", ["fpo-practical", "fpo-relaxed"])
def test_closed_form_policy_step_equals_the_autograd_step(penalty, monkeypatch):
    """The Gaussian leader's penalised step in closed form gives the gradient autograd gives
    through the objective (float64 RM, so the comparison is to rounding)."""
    import agents
    import agents.families.gaussian as gaussian

    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=3)
    for oracle_gradient in (False, True):
        learner = agents.make(penalty, env, seed=0, oracle_gradient=oracle_gradient)
        learner.learn(3)
        rm = env.unwrapped.reward_model.to(torch.float64)
        y = torch.as_tensor(np.random.default_rng(1).normal(1.0, 1.0, (3, 10)))
        fast = learner.objective_grad(y, rm)
        monkeypatch.setattr(gaussian, "_CLOSED_FORM", {})
        slow = learner.objective_grad(y, rm)
        monkeypatch.undo()
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)


def test_fused_adam_step_equals_adam_step():
    """The env's in-place Adam (torch's fused kernel where every RM is at one step count, else
    :func:`adam_step` copied back) against the reference step: to float32 rounding, and exact
    on the fallback."""
    from fpo_envs.core.numerics import adam_step, adam_step_

    rng = np.random.default_rng(0)
    params = torch.as_tensor(rng.normal(0, 0.1, (4, 30)), dtype=torch.float32)
    grad = torch.as_tensor(rng.normal(0, 0.01, (4, 30)), dtype=torch.float32)
    state = {
        "exp_avg": torch.as_tensor(rng.normal(0, 1e-3, (4, 30)), dtype=torch.float32),
        "exp_avg_sq": torch.as_tensor(rng.uniform(0, 1e-5, (4, 30)), dtype=torch.float32),
        "step": torch.full((4,), 6.0),
    }
    for steps in (torch.full((4,), 6.0), torch.tensor([6.0, 2.0, 6.0, 0.0])):  # fused, then the fallback
        state["step"] = steps
        want, want_state = adam_step(params, state, grad, 1e-3, 1e-3)
        p, s = params.clone(), {k: v.clone() for k, v in state.items()}
        adam_step_(p, s, grad, 1e-3, 1e-3)
        exact = bool((steps != steps[0]).any())
        tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-6, "atol": 1e-9}
        torch.testing.assert_close(p, want, **tol)
        torch.testing.assert_close(s["exp_avg"], want_state["exp_avg"], **tol)
        torch.testing.assert_close(s["exp_avg_sq"], want_state["exp_avg_sq"], **tol)
        torch.testing.assert_close(s["step"], want_state["step"], rtol=0, atol=0)


@pytest.mark.parametrize("ensemble", [1, 2])
def test_a_restored_env_plays_on_bit_for_bit(ensemble):
    """The round reuses the buffer's forward pass of the previous round; a restored env has
    none and recomputes it: the numbers must be the same bits (the pass is a function of the
    state alone), whether restored by ``load_state_dict``, a deep copy or pickling."""
    rng = np.random.default_rng(2)
    actions = rng.normal(1.0, 1.0, (16, 3, 5, 10)).astype(np.float32)
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=3, rm_ensemble=ensemble)
    env.reset(seed=4)
    for a in actions[:8]:
        env.step(a)
    saved = env.unwrapped.state_dict()
    fresh = gym.make_vec("FPO/NeuralRM-v0", num_envs=3, rm_ensemble=ensemble)
    restored = [fresh, copy.deepcopy(env), pickle.loads(pickle.dumps(env))]
    restored[0].unwrapped.load_state_dict(saved)
    for a in actions[8:]:
        want = env.step(a)
        for other in restored:
            got = other.step(a)
            np.testing.assert_array_equal(got[0], want[0])
            for key in ("true_utility", "buffer_rm_error", "rm_error"):
                np.testing.assert_array_equal(got[4][key], want[4][key])


def test_device_argument_places_the_state_and_the_learner_follows():
    import agents

    default = gym.make_vec("FPO/NeuralRM-v0", num_envs=3)
    on_cpu = gym.make_vec("FPO/NeuralRM-v0", num_envs=3, device="cpu")
    assert on_cpu.unwrapped.device == torch.device("cpu")
    runs = [agents.make("fpo-relaxed", env, seed=0).learn(20) for env in (default, on_cpu)]
    learner = agents.make("rlhf", on_cpu, seed=0)
    learner.learn(2)
    assert learner.device == on_cpu.unwrapped.device and learner.theta.device == on_cpu.unwrapped.device
    assert on_cpu.unwrapped.reward_model.params.device == torch.device("cpu")
    for key in ("true_utility", "theta", "buffer_rm_error"):
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


@pytest.mark.parametrize(
    "device, match",
    [("gpu", "torch device such as 'cpu'"), (3.5, "torch device such as"), ("meta", "runs on 'cpu', 'cuda' or 'mps'")],
)
def test_a_bad_device_names_the_fix(device, match):
    with pytest.raises(ValueError, match=match):
        gym.make_vec("FPO/NeuralRM-v0", num_envs=2, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_names_the_cuda_build():
    with pytest.raises(ValueError, match=r"torch.cuda.is_available\(\) is False.*device='cpu'"):
        gym.make_vec("FPO/NeuralRM-v0", num_envs=2, device="cuda")
