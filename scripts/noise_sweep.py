"""How the learners fare as the human's labels get noisier: a small sweep on the vector games.

    python scripts/noise_sweep.py            # writes docs/figures/exact/noise.md; resumes from results/noise/

For each label-noise level (the games' ``label_noise``: Gaussian noise of that standard
deviation on every label the RM is trained on; ``U`` itself peaks at 10) it runs the
benchmark on ``FPO/LinearRM-v0`` and ``FPO/NeuralRM-v0`` with rlhf, fpo-practical, fpo-relaxed
and fpo-exact, through the resumable store, and tabulates each learner's IQM of the final
normalised true utility with its stratified-bootstrap 95% CI and its collapse rate.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from agents import bench

LEARNERS = ("rlhf", "fpo-practical", "fpo-relaxed", "fpo-exact")


def suite(noise: float, linear_seeds: int, neural_seeds: int, neural_rounds: int) -> bench.Suite:
    return bench.suite_from_dict(
        {
            "name": f"noise-{noise:g}",
            "description": f"label_noise = {noise:g}",
            "games": [
                {
                    "id": "FPO/LinearRM-v0",
                    "rounds": 300,
                    "seeds": linear_seeds,
                    "batch": linear_seeds,
                    "kwargs": {"label_noise": noise},
                },
                {
                    "id": "FPO/NeuralRM-v0",
                    "rounds": neural_rounds,
                    "seeds": neural_seeds,
                    "batch": max(1, neural_seeds // 2),
                    "metric_prefix": "theta_",
                    "kwargs": {"label_noise": noise},
                },
            ],
            "learners": [{"id": i} for i in LEARNERS],
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0])
    parser.add_argument("--linear-seeds", type=int, default=20)
    parser.add_argument("--neural-seeds", type=int, default=16)
    parser.add_argument("--neural-rounds", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("results/noise"))
    parser.add_argument("--table", type=Path, default=Path("docs/figures/exact/noise.md"))
    args = parser.parse_args(argv)
    rows: dict[tuple[str, str], dict[float, dict]] = {}
    for noise in args.noise:
        board = bench.run(
            suite(noise, args.linear_seeds, args.neural_seeds, args.neural_rounds),
            out=args.out / f"noise-{noise:g}",
            plots=False,
            progress=False,
        )
        with open(board.with_suffix(".csv")) as fh:
            for row in csv.DictReader(fh):
                if row["game"] != "all":
                    rows.setdefault((row["game"], row["learner"]), {})[noise] = row
        print(f"label_noise {noise:g}: {board}", flush=True)
    lines = [
        "# Noisy labels",
        "",
        f"Written by `python scripts/noise_sweep.py`: `FPO/LinearRM-v0` {args.linear_seeds} seeds x 300 rounds,",
        f"`FPO/NeuralRM-v0` {args.neural_seeds} seeds x {args.neural_rounds} rounds (at the policy mean). Cell: IQM of",
        "the final true utility / U(y*) [stratified-bootstrap 95% CI], collapse rate (share of seeds below 0.5).",
        "`label_noise`: standard deviation of the Gaussian noise on each label (U peaks at 10).",
        "",
    ]
    for game in ("FPO/LinearRM-v0", "FPO/NeuralRM-v0"):
        lines += [f"## {game}", "", "| learner | " + " | ".join(f"noise {n:g}" for n in args.noise) + " |"]
        lines.append("|---|" + "---|" * len(args.noise))
        for learner in LEARNERS:
            cells = []
            for noise in args.noise:
                r = rows[(game, learner)][noise]
                iqm = f"{float(r['iqm']):.3f} [{float(r['iqm_low']):.3f}, {float(r['iqm_high']):.3f}]"
                cells.append(f"{iqm}, {float(r['collapse_rate']):.2f}")
            lines.append(f"| {learner} | " + " | ".join(cells) + " |")
        lines.append("")
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
