"""Speed of the games and learners against their reference loops, measured side by side.

    python scripts/benchmark.py                      # everything: linear, neural, the paper suite
    python scripts/benchmark.py --only linear neural # skip the paper suite (about 5 minutes)

Printed in one run, on one process with one torch thread (the suite uses 2 workers):

- linear: 1000 seeds x 300 rounds of each learner in one vector env against a bare numpy
  loop of the same arithmetic (the follower step, the labels, the info metrics, the
  learner's analytic step), target within 1.5x;
- neural: the cost per seed of each learner in a vector env of 64 and 256 seeds against
  the paper's own notebook loop (one seed; an ``nn.Module`` RM with ``torch.optim.Adam``;
  15 reparameterised steps per round, the penalty through autograd's ``create_graph``),
  target at least 100x cheaper at 256 seeds;
- the ``paper`` suite: its wall time from an empty store (target under 10 minutes on
  2 cores) and a rerun of the finished suite (target under 5 seconds);
- exact: the cost per round of ``fpo-exact`` (1 and 3 follower steps) against ``fpo-practical``
  on both vector games (100 linear seeds, 64 neural seeds), no target: what exactness costs;
- baselines: the cost per round of each baseline against ``rlhf`` on both vector games (100
  linear seeds, 64 neural seeds), no target: what an RM ensemble or PerfGD's fit costs;
- token: 64 seeds x 600 rounds (the registered episode) of each token-game learner in one
  vector env, target at most 60 s for ``rlhf`` on 2 cores; its cost per round and seed against
  the linear game's ``rlhf`` (64 seeds x 300 rounds) and against a bare numpy loop of the same
  arithmetic (sampling, the follower step, REINFORCE), measured side by side;
- render: frames per second of ``env.render()`` (``rgb_array``) mid-run, beside the rounds
  per second of the same env and learner without rendering, target at least 15 frames per
  second;
- scale: the cost per seed and round of ``rlhf`` in each vector game at 1, 16, 64, 256 and 1024
  seeds (one vector env each), so a reader sees where batching saturates; ``--scale-figure
  PATH`` draws the curve;
- ray: a sweep of 24 small jobs from an empty store on the process pool and on the Ray backend
  (a private local Ray, started and stopped inside the timing), one job per trial and batched:
  the Ray backend's overhead per job (needs the ``ray`` extra).

A missed target is printed with the factor by which it is missed.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import gymnasium as gym
import numpy as np

import agents
import fpo_envs  # noqa: F401


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_linear_loop(penalty: str, seeds: int, rounds: int, seed: int = 0) -> np.ndarray:
    """The linear game and gradient leader as one numpy loop: no API, checks or history."""
    d, s, c, lr, gamma, width, peak = 50, 3, 0.1, 0.02, 0.1, 0.3, 10.0
    rng = np.random.default_rng(seed)
    ideal = np.zeros(d)
    ideal[:s] = 2.0
    w = np.zeros((seeds, d))
    w[:, :s] = 1.0
    w += rng.normal(0.0, 0.1, (seeds, d))
    y = np.zeros((seeds, d))
    for _ in range(rounds):
        u = peak * np.exp(-width * ((y - ideal) ** 2).sum(-1))  # label
        r = (w * y).sum(-1)
        w = (1 - 1e-4) * w - 0.005 * (2.0 * (r - u)[:, None] * y)  # follower step
        squares = y * y
        _ = (r - c * squares.sum(-1), np.sqrt(squares[:, :s].sum(-1)), np.sqrt(squares[:, s:].sum(-1)), r - u)  # info
        grad = w - 2.0 * c * y  # leader step under the updated RM
        if penalty != "none":
            sq = (y * y).sum(-1)
            if penalty == "practical":
                grad = grad - gamma * 2.0 * y
            else:
                r_new, u_new = (w * y).sum(-1), peak * np.exp(-width * ((y - ideal) ** 2).sum(-1))
                grad_u = (-2.0 * width * u_new)[:, None] * (y - ideal)
                grad = grad - gamma * ((w - grad_u) * sq[:, None] + (r_new - u_new)[:, None] * 2.0 * y)
        y = np.clip(y + lr * grad, -10.0, 10.0)
    return y


def verdict(ratio: float, target: float, higher_is_better: bool = False) -> str:
    """``met``, or ``MISSED`` with the factor by which the measured ratio misses ``target``."""
    met = ratio >= target if higher_is_better else ratio <= target
    if met:
        return "met"
    return f"MISSED by {target / ratio if higher_is_better else ratio / target:.2f}x"


LINEAR_TARGET = 1.5
"""The linear vector env's run against the bare loop's, at most."""
NEURAL_TARGET = 100
"""The paper loop's cost per seed against the neural vector env's at 256 seeds, at least."""


def linear(args: argparse.Namespace) -> None:
    n, r = args.linear_seeds, 300
    print(f"FPO/LinearRM-v0: {n} seeds x {r} rounds in one vector env, against a bare numpy loop of the same arithmetic")
    print(f"{'learner':<15}{'vector env s':>14}{'bare loop s':>13}{'ratio':>8}   target <= {LINEAR_TARGET}x")
    for name, penalty in (("rlhf", "none"), ("fpo-practical", "practical"), ("fpo-relaxed", "relaxed")):
        ours = best_of(
            args.repeats, lambda name=name: agents.make(name, gym.make_vec("FPO/LinearRM-v0", num_envs=n), seed=0).learn(r)
        )
        bare = best_of(args.repeats, lambda penalty=penalty: bare_linear_loop(penalty, n, r))
        ratio = ours / bare
        print(f"{name:<15}{ours:>14.3f}{bare:>13.3f}{ratio:>7.2f}x   {verdict(ratio, LINEAR_TARGET)}")


def paper_neural_loop(penalty: str, rounds: int, seed: int = 0) -> None:
    """One seed of the paper's notebook loop for the neural game (its published structure)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)  # the notebook seeds the global generator; this benchmark runs alone
    d, inner, buffer_size, gamma = 10, 15, 50, 0.005
    ideal = torch.zeros(d)
    ideal[:2] = 2.5

    def utility(y):
        return 10.0 * torch.exp(-0.2 * ((y - ideal) ** 2).sum(-1))

    rm = nn.Sequential(nn.Linear(d, 32), nn.Softplus(), nn.Linear(32, 32), nn.Softplus(), nn.Linear(32, 1))
    with torch.no_grad():
        for m in rm:
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.1)
                m.bias.zero_()
    optimizer = torch.optim.Adam(rm.parameters(), lr=1e-3, weight_decay=1e-3)
    theta = torch.zeros(d, requires_grad=True)
    buffer_y, buffer_u = [], []
    for step in range(rounds):
        decay = 1.0 - (step / rounds) ** 4
        sigma, lr = 0.001 + 0.099 * decay, 0.001 + 0.049 * decay
        for _ in range(inner):
            y = theta + sigma * torch.randn(d)
            reward = rm(y).squeeze(-1)
            if penalty != "none":
                grads = torch.autograd.grad(reward, list(rm.parameters()), create_graph=True)
                norm = sum((g**2).sum() for g in grads)
                error = reward - utility(y).detach() if penalty == "relaxed" else 1.0
                pen = gamma * error * norm
            else:
                pen = 0.0
            objective = reward - 0.01 * (y**2).sum() - pen
            (grad,) = torch.autograd.grad(-objective, theta)
            with torch.no_grad():
                theta.sub_(lr * grad.clamp(-1.0, 1.0))
        with torch.no_grad():
            new = theta + sigma * torch.randn(5, d)
            buffer_y.extend(new)
            buffer_u.extend(utility(new))
        buffer_y, buffer_u = buffer_y[-buffer_size:], buffer_u[-buffer_size:]
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(rm(torch.stack(buffer_y)).squeeze(-1), torch.stack(buffer_u))
        loss.backward()
        optimizer.step()


def neural(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    r = args.neural_rounds
    sizes = (64, 256)
    print(f"\nFPO/NeuralRM-v0: {r} rounds, seconds per seed, the paper's notebook loop (one seed) against a vector env")
    print(
        f"{'learner':<15}{'paper loop':>12}"
        + "".join(f"{f'{n} seeds':>12}{'ratio':>8}" for n in sizes)
        + f"   target >= {NEURAL_TARGET}x at 256"
    )
    for name, penalty in (("rlhf", "none"), ("fpo-practical", "practical"), ("fpo-relaxed", "relaxed")):
        paper = best_of(args.repeats, lambda penalty=penalty: paper_neural_loop(penalty, r))
        line, ratio = f"{name:<15}{paper:>12.3f}", 0.0
        for n in sizes:
            ours = (
                best_of(
                    args.repeats,
                    lambda n=n, name=name: agents.make(name, gym.make_vec("FPO/NeuralRM-v0", num_envs=n), seed=0).learn(r),
                )
                / n
            )
            ratio = paper / ours
            line += f"{ours:>12.4f}{ratio:>7.0f}x"
        print(line + f"   {verdict(ratio, NEURAL_TARGET, higher_is_better=True)}")


def suite(args: argparse.Namespace) -> None:
    from agents import bench

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        bench.run("paper", out=out, workers=2, progress=False)
        first = time.perf_counter() - start
        start = time.perf_counter()
        bench.run("paper", out=out, workers=2, progress=False)
        again = time.perf_counter() - start
    print("\nthe paper suite (100 + 64 seeds, 2 workers), from an empty store and rerun")
    print(f"first run {first:8.1f} s   target < 600 s: {'met' if first < 600 else 'MISSED'}")
    print(f"rerun     {again:8.1f} s   target < 5 s:   {'met' if again < 5 else 'MISSED'}")


def _play_learner(env_id: str, seeds: int, rounds: int, config: dict, learner: str) -> None:
    env = gym.make_vec(env_id, num_envs=seeds, **agents.spec(learner).env_kwargs)  # an ensemble where it needs one
    agents.make(learner, env, seed=0, **config).learn(rounds)


BASELINES = ("rlhf-anchor", "rlhf-cap", "rlhf-ensemble-mean", "rlhf-ensemble-worst", "rlhf-ensemble-uwo", "rrm", "perfgd")


def baselines(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    print("\nbaselines: seconds per round (all seeds) of each baseline against rlhf, same game and seeds")
    print(f"{'learner':<22}{'linear s/round':>15}{'x rlhf':>8}{'neural s/round':>16}{'x rlhf':>8}")
    games = (("FPO/LinearRM-v0", 100, 300, {}), ("FPO/NeuralRM-v0", 64, 100, {"schedule_rounds": 4000}))
    times: dict[str, list[float]] = {}
    for learner in ("rlhf", *BASELINES):
        for env_id, seeds, rounds, config in games:
            run = {"env_id": env_id, "seeds": seeds, "rounds": rounds, "config": config, "learner": learner}
            times.setdefault(learner, []).append(best_of(args.repeats, lambda run=run: _play_learner(**run)) / rounds)
    for learner, (lin, neu) in times.items():
        ref_lin, ref_neu = times["rlhf"]
        print(f"{learner:<22}{lin:>15.5f}{lin / ref_lin:>7.1f}x{neu:>16.5f}{neu / ref_neu:>7.1f}x")


def exact(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    print("\nexact: seconds per round (all seeds) of fpo-exact against fpo-practical, same vector env")
    print(f"{'game':<18}{'seeds':>6}{'practical':>11}{'exact 1':>10}{'ratio':>7}{'exact 3':>10}{'ratio':>7}")
    for env_id, seeds, rounds, config in (
        ("FPO/LinearRM-v0", 100, 300, {}),
        ("FPO/NeuralRM-v0", 64, 100, {"schedule_rounds": 4000}),
    ):
        times = {}
        for name, extra in (("practical", {}), ("exact 1", {}), ("exact 3", {"unroll_steps": 3})):
            learner = "fpo-practical" if name == "practical" else "fpo-exact"

            run = {"env_id": env_id, "seeds": seeds, "rounds": rounds, "config": {**config, **extra}, "learner": learner}
            times[name] = best_of(args.repeats, lambda run=run: _play_learner(**run)) / rounds
        p, e1, e3 = times["practical"], times["exact 1"], times["exact 3"]
        print(f"{env_id:<18}{seeds:>6}{p:>11.5f}{e1:>10.5f}{e1 / p:>6.1f}x{e3:>10.5f}{e3 / p:>6.1f}x")


def bare_token_loop(seeds: int, rounds: int, seed: int = 0) -> None:
    """The token game and rlhf's REINFORCE as one numpy loop: no API, checks, KL or history."""
    from fpo_envs.models.tokens import token_features

    vocab, length, k, d = 12, 8, 8, 6
    features = token_features(vocab, d, 2, 4, 0.5, 1.0, 0.3, 0)
    ideal = np.zeros(d)
    ideal[:2] = 5.0
    rng = np.random.default_rng(seed)
    theta = np.zeros((seeds, length, vocab + 1, vocab))
    w = np.zeros((seeds, d))
    w[:, :2] = 1.0
    w += rng.normal(0.0, 0.1, (seeds, d))
    copies = np.arange(seeds)[:, None]
    for _ in range(rounds):
        tokens, probs = np.zeros((seeds, k, length), int), []
        prev = np.full((seeds, k), vocab)
        draws = rng.random((seeds, k, length))
        for t in range(length):
            logits = theta[copies, t, prev]
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            probs.append(p)
            prev = tokens[..., t] = np.minimum((p.cumsum(-1) < draws[..., t, None]).sum(-1), vocab - 1)
        y = features[tokens].sum(-2)
        r = (w[:, None] * y).sum(-1)
        u = 10.0 * np.exp(-0.05 * ((y - ideal) ** 2).sum(-1))
        w = (1 - 1e-4) * w - 5e-4 * (2.0 * (r - u)[..., None] * y).mean(1)
        advantage = r - (r.sum(1, keepdims=True) - r) / (k - 1)
        prevs = np.concatenate([np.full((seeds, k, 1), vocab), tokens[..., :-1]], -1)
        for t in range(length):
            step = advantage[..., None] * (np.eye(vocab)[tokens[..., t]] - probs[t]) / k
            np.add.at(theta, (copies.repeat(k, 1), t, prevs[..., t]), step)


TOKEN_LEARNERS = ("rlhf", "fpo-practical", "fpo-relaxed", "fpo-exact", "rlhf-anchor", "rlhf-cap")


def token(args: argparse.Namespace) -> None:
    seeds, rounds = 64, 600
    print(f"\ntoken: {seeds} seeds x {rounds} rounds of each learner in one vector env (FPO/TokenRM-v0)")
    linear_rounds = 300
    linear_s = best_of(args.repeats, lambda: _play_learner("FPO/LinearRM-v0", seeds, linear_rounds, {}, "rlhf"))
    bare = best_of(args.repeats, lambda: bare_token_loop(seeds, rounds))
    per_linear = linear_s / (linear_rounds * seeds)
    print(f"linear rlhf: {per_linear * 1e6:.2f} us per round and seed; bare numpy token loop: {bare:.2f} s")
    print(f"{'learner':<16}{'wall s':>8}{'us/round/seed':>15}{'x linear':>10}{'x bare':>8}   target rlhf <= 60 s")
    for learner in TOKEN_LEARNERS:
        wall = best_of(args.repeats, lambda learner=learner: _play_learner("FPO/TokenRM-v0", seeds, rounds, {}, learner))
        per = wall / (rounds * seeds)
        verdict = ("met" if wall <= 60 else "MISSED") if learner == "rlhf" else ""
        print(f"{learner:<16}{wall:>8.2f}{per * 1e6:>15.2f}{per / per_linear:>9.1f}x{wall / bare:>7.2f}x   {verdict}")


FRAMES = 20
"""Frames (and rounds) per timing of the render benchmark."""


def render(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    print("\nrender: frames per second of env.render() after 200 rounds, and rounds per second without rendering")
    print(f"{'env':<20}{'frame px':>12}{'frames/s':>10}{'rounds/s':>10}   target >= 15 frames/s")
    for env_id, config in (("FPO/LinearRM-v0", {}), ("FPO/NeuralRM-v0", {"schedule_rounds": 400}), ("FPO/TokenRM-v0", {})):
        env = gym.make(env_id, render_mode="rgb_array")
        agent = agents.make("rlhf", env, seed=0, **config)
        agent.learn(200)
        frame = env.render()
        fps = FRAMES / best_of(args.repeats, lambda env=env: [env.render() for _ in range(FRAMES)])
        rounds = FRAMES / best_of(args.repeats, lambda agent=agent: agent.learn(FRAMES))
        size = f"{frame.shape[1]}x{frame.shape[0]}"
        print(f"{env_id:<20}{size:>12}{fps:>10.1f}{rounds:>10.0f}   {'met' if fps >= 15 else 'MISSED'}")


RAY_SUITE = {
    "name": "ray-overhead",
    # One job per seed (batch 1): many small jobs, where a backend's overhead shows.
    "games": [
        {"id": "FPO/LinearRM-v0", "seeds": 8, "rounds": 300, "batch": 1},
        {"id": "FPO/NeuralRM-v0", "seeds": 4, "rounds": 200, "batch": 1},
    ],
    "learners": [{"id": "rlhf"}, {"id": "fpo-relaxed"}],
}
"""The sweep of the Ray overhead measurement: 24 jobs of a fraction of a second to a few seconds."""


def ray(args: argparse.Namespace) -> None:
    from agents import bench
    from agents.bench import ray_backend, runner

    suite = bench.suite_from_dict(RAY_SUITE)
    jobs = len(runner.plan(suite))
    print(f"\nray: {jobs} jobs ({RAY_SUITE['name']}, 2 workers) from an empty store, the process pool against Ray")
    print(f"{'backend':<34}{'wall s':>8}{'s per job over the pool':>26}")
    times = {}
    batched = ray_backend.TRIALS_PER_WORKER
    for name, backend, per_worker in (
        ("local (process pool)", "local", None),
        ("ray, one job per trial", "ray", 10**6),
        (f"ray, at most {batched} trials per worker", "ray", batched),
    ):
        ray_backend.TRIALS_PER_WORKER = per_worker or batched
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            bench.run(suite, out=out, backend=backend, workers=2, progress=False, plots=False, reps=200)
            times[name] = time.perf_counter() - start
        over = (times[name] - times["local (process pool)"]) / jobs
        print(f"{name:<34}{times[name]:>8.1f}{over:>26.2f}")
    ray_backend.TRIALS_PER_WORKER = batched


SCALE_SEEDS = (1, 16, 64, 256, 1024)
SCALE_GAMES = (("FPO/LinearRM-v0", 300), ("FPO/NeuralRM-v0", 40), ("FPO/TokenRM-v0", 100))
"""Each vector game of the scale curve and the rounds each of its timings plays."""


def scale(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    print("\nscale: microseconds per seed and round of rlhf in one vector env, by the number of seeds")
    print(f"{'env':<18}" + "".join(f"{n:>10}" for n in SCALE_SEEDS) + "   1 seed / 1024 seeds")
    curves = {}
    for env_id, rounds in SCALE_GAMES:
        config = {"schedule_rounds": 4000} if "Neural" in env_id else {}
        costs = []
        for n in SCALE_SEEDS:
            run = {"env_id": env_id, "seeds": n, "rounds": rounds, "config": config, "learner": "rlhf"}
            costs.append(best_of(args.repeats, lambda run=run: _play_learner(**run)) / (rounds * n) * 1e6)
        curves[env_id] = costs
        print(f"{env_id:<18}" + "".join(f"{c:>10.2f}" for c in costs) + f"{costs[0] / costs[-1]:>12.0f}x")
    if args.scale_figure:
        draw_scale(curves, args.scale_figure)
        print(f"figure: {args.scale_figure}")


def draw_scale(curves: dict[str, list[float]], path: str) -> None:
    """The scale curve: cost per seed-round against seeds, log-log, one line per game."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for (env_id, costs), marker in zip(curves.items(), "osD"):
        ax.plot(SCALE_SEEDS, costs, marker=marker, label=env_id)
    ax.set(xscale="log", yscale="log", xlabel="seeds in one vector env", ylabel="microseconds per seed and round")
    ax.set_xticks(SCALE_SEEDS, [str(n) for n in SCALE_SEEDS])
    ax.set_title("Batching seeds: cost per seed-round of rlhf (1 CPU thread)")
    ax.tick_params(axis="x", which="minor", bottom=False)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = ["linear", "neural", "suite", "exact", "baselines", "token", "render", "scale", "ray"]
    parser.add_argument("--only", nargs="+", choices=parts, default=parts)
    parser.add_argument("--linear-seeds", type=int, default=1000)
    parser.add_argument("--neural-rounds", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--scale-figure", help="draw the scale curve into this PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    for part in parts:
        if part in args.only:
            globals()[part](args)


if __name__ == "__main__":
    main()
