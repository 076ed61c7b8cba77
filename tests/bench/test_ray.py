"""The Ray backend as a cluster user meets it: bad input and dead addresses fail fast in one line,
a lost trial is retried, a job that keeps failing is named while the others are stored, a
two-node cluster gives the local backend's leaderboard, progress moves as jobs finish, and
SIGTERM or SIGINT leaves no Ray process behind.

Ray's GCS and raylet listen on every interface whatever address they advertise (Ray 2.60), so
the clusters these tests start use token authentication with a token made for the test: nothing
without it can use them. Every cluster is shut down by its test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from agents import bench
from agents.bench import cli, ray_backend

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "name": "tiny-ray",
    "games": [{"id": "FPO/LinearRM-v0", "seeds": 3, "rounds": 12, "batch": 1}],  # one job per seed: several trials
    "learners": [{"id": "rlhf"}, {"id": "fpo-practical"}, {"id": "fpo-relaxed"}],
}


def _suite(**changes):
    return bench.suite_from_dict({**TINY, **changes})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


@pytest.fixture(autouse=True)
def token(ray_token):
    """Every Ray instance of this module authenticates with the test process's token (conftest)."""
    return ray_token


# Bad input: one line, exit code 2, nothing started -----------------------------------------------


@pytest.mark.parametrize("address", ["foo:bar", "127.0.0.1:99999", "http://x:1", "no-port", ":6379", "ray://"])
def test_a_malformed_address_is_one_line_and_exit_2(address, capsys, tmp_path):
    code, err = _cli(["run", "quick", "--backend", "ray", "--ray-address", address, "--out", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "is not a Ray address" in err and "ray start --head" in err
    with pytest.raises(ValueError, match="not a Ray address"):
        bench.run(_suite(), out=tmp_path, backend="ray", ray_address=address)


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_workers_below_one_are_refused(workers, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "quick", "--workers", workers, "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "--workers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="workers must be a whole number >= 1"):
        bench.run(_suite(), out=tmp_path, backend="serial", workers=int(workers) if workers != "two" else 0)


def test_the_missing_extra_is_one_line_and_exit_2(without_ray, capsys, tmp_path):
    code, err = _cli(["run", "quick", "--backend", "ray", "--out", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and 'pip install "fpo-envs[ray]"' in err


def test_a_dead_address_fails_fast_naming_it(capsys, tmp_path):
    pytest.importorskip("ray")
    port = _free_port()
    start = time.monotonic()
    code, err = _cli(["run", "quick", "--backend", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path)], capsys)
    assert time.monotonic() - start < 10
    assert code == 2 and err.count("\n") == 1
    assert f"127.0.0.1:{port}" in err and f"ray start --head --port {port}" in err


def test_auto_without_a_cluster_says_how_to_start_one(tmp_path):
    """In a process of its own, as a user runs it (Ray's logging then writes to the real stderr)."""
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="r", dir="/tmp")}  # no cluster file of another test
    cmd = [sys.executable, "-m", "agents.bench", "run", "quick", "--backend", "ray", "--ray-address", "auto"]
    out = subprocess.run([*cmd, "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    err = out.stderr
    assert out.returncode == 2 and err.count("\n") == 1 and "found no Ray cluster" in err and "ray start --head" in err


def test_a_token_at_hand_turns_authentication_on_as_ray_start_does(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    ray_backend._honour_token()
    assert "RAY_AUTH_MODE" not in os.environ  # no token: Ray's default
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x" * 32)
    ray_backend._honour_token()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray_backend._honour_token()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"  # the user's choice stands


def test_small_jobs_are_batched_into_balanced_trials():
    jobs = [{"rounds": r, "seeds": [0] * s} for r, s in [(10, 1)] * 9 + [(100, 1)]]
    trials = ray_backend.batches(jobs, workers=2)
    assert len(trials) == 8 and sorted(len(t) for t in trials) == [1, 1, 1, 1, 1, 1, 2, 2]
    assert sum(len(t) for t in trials) == 10 and [len(t) for t in ray_backend.batches(jobs[:3], 4)] == [1, 1, 1]


# Running on Ray -----------------------------------------------------------------------------------


def _leaderboard(out: Path) -> str:
    text = (out / "leaderboard.md").read_text()
    return text


@pytest.mark.slow
def test_a_lost_trial_is_retried_and_progress_moves_per_job(tmp_path, monkeypatch, token):
    """A worker killed mid-trial (a crash point ends its process at round 5, once) is retried;
    the leaderboard is the serial backend's, and the bar advanced once per job."""
    pytest.importorskip("ray")
    from agents.bench import runner

    suite = _suite()
    bench.run(suite, out=tmp_path / "serial", backend="serial", progress=False, reps=200, plots=False)
    updates = []

    class Bar:
        def update(self, n=1):
            updates.append(time.monotonic())

        def close(self):
            pass

    monkeypatch.setattr(runner, "_bar", lambda total, enabled: Bar())
    marker = tmp_path / "crashed"
    monkeypatch.setenv("FPO_CRASH_AT_ROUND", "5")
    monkeypatch.setenv("FPO_CRASH_ONCE", str(marker))
    bench.run(suite, out=tmp_path / "ray", backend="ray", workers=2, reps=200, plots=False, ray_retries=2)
    assert marker.exists()  # a worker did die
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ and os.environ["RAY_AUTH_MODE"] == "token"  # as before the sweep
    assert _leaderboard(tmp_path / "ray") == _leaderboard(tmp_path / "serial")
    assert len(updates) == len(runner.plan(suite))


FAILING = textwrap.dedent(
    """
    import agents
    from agents.families.gradient import GradientLeader


    class AlwaysFails(GradientLeader):
        def _update(self, obs, info):
            raise RuntimeError("this learner always fails")


    agents.register("always-fails", AlwaysFails, kwargs={"penalty": "none"}, games=("linear",))
    """
)


@pytest.mark.slow
def test_a_job_that_keeps_failing_is_named_and_the_others_are_stored(tmp_path, monkeypatch, capsys, token):
    pytest.importorskip("ray")
    (tmp_path / "failing_learner.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    args = ["run", str(_toml(tmp_path)), "--backend", "ray", "--workers", "2", "--ray-retries", "0", "--out", str(out)]
    code, err = _cli([*args, "--learner", "failing_learner:always-fails", "--no-plots", "--reps", "100"], capsys)
    assert code == 1
    assert "always-fails on FPO/LinearRM-v0, seed 0" in err and "this learner always fails" in err
    assert "rlhf" not in err.split("failed after their retries")[1]
    stored = list((out / "store").rglob("*.npz"))
    assert len(stored) == 3 * 3  # the three built-in learners' runs


def _toml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny-ray"\n[[games]]\nid = "FPO/LinearRM-v0"\nseeds = 3\nrounds = 12\nbatch = 1\n'
        '[[learners]]\nid = "rlhf"\n[[learners]]\nid = "fpo-practical"\n[[learners]]\nid = "fpo-relaxed"\n'
    )
    return path


@pytest.mark.slow
def test_a_two_node_cluster_gives_the_local_leaderboard(tmp_path, token):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    games = [{"id": "FPO/LinearRM-v0", "seeds": 3, "rounds": 12, "batch": 1}, {"id": "FPO/NeuralRM-v0", "seeds": 2, "rounds": 6}]
    suite = _suite(games=games)
    bench.run(suite, out=tmp_path / "local", backend="local", workers=2, progress=False, reps=200, plots=False)
    node = {"num_cpus": 1, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        cluster.add_node(**node)
        bench.run(suite, out=tmp_path / "ray", backend="ray", workers=2, reps=200, plots=False, ray_address=cluster.address)
        assert not ray.is_initialized()  # the driver disconnected; the cluster is the user's
    finally:
        cluster.shutdown()
    assert _leaderboard(tmp_path / "ray") == _leaderboard(tmp_path / "local")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_sweep_and_the_ray_it_started(tmp_path, signum):
    pytest.importorskip("ray")
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}  # the token of the autouse fixture
    toml = tmp_path / "long.toml"
    toml.write_text('name = "long"\n[[games]]\nid = "FPO/NeuralRM-v0"\nseeds = 2\nrounds = 20000\n[[learners]]\nid = "rlhf"\n')
    cmd = [sys.executable, "-m", "agents.bench", "run", str(toml), "--backend", "ray", "--workers", "1"]
    cmd += ["--out", str(tmp_path / "o")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(Path(ray_tmp).rglob("worker-*.out")) and time.monotonic() < deadline:
            time.sleep(0.5)  # a trial's worker is up
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err
    deadline = time.monotonic() + 20
    while _ray_processes(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes(ray_tmp) == []


def _ray_processes(marker: str) -> list[str]:
    """Command lines of this machine's processes that mention ``marker`` (Ray's temp folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and str(os.getpid()) != proc.name:
            found.append(cmdline[:200])
    return found
