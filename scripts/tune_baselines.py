"""The baselines against FPO under one tuning protocol, then on the reported seeds.

    python scripts/tune_baselines.py     # docs/figures/baselines/{tuning.md, leaderboard.md}; resumes from results/

Protocol: every method with a knob gets the same budget, four settings of its one knob
(FPO's ``gamma``, the anchor's weight, the cap, the ensemble's ``beta``, PerfGD's ``steer``),
spread around its default; a method without one (the ensemble's mean and worst case, RRM)
runs at its one setting. Each setting runs
on tuning seeds (1000 onwards: 20 linear, 16 neural), disjoint from the reported seeds
(0-99 linear, 0-63 neural), at the reported length. The setting with the highest IQM of the
final normalised true utility on the tuning seeds is chosen per game. The reported suite
then runs every method at its default and at its chosen setting, plain RLHF as the
reference. Runs go through the benchmark's resumable store.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from agents import bench

GAMES = {
    "FPO/LinearRM-v0": {"rounds": 300, "tune_seeds": 20, "seeds": 100, "batch": 100},
    "FPO/NeuralRM-v0": {"rounds": 4000, "tune_seeds": 16, "seeds": 64, "batch": 32, "metric_prefix": "theta_"},
}
TUNE_FIRST_SEED = 1000
BUDGET = {
    # method: (knob, {game: four settings}); each method's default is among them.
    "fpo-practical": ("gamma", {"FPO/LinearRM-v0": [0.03, 0.1, 0.3, 1.0], "FPO/NeuralRM-v0": [0.0015, 0.005, 0.015, 0.05]}),
    "fpo-relaxed": ("gamma", {"FPO/LinearRM-v0": [0.03, 0.1, 0.3, 1.0], "FPO/NeuralRM-v0": [0.0015, 0.005, 0.015, 0.05]}),
    "rlhf-anchor": ("anchor", {"FPO/LinearRM-v0": [0.03, 0.1, 0.3, 1.0], "FPO/NeuralRM-v0": [0.0015, 0.005, 0.015, 0.05]}),
    "rlhf-cap": ("cap", {"FPO/LinearRM-v0": [2.0, 4.0, 5.0, 8.0], "FPO/NeuralRM-v0": [2.0, 4.0, 5.0, 8.0]}),
    "rlhf-ensemble-uwo": ("beta", {"FPO/LinearRM-v0": [0.3, 1.0, 3.0, 10.0], "FPO/NeuralRM-v0": [0.3, 1.0, 3.0, 10.0]}),
    "perfgd": ("steer", {"FPO/LinearRM-v0": [0.3, 1.0, 3.0, 10.0], "FPO/NeuralRM-v0": [0.1, 0.3, 1.0, 3.0]}),
}
NO_KNOB = ("rlhf-ensemble-mean", "rlhf-ensemble-worst", "rrm")
"""Methods with no knob to tune: each runs at its one setting."""
ASSUMES = {
    "rlhf": "the RM only",
    "fpo-practical": "the RM's parameter gradients",
    "fpo-relaxed": "the RM's gradients and the oracle's U (and grad U on the linear game)",
    "rlhf-anchor": "the initial policy",
    "rlhf-cap": "a cap on the RM's scale",
    "rlhf-ensemble-mean": "an ensemble of 5 RMs",
    "rlhf-ensemble-worst": "an ensemble of 5 RMs",
    "rlhf-ensemble-uwo": "an ensemble of 5 RMs",
    "rrm": "the RM only (a best response each round)",
    "perfgd": "the RM's parameters each round and their gradient",
}


def _game(env_id: str, tuning: bool) -> dict:
    g = GAMES[env_id]
    seeds = g["tune_seeds"] if tuning else g["seeds"]
    game = {"id": env_id, "rounds": g["rounds"], "seeds": seeds, "batch": min(g["batch"], seeds)}
    if tuning:
        game["first_seed"] = TUNE_FIRST_SEED
        game["batch"] = max(1, seeds // 2) if env_id == "FPO/NeuralRM-v0" else seeds
    if "metric_prefix" in g:
        game["metric_prefix"] = g["metric_prefix"]
    return game


def tune(out: Path) -> dict[tuple[str, str], float]:
    """Run every setting of the budget on the tuning seeds; the chosen setting per (method, game)."""
    chosen = {}
    for env_id in GAMES:
        learners = [
            {"id": method, "label": f"{method} {knob}={value:g}", "config": {knob: value}}
            for method, (knob, grid) in BUDGET.items()
            for value in grid[env_id]
        ]
        suite = bench.suite_from_dict({"name": "tuning", "games": [_game(env_id, True)], "learners": learners})
        board = bench.run(suite, out=out / "tuning" / env_id.split("/")[1], plots=False, progress=False)
        with open(board.with_suffix(".csv")) as fh:
            iqm = {row["learner"]: float(row["iqm"]) for row in csv.DictReader(fh) if row["game"] == env_id}
        for method, (knob, grid) in BUDGET.items():
            scores = {value: iqm[f"{method} {knob}={value:g}"] for value in grid[env_id]}
            chosen[(method, env_id)] = max(scores, key=scores.get)
            chosen[(method, env_id, "scores")] = scores
    return chosen


def report(chosen: dict, out: Path) -> Path:
    learners = [{"id": "rlhf"}] + [{"id": method} for method in NO_KNOB]
    for method, (knob, _) in BUDGET.items():
        learners.append({"id": method, "label": f"{method} (default)"})
        by_value: dict[float, list[str]] = {}
        for env_id in GAMES:
            by_value.setdefault(chosen[(method, env_id)], []).append(env_id)
        for value, games in by_value.items():  # one entry per chosen value (labels are unique)
            label = f"{method} (tuned: {knob}={value:g})"
            learners.append({"id": method, "label": label, "config": {knob: value}, "games": games})
    suite = bench.suite_from_dict(
        {
            "name": "baselines",
            "description": "FPO and the baselines at their defaults and tuned settings",
            "games": [_game(env_id, False) for env_id in GAMES],
            "learners": learners,
        }
    )
    return bench.run(suite, out=out / "reported", progress=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/baselines"))
    parser.add_argument("--docs", type=Path, default=Path("docs/figures/baselines"))
    args = parser.parse_args(argv)
    chosen = tune(args.out)
    lines = [
        "# Tuning protocol and chosen settings",
        "",
        "Written by `python scripts/tune_baselines.py`. Each method: four settings of its one knob,",
        f"run on tuning seeds {TUNE_FIRST_SEED} onwards (linear {GAMES['FPO/LinearRM-v0']['tune_seeds']} seeds x 300 rounds,",
        f"neural {GAMES['FPO/NeuralRM-v0']['tune_seeds']} seeds x 4000 rounds), disjoint from the reported seeds; chosen:",
        "the highest IQM of the final U / U(y*). Cells: IQM on the tuning seeds per setting, the chosen one in bold.",
        "",
        "| method | needs | knob | game | settings: tuning-seed IQM |",
        "|---|---|---|---|---|",
    ]
    for method, (knob, _) in BUDGET.items():
        for env_id in GAMES:
            scores = chosen[(method, env_id, "scores")]
            best = chosen[(method, env_id)]
            cells = ", ".join(f"**{v:g}: {s:.3f}**" if v == best else f"{v:g}: {s:.3f}" for v, s in scores.items())
            lines.append(f"| {method} | {ASSUMES[method]} | `{knob}` | {env_id} | {cells} |")
    for method in NO_KNOB:
        lines.append(f"| {method} | {ASSUMES[method]} | none | both | its one setting, not tuned |")
    board = report(chosen, args.out)
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "tuning.md").write_text("\n".join(lines) + "\n")
    (args.docs / "leaderboard.md").write_text(board.read_text())
    for figure in ("interval_estimates.png",):
        if (board.parent / figure).exists():
            (args.docs / figure).write_bytes((board.parent / figure).read_bytes())
    print("\n".join(lines))
    print(board.read_text())


if __name__ == "__main__":
    main()
