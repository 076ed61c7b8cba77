"""The Ray backend of ``fpo-bench``: join or start Ray, run the jobs as Tune trials, retry lost ones.

What a cluster user can expect (``docs/benchmark.md``, "Ray" says how to set one up):

- **Where.** No address (and no ``RAY_ADDRESS``): a private local Ray instance with ``workers``
  CPUs, stopped at the end (``address="local"``, so a head already running on the machine is
  left alone). ``--ray-address auto`` (or ``RAY_ADDRESS=auto``) joins the cluster started on this
  machine by ``ray start --head``; ``host:port`` joins that head's GCS; ``ray://host:port`` goes
  through Ray Client. A joined cluster is given no resources (it has its own) and is left
  running.
- **Fast, clear failure.** A ``host:port`` is first checked by opening a TCP connection, then
  joined with Ray's own retries bounded by the connection timeout (30 s by default); a failure is
  one line naming the address and the fix (:class:`RayConnectError`), and Ray's connection logs
  go to a file, not the terminal.
- **Authentication.** Ray's token authentication is honoured as ``ray start`` decides it: with
  ``RAY_AUTH_MODE`` unset, a token in ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` or
  ``~/.ray/auth_token`` turns it on for the join (``RAY_AUTH_MODE=token``); ``RAY_AUTH_MODE=disabled``
  turns it off.
- **Faults.** A trial whose worker or node dies is retried ``retries`` times (Tune's
  ``FailureConfig(max_failures=...)``); a job that still fails is named, with its error, in a
  :class:`SweepFailed` raised once every other trial has finished and stored its runs.
- **Progress.** Each job reports when its runs are stored, so the bar moves as jobs finish.
- **Overhead.** Jobs are batched into at most ``4 * workers`` trials (several small jobs per
  trial), since starting a trial costs about a second.
- **Interruption.** SIGINT or SIGTERM stops the sweep and shuts down the Ray instance the
  backend started (a joined cluster is only disconnected).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Callable

CONNECT_TIMEOUT_S = 30.0
"""Seconds to join a cluster before giving up (``--ray-timeout``)."""
RETRIES = 2
"""Times a trial whose worker or node died is tried again (``--ray-retries``)."""
TRIALS_PER_WORKER = 4
"""Jobs are batched into at most this many trials per worker."""

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")


class RayConnectError(RuntimeError):
    """Joining or starting Ray failed; the message is one line naming the address and the fix."""


class SweepFailed(RuntimeError):
    """Some jobs failed after their retries; every other job finished and its runs are stored.

    Attributes:
        failed: ``(job, error)`` for each failed job, ``error`` a one-line description.
    """

    def __init__(self, failed: list[tuple[dict, str]]):
        self.failed = failed
        lines = [f"{len(failed)} job(s) failed after their retries; the other runs are stored:"]
        lines += [f"  {describe(job)}: {error}" for job, error in failed]
        super().__init__("\n".join(lines))


def describe(job: dict) -> str:
    """A job as a person names it: learner, game and seeds."""
    seeds = job["seeds"]
    span = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
    return f"{job['label']} on {job['env']}, {span}"


def check_address(address: str | None) -> str | None:
    """``address`` as given, checked: ``None``, ``auto``, ``local``, ``host:port`` (port 1-65535)
    or ``ray://host:port``; anything else is a ``ValueError`` that shows the forms."""
    if address is None:
        return None
    text = address.strip()
    if text in ("auto", "local"):
        return text
    bare = text[len("ray://") :] if text.startswith("ray://") else text
    match = _HOST_PORT.match(bare)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(
            f"--ray-address {address!r} is not a Ray address; use 'auto' (the cluster `ray start --head` "
            "started on this machine), HOST:PORT of a head's GCS (e.g. 10.0.0.5:6379) or ray://HOST:PORT (Ray Client)"
        )
    return text


def resolve_address(address: str | None) -> str | None:
    """The address a sweep joins: ``address``, else ``RAY_ADDRESS``, else ``None`` (a private
    local Ray), checked by :func:`check_address`."""
    return check_address(address if address is not None else os.environ.get("RAY_ADDRESS") or None)


def _token_available() -> bool:
    """Whether a Ray authentication token is at hand where Ray looks for one."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if path and Path(path).expanduser().is_file():
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def _honour_token() -> None:
    """Ray's rule for ``ray start``, for the join: a token at hand and ``RAY_AUTH_MODE`` unset
    turn token authentication on (``ray.init`` with an address sends none otherwise)."""
    if "RAY_AUTH_MODE" not in os.environ and _token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def _reachable(address: str, timeout: float) -> str | None:
    """``None`` if a TCP connection to ``host:port`` opens within ``timeout``, else why not."""
    bare = address[len("ray://") :] if address.startswith("ray://") else address
    host, port = bare.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 10.0)):
            return None
    except TimeoutError:
        return f"no answer within {min(timeout, 10.0):.0f} s"
    except OSError as err:
        return err.strerror or str(err)


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send this process's standard error (Ray's C++ logs write to it directly) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        saved = os.dup(2)
        try:
            os.dup2(log.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _bounded_retries(timeout: float) -> dict[str, str]:
    """Ray's settings that bound a join's retries to about ``timeout`` seconds (each attempt
    waits ``py_gcs_connect_timeout_s``; the attempts are ``gcs_server_port_wait_time_s``)."""
    per_try = max(1, min(5, int(timeout // 3)))
    return {
        "RAY_py_gcs_connect_timeout_s": str(per_try),
        "RAY_gcs_rpc_server_connect_timeout_s": str(per_try),
        "RAY_gcs_server_port_wait_time_s": str(max(1, int(timeout // (2 * per_try + 1)))),
    }


def connect(address: str | None, workers: int, timeout: float, log_dir: Path, verbose: bool = False) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a private local instance
    of ``workers`` CPUs (``ray.shutdown`` stops it; for a joined cluster it only disconnects).

    Raises:
        RayConnectError: one line naming the address and the fix.
    """
    import logging

    import ray

    if ray.is_initialized():
        return
    address = resolve_address(address)
    runtime_env = {"env_vars": _worker_env()}
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if address in (None, "local"):
        ray.init(address="local", num_cpus=workers, include_dashboard=False, runtime_env=runtime_env, **quiet)
        return
    _honour_token()
    if address not in ("auto",):
        why = _reachable(address, timeout)
        if why is not None:
            raise RayConnectError(
                f"cannot reach a Ray cluster at {address} ({why}): start one there with `ray start --head --port "
                f"{address.rsplit(':', 1)[1]}`, or pass the address `ray start` printed (--ray-address auto joins one "
                "on this machine)"
            )
    log = log_dir / "ray-connect.log"
    outcome: dict[str, Any] = {}

    def join() -> None:
        try:
            ray.init(address=address, runtime_env=runtime_env, **quiet)
        except BaseException as err:  # handed to the waiting thread
            outcome["error"] = err

    bounds = _bounded_retries(timeout)
    saved = {k: os.environ.get(k) for k in bounds}
    os.environ.update({k: v for k, v in bounds.items() if saved[k] is None})  # a user's own settings stand
    try:
        with contextlib.nullcontext() if verbose else _stderr_to(log):
            thread = threading.Thread(target=join, daemon=True, name="ray-connect")
            thread.start()
            thread.join(timeout)
    finally:
        for key, value in saved.items():
            _restore_env(key, value)
    where = "" if verbose else f"; Ray's log of the attempt: {log}"
    if thread.is_alive():
        raise RayConnectError(f"joining the Ray cluster at {address} timed out after {timeout:.0f} s (--ray-timeout){where}")
    if "error" in outcome:
        raise RayConnectError(_explain(address, outcome["error"]) + where) from outcome["error"]


def _explain(address: str, err: BaseException) -> str:
    """One line for a failed join: authentication, no cluster for ``auto``, or Ray's own words."""
    text = " ".join(str(e) for e in _chain(err))
    if "auth" in text.lower() or "UNAUTHENTICATED" in text:
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        return (
            f"the Ray cluster at {address} refused the connection's authentication (RAY_AUTH_MODE={mode}): if the "
            "cluster was started with token authentication, set RAY_AUTH_MODE=token and give its token in "
            "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
        )
    if address == "auto" and "Could not find any running Ray instance" in text:
        return "--ray-address auto found no Ray cluster on this machine: start one with `ray start --head`, or give HOST:PORT"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot join the Ray cluster at {address}: {first}"


def _chain(err: BaseException | None):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _worker_env() -> dict[str, str]:
    """What Ray's workers need of this process's environment: the import path (so a user's
    learner module and this checkout import there) and the crash points of fault tests."""
    from agents.common import faults

    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.update({k: os.environ[k] for k in faults.CRASH_VARIABLES if os.environ.get(k)})
    return env


def batches(jobs: list[dict], workers: int) -> list[list[dict]]:
    """``jobs`` dealt into at most ``TRIALS_PER_WORKER * workers`` trials, largest first, each
    trial's jobs of similar total cost (a greedy deal onto the lightest trial)."""
    count = max(1, min(len(jobs), TRIALS_PER_WORKER * max(1, workers)))
    order = sorted(jobs, key=lambda j: -j["rounds"] * len(j["seeds"]))
    trials: list[list[dict]] = [[] for _ in range(count)]
    loads = [0] * count
    for job in order:
        i = loads.index(min(loads))
        trials[i].append(job)
        loads[i] += job["rounds"] * len(job["seeds"])
    return [t for t in trials if t]


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises ``KeyboardInterrupt`` in the main thread, as SIGINT does, so the sweep's
    ``finally`` blocks run (and shut Ray down) either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Session:
    """Ray joined or started for one sweep (a context manager: :meth:`run` inside it).

    Entering connects (:func:`connect`) and turns SIGTERM into ``KeyboardInterrupt``; leaving
    shuts down the Ray instance it started (a joined cluster is only disconnected)."""

    def __init__(
        self,
        store_root: Path,
        workers: int,
        address: str | None = None,
        timeout: float = CONNECT_TIMEOUT_S,
        retries: int = RETRIES,
        verbose: bool = False,
    ):
        self.root, self.workers, self.address = Path(store_root).resolve(), workers, address
        self.timeout, self.retries, self.verbose = timeout, retries, verbose
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "Session":
        import ray

        # The settings below, and RAY_AUTH_MODE (Ray's token rule and Ray itself may set it), hold
        # for this sweep only: the process's environment is as it was afterwards.
        for name in ("TUNE_DISABLE_SIGINT_HANDLER", "TUNE_PRINT_ALL_TRIAL_ERRORS", "RAY_AIR_NEW_OUTPUT", "RAY_AUTH_MODE"):
            self._stack.callback(_restore_env, name, os.environ.get(name))
        # Tune's own SIGINT handler would end the experiment quietly; the interrupt should reach us.
        os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        if not self.verbose:  # Tune's new console output prints a summary table even at verbose=0
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        self._stack.enter_context(_sigterm_as_interrupt())
        try:
            connect(self.address, self.workers, self.timeout, self.root / "ray", self.verbose)
        except BaseException:
            self._stack.close()
            raise
        self._stack.callback(ray.shutdown)  # stops what connect started; only disconnects from a joined cluster
        # ray.init installs its own SIGTERM handler in the main thread (it exits at once): ours again.
        self._stack.enter_context(_sigterm_as_interrupt())
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def run(self, jobs: list[dict], done: Callable[[dict], None], play: Callable[[dict, str], Any]) -> None:
        """Play ``jobs`` as Ray Tune trials (module docstring), each job by ``play(job, store_root)``
        (:func:`agents.bench.runner.run_job`); ``done(job)`` as each job's runs are stored.
        Raises :class:`SweepFailed` once the other trials have finished."""
        from ray import tune

        by_key = {job["hashes"][0]: job for job in jobs}
        reported: set[str] = set()
        failed: dict[str, str] = {}

        def trainable(config: dict) -> None:
            from agents.bench.store import Store

            store = Store(config["store"], check=False)
            for job in config["jobs"]:
                if not all(store.has(h) for h in job["hashes"]):  # a retried trial skips what is stored
                    play(job, config["store"])
                tune.report({"job": job["hashes"][0]})

        class Progress(tune.Callback):
            def __reduce__(self):
                # Tune pickles its callbacks into the experiment's state file; this one holds the
                # sweep's live bar and store, which stay here (it is saved as a plain callback).
                return (tune.Callback, ())

            def on_trial_result(self, iteration, trials, trial, result, **info):
                key = result.get("job")
                if key in by_key and key not in reported:
                    reported.add(key)
                    done(by_key[key])

            def on_trial_error(self, iteration, trials, trial, **info):
                why = _last_error_line(trial)
                for job in trial.config["jobs"]:
                    if job["hashes"][0] not in reported:
                        failed[job["hashes"][0]] = why

        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": max(job["threads"] for job in jobs)}),
            param_space={"jobs": tune.grid_search(batches(jobs, self.workers)), "store": str(self.root)},
            # Reused actors keep their worker process (and its imports) from trial to trial.
            tune_config=tune.TuneConfig(max_concurrent_trials=max(1, self.workers), reuse_actors=True),
            run_config=tune.RunConfig(
                storage_path=str(self.root / "ray"),
                name="fpo-bench",
                verbose=1 if self.verbose else 0,
                failure_config=tune.FailureConfig(max_failures=self.retries),
                callbacks=[Progress()],
            ),
        )
        tuner.fit()
        missing = [job for job in jobs if job["hashes"][0] not in reported]
        if missing:
            raise SweepFailed([(job, failed.get(job["hashes"][0], "the trial ended without it")) for job in missing])


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _last_error_line(trial: Any) -> str:
    """The last line of a failed trial's error (its exception), or a plain word if none."""
    path = getattr(trial, "error_file", None)
    try:
        lines = Path(path).read_text().strip().splitlines() if path else []
    except OSError:
        lines = []
    return lines[-1].strip() if lines else "the trial failed"
