"""fpo-bench: suites, the resumable store, the statistics, the backends and the command."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rliable")

from agents import bench  # noqa: E402
from agents.bench import runner, stats  # noqa: E402
from agents.bench.store import Store, StoreError  # noqa: E402
from agents.common import faults  # noqa: E402
from agents.common.base import Agent  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny",
    "games": [
        {"id": "FPO/LinearRM-v0", "rounds": 40, "seeds": 6, "batch": 3},
        {"id": "FPO/NeuralRM-v0", "rounds": 12, "seeds": 4, "batch": 2, "metric_prefix": "theta_"},
    ],
    "learners": [{"id": "rlhf"}, {"id": "fpo-relaxed"}],
}


def _tiny(**changes):
    return bench.suite_from_dict({**TINY, **changes})


def _run(suite, out, **kwargs):
    kwargs.setdefault("reps", 200)
    return bench.run(suite, out=out, backend=kwargs.pop("backend", "serial"), progress=False, **kwargs)


def test_the_shipped_suites_parse_and_name_registered_learners():
    assert set(bench.shipped_suites()) >= {"paper", "quick", "text", "baselines"}
    paper = bench.load_suite("paper")
    assert {(g.id, g.seeds, g.rounds) for g in paper.games} == {("FPO/LinearRM-v0", 100, 300), ("FPO/NeuralRM-v0", 64, 4000)}
    quick = bench.load_suite("quick")
    assert {e.id for e in quick.learners} >= {"rlhf", "fpo-practical", "fpo-relaxed", "ppo"}
    assert bench.load_suite("text").games[0].id == "FPO/TextRM-v0"


@pytest.mark.parametrize(
    "change, match",
    [
        ({"games": [{"id": "FPO/Chess-v0", "rounds": 3, "seeds": 2}]}, "unknown game 'FPO/Chess-v0'"),
        ({"learners": [{"id": "no-such-learner"}]}, "unknown learner 'no-such-learner'"),
        ({"learners": [{"id": "rlhf", "confg": {}}]}, r"unknown key\(s\) \['confg'\]"),
        ({"games": [{"id": "FPO/LinearRM-v0", "rounds": 0, "seeds": 2}]}, "rounds must be a whole number >= 1"),
        ({"learners": [{"id": "rlhf"}, {"id": "rlhf"}]}, "appear twice"),
        ({"seedz": 3}, "unknown key"),
        ({"learners": [{"id": "rlhf", "games": ["FPO/TextRM-v0"]}]}, "not in the suite"),
    ],
)
def test_bad_suites_are_clear_errors(change, match):
    with pytest.raises(bench.SuiteError, match=match):
        _tiny(**change)


def test_a_suite_file_that_does_not_parse_names_itself(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[[games]\nid = ")
    with pytest.raises(bench.SuiteError, match="broken.toml does not parse as TOML"):
        bench.load_suite(path)
    with pytest.raises(bench.SuiteError, match="no suite 'nope'"):
        bench.load_suite("nope")


def test_an_unknown_config_key_fails_the_suite_before_any_run(tmp_path):
    # Each learner's config is built when the suite is checked, so the error names the entry
    # and the key, before a worker starts (not a worker's traceback).
    with pytest.raises(bench.SuiteError, match=r"learners\[0\] \('rlhf'\), config on the linear game: unknown config key"):
        _tiny(learners=[{"id": "rlhf", "config": {"gama": 1.0}}])
    suite = bench.suite_from_dict(TINY).with_learners([bench.LearnerEntry(id="fpo-relaxed", label="bad", config={"lr": "x"})])
    with pytest.raises(bench.SuiteError, match=r"learners\[2\] \('bad'\).*GradientConfig.lr must be a number"):
        _run(suite, tmp_path, plots=False)
    assert not (tmp_path / "store").exists()


def test_runs_are_stored_once_and_reruns_skip_them(tmp_path):
    board = _run(_tiny(), tmp_path, plots=False)
    text = board.read_text()
    assert "FPO/LinearRM-v0" in text and "fpo-relaxed" in text and "P(> rlhf)" in text
    store = Store(tmp_path / "store")
    files = sorted(store.runs.rglob("*.npz"))
    assert len(files) == 2 * 6 + 2 * 4
    stamps = {f: f.stat().st_mtime_ns for f in files}
    _run(_tiny(), tmp_path, plots=False)
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # nothing rerun
    # Adding a learner runs only its runs.
    _run(_tiny(learners=TINY["learners"] + [{"id": "fpo-practical"}]), tmp_path, plots=False)
    new = sorted(store.runs.rglob("*.npz"))
    assert len(new) == len(files) + 10 and all(f.stat().st_mtime_ns == stamps[f] for f in files)


def test_stored_histories_are_the_learners_histories(tmp_path):
    import gymnasium as gym

    import agents

    _run(_tiny(), tmp_path, plots=False)
    jobs = runner.plan(_tiny())
    job = next(j for j in jobs if j["env"] == "FPO/LinearRM-v0" and j["label"] == "fpo-relaxed")
    header, history = Store(tmp_path / "store").read(job["hashes"][1])
    direct = agents.make("fpo-relaxed", gym.make("FPO/LinearRM-v0"), seed=job["seeds"][1]).learn(40)
    np.testing.assert_allclose(history["true_utility"], direct["true_utility"], rtol=1e-6)
    assert header["summary"]["final_true_utility"] == pytest.approx(direct["true_utility"][-1])
    assert header["key"]["seed"] == job["seeds"][1] and header["key"]["batch"] is None  # copies equal single envs
    neural = next(j for j in jobs if j["env"] == "FPO/NeuralRM-v0")
    assert neural["keys"][1]["batch"] == [neural["seeds"][0], 2]  # shared noise stream: its batch is part of the key
    header, history = Store(tmp_path / "store").read(neural["hashes"][0])
    assert history["theta"].shape == (12, 10)  # measured at the policy mean theta


def test_a_foreign_file_is_an_error_that_names_it(tmp_path):
    # (Corrupt runs are moved to quarantine and rerun: tests/bench/test_store_integrity.py.)
    _run(_tiny(), tmp_path, plots=False)
    store = Store(tmp_path / "store")
    victim = sorted(store.runs.rglob("*.npz"))[0]
    victim.unlink()
    _run(_tiny(), tmp_path, plots=False, reps=202)  # a deleted run reruns
    assert victim.exists()
    (store.runs / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="notes.txt is not a run of this results store"):
        Store(tmp_path / "store")
    (store.runs / "notes.txt").unlink()
    other = sorted(store.runs.rglob("*.npz"))[1]
    target = store.path("f" * 24)
    target.parent.mkdir(exist_ok=True)
    other.rename(target)
    with pytest.raises(StoreError, match="foreign or renamed"):
        Store(tmp_path / "store").header("f" * 24)


def _subprocess_env(**extra):
    """This process's environment for a child, without crash points (unless given)."""
    env = {k: v for k, v in os.environ.items() if k not in (faults.CRASH_AT_ROUND, faults.CRASH_AFTER_RUNS)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_a_sweep_killed_midway_keeps_its_finished_runs_and_completes_on_rerun(tmp_path):
    suite = tmp_path / "kill.toml"
    suite.write_text('[[games]]\nid = "FPO/LinearRM-v0"\nrounds = 40\nseeds = 6\nbatch = 1\n\n[[learners]]\nid = "fpo-relaxed"\n')
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "agents.bench",
        "run",
        str(suite),
        "--out",
        str(out),
        "--workers",
        "1",
        "--backend",
        "serial",
        "--no-plots",
        "--reps",
        "100",
    ]
    # The sweep ends itself (as a kill would: no index saved, no report) once 3 runs are stored.
    crashed = subprocess.run(cmd, env=_subprocess_env(FPO_CRASH_AFTER_RUNS="3"), capture_output=True, text=True, timeout=300)
    assert crashed.returncode == faults.CRASH_EXIT_CODE, crashed.stderr
    runs = out / "store" / "runs"
    finished = {p: p.stat().st_mtime_ns for p in runs.rglob("*.npz")}
    assert len(finished) == 3 and not (out / "leaderboard.md").exists()
    result = subprocess.run(cmd, env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list(runs.rglob("*.npz"))) == 6
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # finished runs were not redone
    assert not list(runs.rglob(".tmp-*"))
    # The completed sweep holds the numbers of an uninterrupted one.
    _run(bench.load_suite(suite), tmp_path / "full", plots=False, reps=100)
    for job in runner.plan(bench.load_suite(suite)):
        for h in job["hashes"]:
            _, resumed = Store(out / "store").read(h)
            _, full = Store(tmp_path / "full" / "store").read(h)
            for key in full:
                np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)


def test_local_pool_and_serial_give_the_same_numbers(tmp_path):
    _run(_tiny(), tmp_path / "serial", plots=False)
    _run(_tiny(), tmp_path / "local", backend="local", workers=2, plots=False)
    for job in runner.plan(_tiny()):
        for h in job["hashes"]:
            _, a = Store(tmp_path / "serial" / "store").read(h)
            _, b = Store(tmp_path / "local" / "store").read(h)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_statistics_come_from_rliable():
    from rliable import metrics

    rng = np.random.default_rng(0)
    scores = {
        label: stats.LearnerScores(label, np.arange(20), rng.uniform(lo, hi, 20), np.ones(20), np.zeros(20), np.zeros(20))
        for label, lo, hi in [("rlhf", 0.1, 0.6), ("fpo-relaxed", 0.5, 1.0)]
    }
    rows = {row["learner"]: row for row in stats.game_table(scores, reps=300, seed=1)}
    for label, s in scores.items():
        assert rows[label]["iqm"] == pytest.approx(metrics.aggregate_iqm(s.final[:, None]))
        assert rows[label]["collapse_rate"] == pytest.approx(np.mean(s.final < 0.5))
        assert rows[label]["iqm_low"] <= rows[label]["iqm"] <= rows[label]["iqm_high"]
    poi = metrics.probability_of_improvement(scores["fpo-relaxed"].final[:, None], scores["rlhf"].final[:, None])
    assert rows["fpo-relaxed"]["p_improve"] == pytest.approx(poi) and rows["fpo-relaxed"]["p_improve"] > 0.8
    assert stats.game_table(scores, reps=300, seed=1) == stats.game_table(scores, reps=300, seed=1)


def test_report_writes_tables_and_figures_and_is_reused(tmp_path):
    pytest.importorskip("matplotlib")
    board = _run(_tiny(), tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "leaderboard.md",
        "leaderboard.csv",
        "per_seed.csv",
        "interval_estimates.png",
        "curves_linearrm.png",
        "curves_neuralrm.png",
        "portrait_linearrm.png",
        "portrait_neuralrm.png",
        "performance_profiles.png",
    } <= names
    lines = (tmp_path / "per_seed.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 6 + 2 * 4
    before = board.stat().st_mtime_ns
    _run(_tiny(), tmp_path)
    assert board.stat().st_mtime_ns == before  # same runs, same options: the report is kept
    stamp = json.loads((tmp_path / "report.json").read_text())
    assert len(stamp["signature"]) == 64


def test_a_users_learner_is_benchmarked_with_one_command(tmp_path):
    (tmp_path / "my_algo.py").write_text(
        "import agents\n\n"
        "def abs_relaxed(z):\n    return abs(z.reward - z.utility) * (z.grad_params * z.grad_params).sum(-1)\n\n"
        "agents.register_penalty('abs-relaxed', abs_relaxed)\n"
        "agents.register('abs-fpo', kwargs={'penalty': 'abs-relaxed'}, games=('linear', 'neural'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.bench",
            "run",
            "quick",
            "--learner",
            "my_algo:abs-fpo",
            "--seeds",
            "3",
            "--rounds",
            "20",
            "--game",
            "FPO/LinearRM-v0",
            "--out",
            "out",
            "--no-plots",
            "--reps",
            "100",
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "| abs-fpo | 3 |" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "agents.bench", "run", "no-such-suite"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no suite 'no-such-suite'" in bad.stderr


def test_the_ray_backend_names_its_extra_when_missing(without_ray):
    with pytest.raises(ImportError, match=r'pip install "fpo-envs\[ray\]"'):
        bench.run(_tiny(), out="unused", backend="ray")
    with pytest.raises(ValueError, match="unknown backend"):
        bench.run(_tiny(), out="unused", backend="slurm")


@pytest.mark.slow
def test_the_ray_backend_writes_the_same_runs(tmp_path, ray_token):
    pytest.importorskip("ray")
    import ray

    suite = _tiny(games=[TINY["games"][0], {**TINY["games"][1], "seeds": 2}])
    _run(suite, tmp_path / "serial", plots=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _run(suite, tmp_path / "ray", backend="ray", workers=2, plots=False)
    finally:
        ray.shutdown()
    serial, on_ray = (tmp_path / "serial" / "leaderboard.md").read_text(), (tmp_path / "ray" / "leaderboard.md").read_text()
    assert serial == on_ray
    for job in runner.plan(suite):
        for h in job["hashes"]:
            _, a = Store(tmp_path / "serial" / "store").read(h)
            _, b = Store(tmp_path / "ray" / "store").read(h)
            np.testing.assert_array_equal(a["true_utility"], b["true_utility"])


def test_the_paper_suite_on_the_linear_game_reproduces_the_papers_finding(tmp_path):
    """RLHF collapses on every one of the 100 seeds; relaxed FPO (oracle gradient, the
    linear game's default) ends above 0.95 of the optimum on every seed, CI included."""
    board = bench.run("paper", out=tmp_path, games=["FPO/LinearRM-v0"], backend="serial", progress=False, reps=500, plots=False)
    rows = {r["learner"]: r for r in __import__("csv").DictReader(open(board.with_suffix(".csv")))}
    assert float(rows["rlhf"]["collapse_rate"]) == 1.0 and float(rows["rlhf"]["collapse_rate_low"]) == 1.0
    assert float(rows["fpo-relaxed"]["iqm_low"]) > 0.95
    per_seed = [r for r in __import__("csv").DictReader(open(tmp_path / "per_seed.csv")) if r["learner"] == "fpo-relaxed"]
    assert len(per_seed) == 100 and min(float(r["final_norm"]) for r in per_seed) > 0.95
    assert float(rows["fpo-relaxed"]["p_improve"]) == 1.0


def test_the_text_game_runs_through_the_benchmark(tiny_text, tmp_path):
    suite = bench.suite_from_dict(
        {
            "name": "tiny-text",
            "games": [{"id": "FPO/TextRM-v0", "rounds": 2, "seeds": 2, "kwargs": dict(tiny_text)}],
            "learners": [
                {"id": "rlhf", "config": {"n_candidates": 2, "max_new_tokens": 6, "min_new_tokens": 1}},
                {"id": "fpo-relaxed", "config": {"n_candidates": 2, "max_new_tokens": 6, "min_new_tokens": 1}},
            ],
        }
    )
    board = _run(suite, tmp_path, plots=False)
    assert "| fpo-relaxed | 2 |" in board.read_text()
    header = Store(tmp_path / "store").header(runner.plan(suite)[0]["hashes"][0])
    assert header["summary"]["optimum"] == 5.0 and header["key"]["batch"] is None


def test_a_text_suite_reports_curves_a_held_out_evaluation_with_cis_and_example_answers(tiny_text, tmp_path):
    import gymnasium as gym

    from agents.bench import text_report

    config = {"n_candidates": 2, "max_new_tokens": 6, "min_new_tokens": 1}
    suite = bench.suite_from_dict(
        {
            "name": "tiny-text",
            "games": [{"id": "FPO/TextRM-v0", "rounds": 3, "seeds": 2, "kwargs": dict(tiny_text)}],
            "learners": [{"id": "rlhf", "config": config}, {"id": "fpo-relaxed", "config": config}],
        }
    )
    _run(suite, tmp_path)
    report = (tmp_path / "text_report.md").read_text()
    for row in ("| base |", "| rlhf | 2 |", "| fpo-relaxed | 2 |", "Held-out evaluation", "round 3"):
        assert row in report, row
    for figure in ("text_curves.png", "text_eval.png"):
        assert (tmp_path / figure).stat().st_size > 10_000
    with open(tmp_path / "text_rounds.csv") as fh:
        rounds = list(csv.DictReader(fh))
    # Every round of the 2 learners x 2 seeds x 3 rounds, its metrics as the store has them.
    assert len(rounds) == 12 and {(r["learner"], r["seed"]) for r in rounds} == {
        (label, str(seed)) for label in ("rlhf", "fpo-relaxed") for seed in (0, 1)
    }
    store = Store(tmp_path / "store")
    env = gym.make("FPO/TextRM-v0", **tiny_text)
    env.reset(seed=0)
    by_label, stamps = {}, {}
    for job in runner.plan(suite):
        by_label.setdefault(job["label"], []).extend(job["hashes"])
        for h in job["hashes"]:
            folder = runner.artifacts_dir(store.root, h)
            rows = text_report.read_rounds(store, h)
            _, history = store.read(h)
            np.testing.assert_allclose(history["true_utility"], [r["true_utility"] for r in rows], rtol=1e-6)
            seed = str(store.header(h)["key"]["seed"])
            logged = [float(r["true_utility"]) for r in rounds if r["learner"] == job["label"] and r["seed"] == seed]
            np.testing.assert_allclose(logged, history["true_utility"], rtol=1e-5)
            evaluation = json.loads((folder / "eval.json").read_text())
            # The evaluation's numbers are the oracle's and the RM heads' scores of the answers.
            np.testing.assert_allclose(
                evaluation["quality"], env.unwrapped.oracle.quality(evaluation["prompts"], evaluation["answers"]), rtol=1e-5
            )
            features = env.unwrapped.reward_model.features(evaluation["prompts"], evaluation["answers"])
            np.testing.assert_allclose(evaluation["reward_final"], features @ np.load(folder / "rm_params.npy"), rtol=1e-5)
            np.testing.assert_allclose(evaluation["reward_initial"], features @ env.unwrapped.reward_model.params, rtol=1e-5)
            stamps[h] = (folder / "eval.json").stat().st_mtime_ns
    # Another report reuses the cached evaluations.
    _run(suite, tmp_path, reps=201)
    assert all(runner.artifacts_dir(store.root, h).joinpath("eval.json").stat().st_mtime_ns == t for h, t in stamps.items())
    # Win rates: each pair's two rates add up to one, a policy ties with itself.
    evals = text_report.evaluations(store, "FPO/TextRM-v0", dict(tiny_text), by_label)
    evals["copy of base"] = evals["base"]
    result = text_report.eval_statistics(evals, reps=100)
    for (a, b), (p, low, high) in result["wins"].items():
        assert low <= p <= high and abs(p + result["wins"][(b, a)][0] - 1) < 1e-9
    assert result["wins"][("base", "copy of base")][0] == 0.5


def test_a_gold_suite_reports_kl_peaks_and_the_final_rms_preference_against_the_upper_bound(tiny_text, tmp_path, monkeypatch):
    import gymnasium as gym

    from agents.bench import text_report

    config = {"n_candidates": 2, "max_new_tokens": 6, "min_new_tokens": 1, "grad_accum": 1, "lr": 5e-2}
    kwargs = {**tiny_text, "profile": "gold", "guard_floor": 1e6}
    suite = bench.suite_from_dict(
        {
            "name": "tiny-gold",
            "games": [{"id": "FPO/TextRM-v0", "rounds": 3, "seeds": 2, "kwargs": kwargs}],
            "learners": [{"id": "rlhf", "config": config}, {"id": "gold-bon", "config": config}],
        }
    )
    _run(suite, tmp_path)
    report = (tmp_path / "text_report.md").read_text()
    for text in ("KL to base", "Does U peak and fall?", "prefer the worse answer", "| rlhf | "):
        assert text in report, text
    assert (tmp_path / "text_kl.png").stat().st_size > 10_000
    with open(tmp_path / "text_rounds.csv") as fh:
        kl = [float(r["kl_to_base"]) for r in csv.DictReader(fh)]
    assert len(kl) == 12 and min(kl) >= 0 and max(kl) > 0
    # The error rates against a direct computation from the cached answers and the final heads.
    store = Store(tmp_path / "store")
    by_label = {}
    for job in runner.plan(suite):
        by_label.setdefault(job["label"], []).extend(job["hashes"])
    evals = text_report.evaluations(store, "FPO/TextRM-v0", kwargs, by_label)
    env = gym.make("FPO/TextRM-v0", **kwargs).unwrapped
    # The evaluation cached the RM features of its answers, so the check reads them and never
    # computes features (or loads the models) again.
    for label, hashes in by_label.items():
        for h, run in zip(hashes, evals[label]):
            cached = np.load(runner.artifacts_dir(store.root, h) / "features.npy")
            np.testing.assert_allclose(cached, env.reward_model.features(run["prompts"], run["answers"]), rtol=1e-5)

    def no_features(*args):
        raise AssertionError("features computed again")

    monkeypatch.setattr(text_report._Evaluator, "features", no_features)
    errors = text_report.preference_errors(store, "FPO/TextRM-v0", kwargs, by_label, evals)
    assert set(errors) == {"rlhf"} and len(errors["rlhf"]) == 2
    for i, row in enumerate(errors["rlhf"]):
        own, up = evals["rlhf"][i], evals["gold-bon"][i]
        head = np.load(runner.artifacts_dir(store.root, by_label["rlhf"][i]) / "rm_params.npy")
        r_own = env.reward_model.features(own["prompts"], own["answers"]) @ head
        r_up = env.reward_model.features(up["prompts"], up["answers"]) @ head
        pairs = [(a - b, ra - rb) for a, b, ra, rb in zip(own["quality"], up["quality"], r_own, r_up) if abs(a - b) > 1e-9]
        assert row["prompts"] == len(pairs)
        if pairs:
            expected = np.mean([0.5 if dr == 0 else float(np.sign(dr) != np.sign(du)) for du, dr in pairs])
            assert row["error_final"] == pytest.approx(expected, abs=1e-6)
        assert 0.0 <= row["prefers_worse_final"] <= 1.0
    stats = text_report.preference_statistics(errors, reps=100)
    # Same seed, same intervals: rliable resamples with numpy's global generator, which the
    # report seeds (a random_state argument alone does not reach it).
    assert text_report.preference_statistics(errors, reps=100) == stats
    assert text_report.eval_statistics(evals, reps=100) == text_report.eval_statistics(evals, reps=100)
    # ... and in another process, whatever its string-hash seed (a report written twice must not
    # move its CIs).
    (tmp_path / "inputs.json").write_text(json.dumps({"evals": evals, "errors": errors}))
    here = _statistics_json(tmp_path / "inputs.json")
    for hash_seed in ("1", "2"):
        assert _statistics_json(tmp_path / "inputs.json", hash_seed) == here
    for key, value in stats["rlhf"].items():
        if key != "prompts":
            assert value[1] <= value[0] <= value[2], key
    assert text_report.preference_errors(store, "FPO/TextRM-v0", kwargs, {"rlhf": by_label["rlhf"]}, evals) == {}


_STATISTICS = """
import json, sys
from agents.bench import text_report
inputs = json.load(open(sys.argv[1]))
e = text_report.eval_statistics(inputs["evals"], reps=100)
e["wins"] = {"|".join(k): v for k, v in e["wins"].items()}
print(json.dumps({"eval": e, "preferences": text_report.preference_statistics(inputs["errors"], reps=100)}, sort_keys=True))
"""


def _statistics_json(inputs: Path, hash_seed: str | None = None) -> str:
    """The text report's statistics of ``inputs``, computed in a fresh process."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed} if hash_seed else None
    out = subprocess.run([sys.executable, "-c", _STATISTICS, str(inputs)], env=env, capture_output=True, text=True, check=True)
    return out.stdout


def test_within_iteration_slopes_are_the_least_squares_slopes_against_the_position():
    """The iterated loop's table: per seed, the mean over whole iterations of the least-squares
    slope against the position inside the iteration; a part-iteration at the end is left out."""
    from agents.bench import text_report

    m, rng = 4, np.random.default_rng(0)
    position = np.tile(np.arange(m, dtype=float), 3)
    runs = []
    for offset in (0.0, 5.0):
        noise = rng.normal(size=3 * m)
        run = {
            "reward_gap": np.concatenate([offset + 0.5 * position, [99.0]]),  # the 13th round: dropped
            "quality_gap": np.concatenate([-2.0 * position + np.repeat([0.0, 1.0, -3.0], m), [-99.0]]),
            "response_tokens": np.concatenate([noise, [0.0]]),
        }
        runs.append(run)
    slopes = text_report.iteration_slopes({"rlhf": runs}, m)
    np.testing.assert_allclose(slopes["rlhf"]["reward_gap"], [0.5, 0.5])
    np.testing.assert_allclose(slopes["rlhf"]["quality_gap"], [-2.0, -2.0])
    blocks = [np.polyfit(np.arange(m), runs[0]["response_tokens"][i * m : (i + 1) * m], 1)[0] for i in range(3)]
    assert slopes["rlhf"]["response_tokens"][0] == pytest.approx(np.mean(blocks))
    lines = text_report._iteration_lines(slopes, m, reps=100, seed=0)
    assert text_report._iteration_lines(slopes, m, reps=100, seed=0) == lines
    row = next(line for line in lines if line.startswith("| rlhf |"))
    assert "| 2 | 0.5000 [0.5000, 0.5000] | -2.0000 [-2.0000, -2.0000] |" in row
    assert text_report.iteration_slopes({"rlhf": [{k: v[:3] for k, v in runs[0].items()}]}, m)["rlhf"]["reward_gap"].size == 0


def test_the_late_change_is_the_last_fifth_minus_the_middle_three_fifths():
    """A policy that rises, then falls in the last fifth, gets a negative change; one that is level
    with noise of mean zero around a peak gets none, where the fall from the noisy peak would not."""
    from agents.bench import text_report

    rounds = np.arange(20, dtype=float)
    falls = np.where(rounds < 16, 1.0, -1.0)  # middle (rounds 5-16) 1.0, last fifth (17-20) -1.0
    level = np.tile([0.5, -0.5], 10)
    runs = [{"quality_gap": falls, "reward_gap": rounds / 10}, {"quality_gap": level, "reward_gap": level}]
    changes = text_report.late_changes({"rlhf": runs})
    np.testing.assert_allclose(changes["rlhf"]["quality_gap"], [-2.0, 0.0])
    np.testing.assert_allclose(changes["rlhf"]["reward_gap"], [(17.5 - 9.5) / 10, 0.0])
    lines = text_report._late_lines(changes, 20, reps=100, seed=0)
    assert lines[1].startswith("### The end against the middle: the last 4 rounds minus rounds 5-16")
    row = next(line for line in lines if line.startswith("| rlhf |"))
    assert row.startswith("| rlhf | 2 | -1.000 [-2.000, 0.000] |")
    assert (
        text_report.late_changes({"rlhf": [{"quality_gap": np.ones(4), "reward_gap": np.ones(4)}]})["rlhf"]["quality_gap"].size
        == 0
    )


def test_a_text_run_stored_under_the_earlier_metric_names_reads_under_todays(tmp_path):
    """Text runs stored before the game's metrics were renamed (signal_norm: the quality gap,
    noise_norm: the answer's length) report as runs under today's names do."""
    from agents.bench import report, text_report

    store = Store(tmp_path / "store")
    rounds = np.arange(4, dtype=np.float32)
    old = {"true_utility": rounds, "proxy_reward": rounds, "signal_norm": rounds - 2, "noise_norm": rounds + 10}
    old |= {"rm_error": rounds * 0, "diverged": np.zeros(4, dtype=bool)}
    summary = {"optimum": 5.0, "final_true_utility": 3.0, "peak_true_utility": 3.0, "final_proxy_reward": 3.0}
    summary |= {"final_signal_norm": 1.0, "final_noise_norm": 13.0, "diverged_rounds": 0}
    h = store.write({"env": "FPO/TextRM-v0", "seed": 0}, old, summary)
    folder = runner.artifacts_dir(store.root, h)
    folder.mkdir(parents=True)
    row = {"round": 0, "true_utility": 1.0, "proxy_reward": 0.5, "signal_norm": -0.5, "noise_norm": 12.0}
    row |= {"rm_error": 0.1, "reference_utility": 1.5, "reference_reward": 0.4, "response_tokens": 12}
    (folder / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    (read,) = text_report.read_rounds(store, h)
    assert read["quality_gap"] == -0.5 and read["response_tokens"] == 12
    assert not {"signal_norm", "noise_norm"} & set(read)
    assert text_report.curves([read])["quality_gap"].tolist() == [-0.5]
    jobs = [{"env": "FPO/TextRM-v0", "label": "rlhf", "hashes": [h]}]
    scores = report.collect(None, store, jobs)["FPO/TextRM-v0"]["rlhf"]
    np.testing.assert_array_equal(scores.histories["quality_gap"][:, 0], rounds - 2)
    np.testing.assert_array_equal(scores.histories["response_tokens"][:, 0], rounds + 10)
    assert np.isnan(scores.noise).all()  # the noise norm is the vector games'; the text game has none


def test_a_text_run_without_artifacts_is_a_clear_error(tmp_path):
    from agents.bench import text_report

    with pytest.raises(StoreError, match="has no artifacts"):
        text_report.read_rounds(Store(tmp_path / "store"), "0" * 24)


@pytest.mark.parametrize(
    "setting",
    [
        # From a warm, length-biased RM head, fitted once into this test's cache.
        {"rm_init": "warm", "rm_bias": 0.5, "warm_samples": 2},
        # The gold judge with the RM retrained every 4 rounds: the checkpoint of round 10 holds
        # the two rounds buffered since the retraining after round 8.
        {"profile": "gold", "guard_floor": 1e6, "retrain_every": 4},
    ],
    ids=["warm", "gold-iterated"],
)
def test_a_killed_text_run_resumes_from_its_checkpoint_and_equals_an_uninterrupted_one(tiny_text, tmp_path, setting):
    kwargs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in {**tiny_text, **setting}.items())
    suite = tmp_path / "text.toml"
    suite.write_text(
        f'[[games]]\nid = "FPO/TextRM-v0"\nrounds = 30\nseeds = 1\nkwargs = {{ {kwargs} }}\n\n'
        '[[learners]]\nid = "fpo-relaxed"\nconfig = { n_candidates = 2, max_new_tokens = 6, min_new_tokens = 1 }\n'
    )
    env = _subprocess_env(OMP_NUM_THREADS="1", FPO_ENVS_CACHE=str(tmp_path / "cache"))

    def command(out):
        return [
            sys.executable,
            "-m",
            "agents.bench",
            "run",
            str(suite),
            "--out",
            str(out),
            "--backend",
            "serial",
            "--no-plots",
            "--reps",
            "50",
        ]

    subprocess.run(command(tmp_path / "full"), env=env, check=True, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    h = runner.plan(bench.load_suite(suite))[0]["hashes"][0]
    # The sweep ends itself after round 15, its checkpoint of round 10 and 15 metrics rows written.
    crashed = subprocess.run(command(killed), env={**env, "FPO_CRASH_AT_ROUND": "15"}, capture_output=True, timeout=600)
    assert crashed.returncode == faults.CRASH_EXIT_CODE, crashed.stderr
    work = killed / "store" / "work" / h
    assert len((work / "metrics.jsonl").read_text().splitlines()) == 15
    assert [p.name for p in Agent.checkpoints(work)] == ["round_000010.fpo"]
    # Resumed from round 10: a run played again from round 0 would stop at round 5.
    result = subprocess.run(command(killed), env={**env, "FPO_CRASH_AT_ROUND": "5"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    _, resumed = Store(killed / "store").read(h)
    _, full = Store(tmp_path / "full" / "store").read(h)
    assert resumed["true_utility"].shape == (30,)
    for key in full:
        np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)
    assert not (killed / "store" / "work" / h).exists()
    warm_heads = list((tmp_path / "cache" / "warm-rm").glob("head-*.npz"))
    assert len(warm_heads) == (setting.get("rm_init") == "warm")
    rows = [json.loads(line) for line in (runner.artifacts_dir(killed / "store", h) / "metrics.jsonl").read_text().splitlines()]
    full_rows = (runner.artifacts_dir(tmp_path / "full" / "store", h) / "metrics.jsonl").read_text().splitlines()
    assert rows == [json.loads(line) for line in full_rows]  # every round once, each as the uninterrupted run's
    m = setting.get("retrain_every", 1)
    assert [row["retrained"] for row in rows] == [(t + 1) % m == 0 for t in range(30)]


def test_a_learner_gets_the_env_it_registered_as_needing(tmp_path):
    """The ensemble learners' runs are made on five RMs; an entry's own env_kwargs win; a
    learner that needs nothing keeps its run keys (so stored results stay valid)."""
    suite = _tiny(
        games=[{"id": "FPO/LinearRM-v0", "rounds": 5, "seeds": 2, "batch": 2}],
        learners=[
            {"id": "rlhf"},
            {"id": "rlhf-ensemble-worst"},
            {"id": "rlhf-ensemble-uwo", "label": "uwo-3", "env_kwargs": {"rm_ensemble": 3}},
        ],
    )
    jobs = {job["label"]: job for job in runner.plan(suite)}
    assert jobs["rlhf"]["env_kwargs"] == {} and jobs["rlhf"]["keys"][0]["env_kwargs"] == {}
    assert jobs["rlhf-ensemble-worst"]["env_kwargs"] == {"rm_ensemble": 5}
    assert jobs["uwo-3"]["keys"][0]["env_kwargs"] == {"rm_ensemble": 3}
    board = _run(suite, tmp_path / "out", reps=50)
    with open(board.with_suffix(".csv")) as fh:
        assert {row["learner"] for row in csv.DictReader(fh)} == {"rlhf", "rlhf-ensemble-worst", "uwo-3"}


# The token game ------------------------------------------------------------------------------

TOKEN = {
    "name": "tiny-token",
    "games": [
        {"id": "FPO/TokenRM-v0", "rounds": 30, "seeds": 4, "batch": 4},
        {
            "id": "FPO/TokenRM-v0",
            "label": "retrain every 5",
            "rounds": 30,
            "seeds": 4,
            "batch": 4,
            "kwargs": {"retrain_every": 5},
        },
    ],
    "learners": [{"id": "rlhf"}, {"id": "fpo-practical"}],
}


def test_the_token_suite_parses_with_two_entries_of_the_game():
    suite = bench.load_suite("token")
    assert [(g.name, g.rounds, g.seeds, g.batch, g.kwargs) for g in suite.games] == [
        ("FPO/TokenRM-v0", 600, 64, 64, {}),
        ("FPO/TokenRM-v0 (retrain every 25)", 600, 64, 64, {"retrain_every": 25}),
    ]
    assert [e.name for e in suite.learners] == [
        "rlhf",
        "fpo-practical",
        "fpo-relaxed",
        "fpo-exact",
        "rlhf-anchor",
        "rlhf-cap",
        "rlhf (best-of-n)",
    ]
    assert all(e.config == {} for e in suite.learners[:-1]) and suite.learners[-1].config == {"update": "best-of-n"}
    jobs = runner.plan(suite)
    assert len(jobs) == 2 * 7 and {len(j["seeds"]) for j in jobs} == {64}
    # The two entries' runs have their own keys (the env arguments are part of a run's key).
    by_game = {}
    for job in jobs:
        by_game.setdefault(job["game"], set()).update(job["hashes"])
    assert [len(v) for v in by_game.values()] == [7 * 64, 7 * 64] and not set.intersection(*by_game.values())
    assert {j["keys"][0]["env_kwargs"].get("retrain_every") for j in jobs} == {None, 25}
    # --game FPO/TokenRM-v0 keeps the learners of the token game (not PPO's, of the vector games only).
    mixed = bench.suite_from_dict(
        {
            "name": "mixed",
            "games": [{"id": "FPO/LinearRM-v0", "rounds": 5, "seeds": 2}, {"id": "FPO/TokenRM-v0", "rounds": 5, "seeds": 2}],
            "learners": [{"id": "rlhf"}, {"id": "ppo"}, {"id": "fpo-practical"}],
        }
    )
    only = mixed.with_overrides(games=["FPO/TokenRM-v0"])
    bench.check_suite(only)
    assert [e.id for e in only.learners] == ["rlhf", "fpo-practical"]


def test_two_entries_of_one_game_need_distinct_labels_and_learners_can_pick_one():
    twice = {**TOKEN, "games": [TOKEN["games"][0], {**TOKEN["games"][1], "label": ""}]}
    with pytest.raises(bench.SuiteError, match=r"game entry \['FPO/TokenRM-v0'\] appears twice; give each entry .* `label`"):
        bench.suite_from_dict(twice)
    picked = bench.suite_from_dict(
        {**TOKEN, "learners": [{"id": "rlhf"}, {"id": "fpo-practical", "games": ["FPO/TokenRM-v0 (retrain every 5)"]}]}
    )
    assert {(j["game"], j["label"]) for j in runner.plan(picked)} == {
        ("FPO/TokenRM-v0", "rlhf"),
        ("FPO/TokenRM-v0 (retrain every 5)", "rlhf"),
        ("FPO/TokenRM-v0 (retrain every 5)", "fpo-practical"),
    }
    # --game picks an entry by its name, or every entry of a game by its id.
    assert [g.name for g in picked.with_overrides(games=["FPO/TokenRM-v0 (retrain every 5)"]).games] == [
        "FPO/TokenRM-v0 (retrain every 5)"
    ]
    assert len(picked.with_overrides(games=["FPO/TokenRM-v0"]).games) == 2


def test_the_store_keeps_a_learners_own_records():
    import gymnasium as gym

    from agents.families.gradient import GradientLeader
    from agents.families.token import TokenLeader

    token, linear = gym.make("FPO/TokenRM-v0"), gym.make("FPO/LinearRM-v0")
    assert runner.stored_keys(token, TokenLeader) == token.unwrapped.info_keys + ("kl_to_base", "diverged")
    # A family without records of its own stores what it stored before.
    assert runner.stored_keys(linear, GradientLeader) == runner.stored_keys(linear) == linear.unwrapped.info_keys + ("diverged",)


def test_a_token_suite_stores_kl_to_base_resumes_and_reports_the_token_columns_and_figure(tmp_path):
    import gymnasium as gym

    import agents

    pytest.importorskip("matplotlib")
    suite = bench.suite_from_dict(TOKEN)
    board = _run(suite, tmp_path)
    store = Store(tmp_path / "store")
    jobs = runner.plan(suite)
    files = sorted(store.runs.rglob("*.npz"))
    assert len(files) == 2 * 2 * 4
    # A stored run holds the learner's kl_to_base record, equal to a direct run's.
    job = next(j for j in jobs if j["game"] == "FPO/TokenRM-v0 (retrain every 5)" and j["label"] == "rlhf")
    header, history = store.read(job["hashes"][2])
    direct = agents.make("rlhf", gym.make("FPO/TokenRM-v0", retrain_every=5), seed=job["seeds"][2]).learn(30)
    for key in ("kl_to_base", "true_utility", "rm_margin_to_optimum"):
        np.testing.assert_allclose(history[key], direct[key], rtol=1e-5, err_msg=key)
    assert header["summary"]["final_kl_to_base"] == pytest.approx(direct["kl_to_base"][-1], rel=1e-5)
    # Resumes: a rerun plays nothing; a deleted run's job (one vector env of 4 seeds) alone is played again.
    stamps = {f: f.stat().st_mtime_ns for f in files}
    _run(suite, tmp_path, plots=False)
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    victim = store.path(job["hashes"][0])
    victim.unlink()
    _run(suite, tmp_path, plots=False)
    replayed = {store.path(h) for h in job["hashes"]}
    assert victim.exists() and all(f.stat().st_mtime_ns == t for f, t in stamps.items() if f not in replayed)
    np.testing.assert_array_equal(store.read(job["hashes"][2])[1]["kl_to_base"], history["kl_to_base"])
    text = board.read_text()
    assert "### FPO/TokenRM-v0: 30 rounds" in text and "### FPO/TokenRM-v0 (retrain every 5): 30 rounds" in text
    assert "| RM prefers output | U falls from peak | falls and RM prefers | final KL to base |" in text
    with open(board.with_suffix(".csv")) as fh:
        rows = {(r["game"], r["learner"]): r for r in csv.DictReader(fh)}
    row = rows[("FPO/TokenRM-v0 (retrain every 5)", "rlhf")]
    with open(tmp_path / "per_seed.csv") as fh:
        seeds = [r for r in csv.DictReader(fh) if (r["game"], r["learner"]) == ("FPO/TokenRM-v0 (retrain every 5)", "rlhf")]
    kl = [float(r["final_kl_to_base"]) for r in seeds]
    assert float(row["final_kl_to_base"]) == pytest.approx(np.mean(kl))
    assert float(row["final_kl_to_base_low"]) <= np.mean(kl) <= float(row["final_kl_to_base_high"])
    # RM prefers output: the share of seeds whose margin over the last 10 rounds is above zero.
    margins = [store.read(h, ("rm_margin_to_optimum",))[1]["rm_margin_to_optimum"][-10:].mean() for h in job["hashes"]]
    assert float(row["rm_prefers_output"]) == pytest.approx(np.mean(np.array(margins) > 0))
    assert [float(r["rm_prefers_output"]) for r in seeds] == [float(m > 0) for m in margins]
    for figure in ("token_tokenrm.png", "token_tokenrm_retrain-every-5.png", "curves_tokenrm_retrain-every-5.png"):
        assert (tmp_path / figure).stat().st_size > 10_000, figure
    # fpo-bench report writes the same tables from the store into another folder, playing nothing.
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = bench.write_report(suite, tmp_path / "store", tmp_path / "docs", reps=200, plots=False)
    assert again.read_text() == text and {f: f.stat().st_mtime_ns for f in files} == stamps
    with pytest.raises(StoreError, match="16 runs are not in"):
        bench.write_report(suite.with_overrides(rounds=31), tmp_path / "store", tmp_path / "x", reps=50)


def test_fpo_bench_report_names_a_missing_store(tmp_path, capsys):
    from agents.bench.cli import main

    assert main(["report", "token", "--store", str(tmp_path / "nowhere")]) == 2
    assert "nowhere is not a results store (no runs/ folder)" in capsys.readouterr().err


def test_a_token_run_stored_without_kl_to_base_still_reports(tmp_path):
    """A run stored before the learners' own records were kept: no KL column or token figure
    for its learner, the rest of the report as before."""
    from agents.bench import report

    store = Store(tmp_path / "store")
    rounds = np.linspace(4.0, 2.0, 12, dtype=np.float32)
    old = {"true_utility": rounds, "proxy_reward": rounds, "rm_error": rounds * 0, "rm_margin_to_optimum": rounds - 3}
    old |= {"hack_share": rounds * 0, "diverged": np.zeros(12, dtype=bool)}
    summary = {"optimum": 9.87, "final_true_utility": 2.0, "peak_true_utility": 4.0, "final_proxy_reward": 2.0}
    hashes = [store.write({"env": "FPO/TokenRM-v0", "seed": s}, old, {**summary, "diverged_rounds": 0}) for s in range(3)]
    jobs = [{"env": "FPO/TokenRM-v0", "label": "rlhf", "hashes": hashes}]
    scores = report.collect(None, store, jobs)["FPO/TokenRM-v0"]["rlhf"]
    assert "kl_to_base" not in scores.histories
    assert set(scores.extras) == {"rm_prefers_output", "falls_from_peak", "collapses"}
    # Smoothed over 10 rounds, U ends at 0.89 of its peak: not a fall.
    np.testing.assert_array_equal(scores.extras["falls_from_peak"], [0.0, 0.0, 0.0])
    fallen = {**old, "true_utility": np.concatenate([np.full(10, 4.0), np.full(10, 2.9)]).astype(np.float32)}
    fallen |= {k: fallen["true_utility"] for k in ("proxy_reward", "rm_error", "hack_share")}
    fallen |= {"rm_margin_to_optimum": np.ones(20, np.float32), "diverged": np.zeros(20, dtype=bool)}
    hashes = [store.write({"env": "FPO/TokenRM-v0", "seed": s}, fallen, {**summary, "diverged_rounds": 0}) for s in (7, 8)]
    fell = report.collect(None, store, [{"env": "FPO/TokenRM-v0", "label": "rlhf", "hashes": hashes}])["FPO/TokenRM-v0"]["rlhf"]
    np.testing.assert_array_equal(fell.extras["falls_from_peak"], [1.0, 1.0])  # 2.9 <= 0.75 * 4
    np.testing.assert_array_equal(fell.extras["collapses"], [1.0, 1.0])
    np.testing.assert_array_equal(scores.extras["rm_prefers_output"], [0.0, 0.0, 0.0])  # mean margin of the last 10 < 0
    row = stats.game_table({"rlhf": scores}, reps=50)[0]
    assert row["rm_prefers_output"] == 0.0 and "final_kl_to_base" not in row


def test_the_token_figure_is_drawn_from_histories(tmp_path):
    pytest.importorskip("matplotlib")
    from agents.bench import plots

    rng = np.random.default_rng(0)
    runs = {
        label: {
            "true_utility": 4 + rng.normal(0, 0.3, (40, 5)).cumsum(0) * 0.1,
            "proxy_reward": 10 - np.arange(40)[:, None] * 0.1 + rng.normal(0, 0.3, (40, 5)),
            "rm_margin_to_optimum": rng.normal(0.5, 0.3, (40, 5)),
            "kl_to_base": np.arange(40)[:, None] * 0.2 + rng.uniform(0, 0.1, (40, 5)),
        }
        for label in ("rlhf", "fpo-relaxed")
    }
    path = plots.plot_token_game(runs, tmp_path / "token.png", "FPO/TokenRM-v0", optimum=9.87, retrain_every=10)
    assert path.stat().st_size > 20_000
    lo, mid, hi = plots.median_band(runs["rlhf"]["true_utility"])
    assert np.all(lo <= mid) and np.all(mid <= hi)
    with pytest.raises(ValueError, match="needs the histories"):
        plots.plot_token_game({"rlhf": {"true_utility": runs["rlhf"]["true_utility"]}}, tmp_path / "x.png", "t")
