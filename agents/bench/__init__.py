"""``fpo-bench``: benchmark any registered learner on the games, over many seeds.

The library API mirrors the command line::

    from agents import bench

    board = bench.run("quick", out="results/bench", learners=["my_module:my-algo"])

A suite (``paper``, ``quick``, ``text`` or a TOML file, :mod:`agents.bench.suite`) is a grid
of games x learners x seeds. Every finished run is stored once under ``out/store``
(:mod:`agents.bench.store`), so a rerun skips finished runs (each verified first; a corrupt
one is moved to quarantine and rerun) and a killed sweep completes on rerun; the statistics
(:mod:`agents.bench.stats`, rliable) and figures are written to ``out``. :func:`write_report`
writes a suite's report from a store again, into any folder, without playing a run.
"""

from __future__ import annotations

from pathlib import Path

from agents.bench.runner import BACKENDS, check_workers, execute, plan
from agents.bench.store import Store, StoreError
from agents.bench.suite import LearnerEntry, Suite, SuiteError, check_suite, load_suite, shipped_suites, suite_from_dict


def run(
    suite: str | Path | Suite,
    out: str | Path = "results/bench",
    backend: str = "local",
    workers: int = 2,
    learners: list[str] | None = None,
    seeds: int | None = None,
    rounds: int | None = None,
    games: list[str] | None = None,
    reps: int = 2000,
    plots: bool = True,
    progress: bool = True,
    ray_address: str | None = None,
    ray_timeout: float | None = None,
    ray_retries: int | None = None,
    ray_verbose: bool = False,
) -> Path:
    """Run ``suite`` (skipping stored runs) and write its report; returns the leaderboard path.

    Args:
        suite: a shipped suite name, a TOML path, or a :class:`Suite`.
        out: the folder of the report; runs are stored in ``out/store``.
        backend: ``local`` (process pool), ``serial`` or ``ray``.
        workers: processes (or Ray CPUs) to use.
        learners: more learner ids for the suite (``"my_module:my-algo"`` imports the module).
        seeds, rounds, games: shrink the suite (fewer seeds or rounds, a subset of games).
        reps: bootstrap resamples of the confidence intervals.
        plots: write the figures (needs matplotlib).
        progress: show a progress bar over the grid.
        ray_address: a running Ray cluster to join (``backend="ray"``): ``auto``, ``host:port`` or
            ``ray://host:port``; ``None``: ``RAY_ADDRESS``, else a private local instance.
        ray_timeout: seconds to join it (default 30); ray_retries: times a lost trial is tried
            again (default 2); ray_verbose: Ray's and Tune's logs on the terminal.

    Raises:
        agents.bench.ray_backend.RayConnectError: Ray could not be joined (one line, the fix).
        agents.bench.ray_backend.SweepFailed: some jobs failed after their retries; the runs of
            the others are stored (run the same command again to retry the failed ones).
    """
    from agents.bench import report

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    check_workers(workers)  # before the store's folder is made
    ray_options: dict = {}
    if backend == "ray":
        try:
            import ray  # noqa: F401
            from ray import tune  # noqa: F401
        except ImportError as err:
            raise ImportError('the ray backend needs Ray Tune: pip install "fpo-envs[ray]"') from err
        from agents.bench import ray_backend

        ray_backend.resolve_address(ray_address)  # a malformed one fails before anything starts
        if ray_timeout is not None:
            if not ray_timeout > 0:
                raise ValueError(f"ray_timeout must be positive, got {ray_timeout}")
            ray_options["timeout"] = float(ray_timeout)
        if ray_retries is not None:
            if isinstance(ray_retries, bool) or not isinstance(ray_retries, int) or ray_retries < 0:
                raise ValueError(f"ray_retries must be a whole number >= 0, got {ray_retries!r}")
            ray_options["retries"] = ray_retries
        ray_options["verbose"] = bool(ray_verbose)
    suite = _shaped(suite, learners, seeds, rounds, games)
    out = Path(out)
    store = Store(out / "store")
    jobs = plan(suite)
    played = execute(
        jobs, store, backend=backend, workers=workers, progress=progress, ray_address=ray_address, ray_options=ray_options
    )
    # A run played again (one found corrupt, or deleted) is written anew, so the report is too.
    return report.write(suite, store, jobs, out, reps=reps, plots=plots, force=played > 0)


def _shaped(
    suite: str | Path | Suite, learners: list[str] | None, seeds: int | None, rounds: int | None, games: list[str] | None
) -> Suite:
    """The suite, loaded, with the extra learners and overrides, checked."""
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    if learners:
        suite = suite.with_learners([LearnerEntry(id=i) for i in learners])
    if seeds is not None or rounds is not None or games:
        suite = suite.with_overrides(seeds, rounds, games)
    check_suite(suite)
    return suite


def write_report(
    suite: str | Path | Suite,
    store: str | Path,
    out: str | Path,
    learners: list[str] | None = None,
    seeds: int | None = None,
    rounds: int | None = None,
    games: list[str] | None = None,
    reps: int = 2000,
    plots: bool = True,
) -> Path:
    """Write the report of ``suite`` from the runs in ``store`` to ``out`` (tables and figures
    only: no run is played); returns the leaderboard path. The suite's shape (``learners``,
    ``seeds``, ``rounds``, ``games``) must be that of the :func:`run` that stored the runs.

    Raises:
        StoreError: some of the suite's runs are not in ``store``.
    """
    from agents.bench import report

    suite = _shaped(suite, learners, seeds, rounds, games)
    store_path = Path(store)
    if not (store_path / "runs").is_dir():
        raise StoreError(f"{store_path} is not a results store (no runs/ folder): give the <out>/store of an fpo-bench run")
    store = Store(store_path)
    jobs = plan(suite)
    missing = [(job, seed) for job in jobs for seed, h in zip(job["seeds"], job["hashes"]) if not store.has(h)]
    if missing:
        job, seed = missing[0]
        raise StoreError(
            f"{len(missing)} of the suite {suite.name!r}'s {sum(len(j['hashes']) for j in jobs)} runs are not in {store_path} "
            f"(the first: {job['label']} on {job['game']}, seed {seed}); run the suite into it first (fpo-bench run)"
        )
    return report.write(suite, store, jobs, Path(out), reps=reps, plots=plots)


__all__ = [
    "BACKENDS",
    "LearnerEntry",
    "Store",
    "StoreError",
    "Suite",
    "SuiteError",
    "load_suite",
    "run",
    "shipped_suites",
    "suite_from_dict",
    "write_report",
]
