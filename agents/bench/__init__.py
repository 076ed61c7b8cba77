"""``fpo-bench``: benchmark any registered learner on the games, over many seeds.

The library API mirrors the command line::

    from agents import bench

    board = bench.run("quick", out="results/bench", learners=["my_module:my-algo"])

A suite (``paper``, ``quick``, ``text`` or a TOML file, :mod:`agents.bench.suite`) is a grid
of games x learners x seeds. Every finished run is stored once under ``out/store``
(:mod:`agents.bench.store`), so a rerun skips finished runs (each verified first; a corrupt
one is moved to quarantine and rerun) and a killed sweep completes on rerun; the statistics
(:mod:`agents.bench.stats`, rliable) and figures are written to ``out``.
"""

from __future__ import annotations

from pathlib import Path

from agents.bench.runner import BACKENDS, execute, plan
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
        ray_address: a running Ray cluster to join (``backend="ray"``).
    """
    from agents.bench import report

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
            from ray import tune  # noqa: F401
        except ImportError as err:
            raise ImportError('the ray backend needs Ray Tune: pip install "fpo-envs[ray]"') from err
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    if learners:
        suite = suite.with_learners([LearnerEntry(id=i) for i in learners])
    if seeds is not None or rounds is not None or games:
        suite = suite.with_overrides(seeds, rounds, games)
    check_suite(suite)
    out = Path(out)
    store = Store(out / "store")
    jobs = plan(suite)
    played = execute(jobs, store, backend=backend, workers=workers, progress=progress, ray_address=ray_address)
    # A run played again (one found corrupt, or deleted) is written anew, so the report is too.
    return report.write(suite, store, jobs, out, reps=reps, plots=plots, force=played > 0)


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
]
