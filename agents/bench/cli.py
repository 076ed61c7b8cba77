"""The ``fpo-bench`` command (also ``python -m agents.bench``).

fpo-bench run paper                            # the paper's suite: leaderboard and figures in results/paper
fpo-bench run quick --learner my_algo:my-fpo   # your learner next to the built-in ones
fpo-bench run my_suite.toml --backend ray      # a suite file, on Ray Tune
fpo-bench report token --store results/token/store --out docs/figures/token   # a report from stored runs
fpo-bench list                                 # suites, learners and games
fpo-bench check results/paper/leaderboard.csv --against docs/figures/paper/leaderboard.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agents.common.cli import prepare_imports, whole_number


def _out_folder(text: str) -> Path:
    """``--out``: a folder (made if missing, with its parents, as the default results/<suite>
    is in a fresh clone), not an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; --out names the report's folder")
    return path


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fpo-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a suite (skipping stored runs) and write its report")
    run.add_argument("suite", help="a shipped suite (paper, quick, text) or a TOML file")
    run.add_argument(
        "--out",
        type=_out_folder,
        default=None,
        help="report folder, created with its parents as results/ is (default: results/<suite>); runs go to <out>/store",
    )
    run.add_argument("--backend", choices=["local", "serial", "ray"], default="local")
    run.add_argument("--workers", type=whole_number(1), default=2, help="processes (or Ray CPUs)")
    run.add_argument(
        "--learner",
        action="append",
        default=[],
        metavar="ID",
        help="add a learner to the suite (repeatable); 'module:id' imports the module first",
    )
    run.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module first (one that registers learners)",
    )
    _shape_arguments(run)
    run.add_argument(
        "--ray-address",
        default=None,
        help="the Ray cluster to join (--backend ray): auto, HOST:PORT or ray://HOST:PORT "
        "(default: RAY_ADDRESS, else a private local Ray)",
    )
    run.add_argument("--ray-timeout", type=_positive_seconds, default=None, help="seconds to join the cluster (default 30)")
    run.add_argument(
        "--ray-retries", type=whole_number(0), default=None, help="times a trial whose worker or node died is retried (default 2)"
    )
    run.add_argument("--ray-verbose", action="store_true", help="show Ray's and Tune's own logs")
    report = sub.add_parser("report", help="write a suite's report from its stored runs (playing none) into a folder")
    report.add_argument("suite", help="the suite the runs were stored by (its name or TOML file)")
    report.add_argument(
        "--store", type=Path, default=None, help="the results store (default: results/<suite>/store, where run puts it)"
    )
    report.add_argument("--out", type=_out_folder, default=None, help="report folder (default: the store's parent folder)")
    report.add_argument("--learner", action="append", default=[], metavar="ID", help="a learner the run added (repeatable)")
    report.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE", help="import a module first")
    _shape_arguments(report)
    sub.add_parser("list", help="list the shipped suites, the registered learners and the games")
    check = sub.add_parser("check", help="check a leaderboard's figures against a reference's 95%% intervals")
    check.add_argument("result", type=Path, help="the leaderboard.csv to check")
    check.add_argument("--against", type=Path, required=True, help="the reference leaderboard.csv")
    return parser


def _shape_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that shrink a suite and shape its report (``run`` and ``report`` share them)."""
    parser.add_argument("--seeds", type=whole_number(1), default=None, help="use only this many seeds per game")
    parser.add_argument("--rounds", type=whole_number(1), default=None, help="play this many rounds per run")
    parser.add_argument(
        "--game", action="append", default=[], metavar="ENV_ID", help="only these games (an id or an entry's name; repeatable)"
    )
    parser.add_argument("--reps", type=whole_number(1), default=2000, help="bootstrap resamples for the confidence intervals")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")


def main(argv: list[str] | None = None) -> int:
    """The ``fpo-bench`` command (``argv``: its arguments, default ``sys.argv[1:]``); returns the exit code."""
    args = _parser().parse_args(argv)

    import agents
    import fpo_envs
    from agents import bench

    if args.command == "list":
        print("suites:  ", ", ".join(bench.shipped_suites()))
        print("games:   ", ", ".join(fpo_envs.ENV_IDS))
        print("learners:")
        agents.pprint_registry()
        return 0
    if args.command == "check":
        from agents.bench import compare

        try:
            agreements = compare.compare(args.result, args.against)
        except (OSError, ValueError) as err:
            print(f"fpo-bench: error: {err}", file=sys.stderr)
            return 2
        print(compare.format_report(agreements))
        return 0 if all(a.holds for a in agreements) else 1
    start = time.perf_counter()
    if args.command == "report":
        try:
            prepare_imports(args.imports)
            suite = bench.load_suite(args.suite)
            store = args.store or Path("results") / suite.name / "store"
            board = bench.write_report(
                suite,
                store,
                args.out or store.parent,
                learners=args.learner,
                seeds=args.seeds,
                rounds=args.rounds,
                games=args.game or None,
                reps=args.reps,
                plots=not args.no_plots,
            )
        except (bench.SuiteError, bench.StoreError, ImportError) as err:
            print(f"fpo-bench: error: {err}", file=sys.stderr)
            return 2
        print(board.read_text())
        print(f"wrote {board.parent}/ from the runs in {store} in {time.perf_counter() - start:.1f} s")
        return 0
    try:
        prepare_imports(args.imports)  # the working folder on sys.path, as for fpo-animate
        suite = bench.load_suite(args.suite)
        out = args.out or Path("results") / suite.name
        board = bench.run(
            suite,
            out=out,
            backend=args.backend,
            workers=args.workers,
            learners=args.learner,
            seeds=args.seeds,
            rounds=args.rounds,
            games=args.game or None,
            reps=args.reps,
            plots=not args.no_plots,
            ray_address=args.ray_address,
            ray_timeout=args.ray_timeout,
            ray_retries=args.ray_retries,
            ray_verbose=args.ray_verbose,
        )
    except (bench.SuiteError, bench.StoreError, ImportError, ValueError) as err:
        print(f"fpo-bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fpo-bench: interrupted; the runs finished so far are stored (run the same command to go on)", file=sys.stderr)
        return 130
    except Exception as err:
        from agents.bench.ray_backend import RayConnectError, SweepFailed

        if isinstance(err, RayConnectError):
            print(f"fpo-bench: error: {err}", file=sys.stderr)
            return 2
        if isinstance(err, SweepFailed):
            print(f"fpo-bench: {err}\nRun the same command again to retry them (stored runs are skipped).", file=sys.stderr)
            return 1
        raise
    print(board.read_text())
    print(
        f"wrote {board.parent}/ (leaderboard.md, leaderboard.csv, per_seed.csv, figures) in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
