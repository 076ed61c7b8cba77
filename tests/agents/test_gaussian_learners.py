"""The Gaussian-policy learners on the neural game: gradients, schedules, API, and the result over seeds."""

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import agents  # noqa: E402
import fpo_envs  # noqa: E402,F401


def _float64_rm(env):
    rm = env.unwrapped.reward_model
    return rm.replace(rm.params.double())


@pytest.mark.parametrize(
    "name, config", [("rlhf", {}), ("fpo-practical", {}), ("fpo-relaxed", {}), ("fpo-relaxed", {"oracle_gradient": True})]
)
def test_objective_gradient_matches_finite_differences(name, config):
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=2)
    env.reset(seed=0, options={"rm_params": np.random.default_rng(0).normal(0, 0.3, (2, 1441))})
    agent = agents.make(name, env, seed=0, **config)
    rm = _float64_rm(env)
    y = torch.as_tensor(np.random.default_rng(1).normal(1.0, 0.5, (2, 10)))
    grad = agent.objective_grad(y, rm)
    expected = torch.zeros_like(y)
    eps = 1e-6
    for i in range(10):
        e = torch.zeros(10, dtype=torch.float64)
        e[i] = eps
        if name == "fpo-relaxed" and not config:
            # U detached: a constant label at y inside the penalty.
            u = env.unwrapped.oracle.utility(y)
            from agents.common import penalties

            def f(z, u=u):
                r, g = rm.reward_and_grad_params(z)
                return r - 0.01 * (z * z).sum(-1) - 0.005 * penalties.relaxed_penalty(g, r - u)
        else:

            def f(z):
                return agent.objective.value(z, rm)

        expected[:, i] = (f(y + e) - f(y - e)) / (2 * eps)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-7)


def test_penalty_uses_the_shared_code_and_the_rms_gradients():
    env = gym.make("FPO/NeuralRM-v0")
    env.reset(seed=0)
    rm = _float64_rm(env)
    y = torch.as_tensor(np.random.default_rng(2).normal(1.0, 0.5, 10))
    base = agents.make("rlhf", env).objective.value(y, rm)
    g = rm.grad_params(y)
    practical = agents.make("fpo-practical", env, gamma=2.0).objective.value(y, rm)
    assert (base - practical).item() == pytest.approx(2.0 * (g * g).sum().item())
    relaxed = agents.make("fpo-relaxed", env, gamma=2.0).objective.value(y, rm)
    residual = (rm.reward(y) - env.unwrapped.oracle.utility(y)).item()
    assert (base - relaxed).item() == pytest.approx(2.0 * residual * (g * g).sum().item())


def test_schedules_follow_one_minus_progress_to_the_fourth():
    agent = agents.make("rlhf", gym.make("FPO/NeuralRM-v0"), schedule_rounds=100)
    assert agent.schedule(0) == pytest.approx((0.1, 0.05))
    assert agent.schedule(100) == pytest.approx((0.001, 0.001))
    decay = 1 - 0.5**4
    assert agent.schedule(50) == pytest.approx((0.001 + 0.099 * decay, 0.001 + 0.049 * decay))


def test_without_schedule_rounds_the_schedule_follows_each_learn_call():
    agent = agents.make("rlhf", gym.make("FPO/NeuralRM-v0"), seed=0)
    assert agent.schedule_rounds == 4000  # before any learn: the env's episode length
    agent.learn(5)
    assert agent.schedule_rounds == 5 and agent.schedule(5) == pytest.approx((0.001, 0.001))
    agent.learn(5)  # as stable-baselines3's schedules: stretched to the end of this call
    assert agent.schedule_rounds == 10
    fixed = agents.make("rlhf", gym.make("FPO/NeuralRM-v0"), schedule_rounds=100)
    fixed.learn(5)
    assert fixed.schedule_rounds == 100


def test_history_records_info_and_theta_metrics():
    env = gym.make_vec("FPO/NeuralRM-v0", num_envs=2)
    h = agents.make("fpo-relaxed", env, seed=0, schedule_rounds=20).learn(5)
    theta = ("theta_true_utility", "theta_signal_norm", "theta_noise_norm", "theta_rm_error")
    for key in fpo_envs.INFO_KEYS + fpo_envs.VECTOR_INFO_KEYS + theta + ("buffer_rm_error",):
        assert h[key].shape == (5, 2), key
    assert h["theta"].shape == (5, 2, 10)
    # theta's utility is that of the mean it samples around; sigma = 0.1 keeps them close.
    np.testing.assert_allclose(h["theta_true_utility"], h["true_utility"], atol=0.5)


def test_predict_returns_the_next_samples_without_changing_the_learner():
    env = gym.make("FPO/NeuralRM-v0")
    agent = agents.make("fpo-relaxed", env, seed=0, schedule_rounds=20)
    agent.learn(3)
    theta, state = agent.theta.clone(), agent.generator.get_state()
    action, _ = agent.predict(agent._obs)
    assert action.shape == (5, 10) and env.action_space.contains(action)
    assert np.allclose(action, action[0])  # deterministic: theta' repeated
    torch.testing.assert_close(agent.theta, theta, rtol=0, atol=0)
    assert torch.equal(agent.generator.get_state(), state)
    sampled, _ = agent.predict(agent._obs, deterministic=False)
    assert not np.allclose(sampled, sampled[0])


def test_config_defaults_are_the_papers():
    env = gym.make("FPO/NeuralRM-v0")
    relaxed = agents.make("fpo-relaxed", env).config
    assert (relaxed.gamma, relaxed.oracle_gradient, relaxed.inner_steps, relaxed.grad_clip) == (0.005, False, 15, 1.0)
    assert agents.make("rlhf", env).config.gamma == 0.0 and agents.make("fpo-practical", env).config.gamma == 0.005
    with pytest.raises(TypeError, match="unknown config key"):
        agents.make("fpo-practical", env, oracle_grad=True)
    with pytest.raises(ValueError, match="inner_steps"):
        agents.make("rlhf", env, inner_steps=0)


SEEDS, ROUNDS = 12, 1000  # a shortened schedule (the paper's is 4000 rounds) so CI stays fast


@pytest.fixture(scope="module")
def shortened_runs():
    torch.set_num_threads(1)  # the figures below were measured with one thread
    runs = {}
    for label, name, config in [
        ("rlhf", "rlhf", {}),
        ("fpo-practical", "fpo-practical", {}),
        ("fpo-relaxed", "fpo-relaxed", {}),
        ("fpo-relaxed-og", "fpo-relaxed", {"oracle_gradient": True}),
    ]:
        env = gym.make_vec("FPO/NeuralRM-v0", num_envs=SEEDS)
        runs[label] = agents.make(name, env, seed=0, schedule_rounds=ROUNDS, **config).learn(ROUNDS)["theta_true_utility"][-1]
    return runs


@pytest.mark.slow
def test_over_seeds_relaxed_fpo_ends_well_above_rlhf(shortened_runs):
    rlhf, relaxed = shortened_runs["rlhf"], shortened_runs["fpo-relaxed"]
    # Measured (12 seeds, 1000 rounds, 1 thread): RLHF median 2.65, mean 2.83, 11 of 12
    # seeds below half the optimum; relaxed FPO (U detached) median 4.59, mean 5.15.
    assert np.median(rlhf) < 3.5 and (rlhf < 5.0).mean() >= 0.75
    assert np.median(relaxed) > np.median(rlhf) + 1.0
    assert relaxed.mean() > rlhf.mean() + 1.0


@pytest.mark.slow
def test_over_seeds_practical_fpo_ends_above_rlhf(shortened_runs):
    # Measured: practical FPO median 3.90 against RLHF's 2.65.
    assert np.median(shortened_runs["fpo-practical"]) > np.median(shortened_runs["rlhf"]) + 0.5


@pytest.mark.slow
def test_relaxed_fpo_with_the_oracle_gradient_reaches_the_ideal_on_every_seed(shortened_runs):
    # Measured: 9.96-10.0 on all 12 seeds.
    assert np.all(shortened_runs["fpo-relaxed-og"] >= 9.5)
