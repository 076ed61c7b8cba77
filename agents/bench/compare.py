"""Does a suite's leaderboard agree with a committed one? Each figure within the other's CI.

The linear game's runs repeat exactly on any machine, to the last printed digit; the neural
game's float32 runs repeat bit for bit on one machine only, and on another CPU they diverge
chaotically over 4000 rounds, so its figures repeat statistically. The check therefore asks,
for every (game, learner) row both leaderboards have and every statistic with an interval
(IQM, median, mean, collapse rate, probability of improvement), that the new point estimate
lies inside the reference's 95% interval (widened by :data:`_SLACK`). ``fpo-bench check`` runs it on two
``leaderboard.csv`` files; ``make reproduce`` runs it after the ``paper`` suite.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

STATISTICS = ("iqm", "median", "mean", "collapse_rate", "p_improve")
"""The leaderboard columns compared, each with its ``_low`` and ``_high`` interval columns."""
_SLACK = 5e-4
"""Half a unit of the leaderboard's third printed decimal: an interval of zero width (every seed
at the optimum) holds a rerun whose float32 runs end a few 1e-6 away."""


@dataclass(frozen=True)
class Agreement:
    """One statistic of one (game, learner) row: the new value against the reference's CI."""

    game: str
    learner: str
    statistic: str
    value: float
    reference: float
    low: float
    high: float

    @property
    def holds(self) -> bool:
        """Whether :attr:`value` lies inside ``[low, high]``, widened by :data:`_SLACK` each side."""
        return self.low - _SLACK <= self.value <= self.high + _SLACK


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the leaderboard.csv that fpo-bench run wrote")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"game", "learner", "iqm"} <= set(rows[0]):
        raise ValueError(f"{path} is not a leaderboard.csv written by fpo-bench run (no game, learner, iqm columns)")
    return {(r["game"], r["learner"]): r for r in rows}


def compare(result: str | Path, reference: str | Path) -> list[Agreement]:
    """Every statistic of every row both leaderboards share.

    Raises:
        ValueError: the two leaderboards share no row (different suites or games).
    """
    new, ref = _rows(result), _rows(reference)
    shared = [key for key in ref if key in new]
    if not shared:
        raise ValueError(f"{result} and {reference} share no (game, learner) row: are they leaderboards of one suite?")
    out = []
    for game, learner in shared:
        a, b = new[(game, learner)], ref[(game, learner)]
        for name in STATISTICS:
            if not b.get(name) or not a.get(name):
                continue  # rlhf has no probability of improvement over itself
            out.append(
                Agreement(game, learner, name, float(a[name]), float(b[name]), float(b[f"{name}_low"]), float(b[f"{name}_high"]))
            )
    return out


def format_report(agreements: list[Agreement]) -> str:
    """A Markdown table of every check, the failing ones marked."""
    lines = ["| game | learner | statistic | this run | reference [95% CI] | agrees |", "|---|---|---|---|---|---|"]
    for a in agreements:
        mark = "yes" if a.holds else "**no**"
        lines.append(
            f"| {a.game} | {a.learner} | {a.statistic} | {a.value:.3f} | {a.reference:.3f} [{a.low:.3f}, {a.high:.3f}] | {mark} |"
        )
    failed = sum(not a.holds for a in agreements)
    lines += ["", f"{len(agreements) - failed} of {len(agreements)} figures lie within the reference's 95% interval."]
    return "\n".join(lines)
