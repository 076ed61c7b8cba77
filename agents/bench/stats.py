"""Statistics of a suite's runs, computed with ``rliable`` (Agarwal et al., 2021).

Scores are final true utility normalised by the game's optimum ``U(y*)``. Per game and
learner: the interquartile mean (IQM), median and mean over seeds with stratified-bootstrap
95% confidence intervals, the collapse rate (share of seeds whose normalised final utility is
below 0.5) with its interval, peak and peak-to-final drop, the final proxy/true gap, and
the probability of improvement over ``rlhf``. Across games: the same aggregates over all runs
of a (seeds x games) score matrix of the seeds every game has (the IQM, median and mean of
the pooled runs, the share of pooled runs that collapsed), with bootstrap strata per game,
and performance profiles. A game's own per-seed figures (the token game's share of seeds whose
RM ends preferring the learner's output to the optimum, and its final KL to the starting
policy) get their mean with a bootstrap interval in that game's rows.

Every aggregate is a plain function of the whole score matrix (:data:`AGGREGATE_FUNCTIONS`),
written with numpy, never rliable's ``aggregate_median``: that one is the median over *tasks*
of per-task means, so on one game it is the mean. rliable supplies the stratified bootstrap
(``get_interval_estimates``), the probability of improvement and the performance profiles.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COLLAPSE_BELOW = 0.5
"""A seed has collapsed when its final true utility is below this share of the optimum."""
BASELINE = "rlhf"
"""The learner label that the probability of improvement is measured against."""


def _rliable():
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as err:
        raise ImportError('the benchmark statistics need rliable: pip install "fpo-envs[bench]"') from err
    return rly, metrics


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's probability of improvement, ``metrics.probability_of_improvement``, computed in
    one vectorized pass: for each task (column), the Mann-Whitney U statistic of ``X > Y`` over
    the runs (rows) divided by ``n_x n_y``, that is ``P(X > Y) + P(X = Y) / 2`` over all pairs of
    a run of ``X`` and a run of ``Y``; averaged over tasks. rliable calls ``scipy.stats.mannwhitneyu``
    once per task, which a bootstrap over many tasks (the text report's prompts: 36 tasks, 30
    pairs of policies, 2000 resamples) turns into minutes; the numbers are the same (tested)."""
    x, y = np.asarray(scores_x, dtype=np.float64), np.asarray(scores_y, dtype=np.float64)
    diff = x[:, None, :] - y[None, :, :]  # (runs of X, runs of Y, tasks)
    wins = (diff > 0).mean(axis=(0, 1)) + 0.5 * (diff == 0).mean(axis=(0, 1))
    return float(wins.mean())


@dataclass
class LearnerScores:
    """Per-seed results of one learner on one game (arrays over seeds)."""

    label: str
    seeds: np.ndarray
    final: np.ndarray
    peak: np.ndarray
    gap: np.ndarray
    noise: np.ndarray
    histories: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """A game's own per-seed figures (the token game's ``rm_prefers_output``, 1 or 0 a seed, and
    ``final_kl_to_base``); each is reported as its mean over seeds with a bootstrap 95% CI."""


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of all runs: the mean of the middle 50% of the sorted scores, the
    25% trimmed at each end (``scipy.stats.trim_mean(x, 0.25, axis=None)``, as rliable's
    ``aggregate_iqm``)."""
    from scipy import stats as scipy_stats  # rliable's dependency

    return float(scipy_stats.trim_mean(np.ravel(x), proportiontocut=0.25))


AGGREGATE_FUNCTIONS = {
    "iqm": iqm,
    "median": lambda x: float(np.median(x)),
    "mean": lambda x: float(np.mean(x)),
    "collapse_rate": lambda x: float(np.mean(np.asarray(x) < COLLAPSE_BELOW)),
}
"""Each aggregate of a (runs x tasks) score matrix, over all its runs (every entry)."""
AGGREGATES = tuple(AGGREGATE_FUNCTIONS)
"""The aggregates' names, in the order of :data:`AGGREGATE_FUNCTIONS`."""


def _aggregates(x: np.ndarray) -> np.ndarray:
    return np.array([f(x) for f in AGGREGATE_FUNCTIONS.values()])


class _SeededGlobalRNG:
    """rliable's bootstraps resample with numpy's global generator (``np.random.choice``):
    seed it for the call and restore the caller's state, so a report repeats for a seed."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.state = np.random.get_state()
        np.random.seed(self.seed)
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("ignore", FutureWarning)  # arch's notice about random_state

    def __exit__(self, *exc):
        self.warnings.__exit__(*exc)
        np.random.set_state(self.state)


def _intervals(score_dict: dict[str, Any], func, reps: int, seed: int, **kwargs: Any) -> tuple[dict, dict]:
    """rliable's ``get_interval_estimates`` (``kwargs`` passed on, e.g. ``task_bootstrap``) with
    its resampling seeded by ``seed``: its ``random_state`` argument does not reach the draws."""
    rly, _ = _rliable()
    with _SeededGlobalRNG(seed):
        return rly.get_interval_estimates(score_dict, func, reps=reps, **kwargs)


def _interval_rows(matrices: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, dict[str, Any]]:
    """Per learner: the aggregates with their intervals and, against ``rlhf`` where it is
    present, the probability of improvement with its interval. ``matrices[label]`` is a
    (runs x tasks) score matrix."""
    _, metrics = _rliable()
    points, intervals = _intervals(matrices, _aggregates, reps, seed)
    poi_points, poi_intervals = {}, {}
    if BASELINE in matrices:
        pairs = {label: [m, matrices[BASELINE]] for label, m in matrices.items() if label != BASELINE}
        if pairs:
            poi_points, poi_intervals = _intervals(pairs, metrics.probability_of_improvement, reps, seed)
    rows = {}
    for label in matrices:
        row: dict[str, Any] = {}
        for i, name in enumerate(AGGREGATES):
            row[name] = float(points[label][i])
            row[f"{name}_low"], row[f"{name}_high"] = (float(v) for v in intervals[label][:, i])
        if label in poi_points:
            row["p_improve"] = float(np.squeeze(poi_points[label]))
            row["p_improve_low"], row["p_improve_high"] = (float(v) for v in np.ravel(poi_intervals[label]))
        rows[label] = row
    return rows


def _extra_rows(scores: dict[str, LearnerScores], reps: int, seed: int) -> dict[str, dict[str, float]]:
    """Per learner: each of its :attr:`LearnerScores.extras` as the mean over seeds with its
    bootstrap 95% interval (``name``, ``name_low``, ``name_high``)."""
    rows: dict[str, dict[str, float]] = {label: {} for label in scores}
    names = dict.fromkeys(name for s in scores.values() for name in s.extras)
    mean = lambda x: np.array([np.mean(x)])  # noqa: E731
    for name in names:
        matrices = {
            label: np.asarray(s.extras[name], dtype=np.float64)[:, None] for label, s in scores.items() if name in s.extras
        }
        points, intervals = _intervals(matrices, mean, reps, seed)
        for label in matrices:
            rows[label][name] = float(points[label][0])
            rows[label][f"{name}_low"], rows[label][f"{name}_high"] = (float(v) for v in intervals[label][:, 0])
    return rows


def game_table(scores: dict[str, LearnerScores], reps: int = 2000, seed: int = 0) -> list[dict]:
    """One row per learner of one game (see the module docstring), with the game's own
    figures (:attr:`LearnerScores.extras`) where its runs have them."""
    estimates = _interval_rows({label: s.final[:, None] for label, s in scores.items()}, reps, seed)
    extras = _extra_rows(scores, reps, seed)
    rows = []
    for label, s in scores.items():
        poi = {k: v for k, v in estimates[label].items() if k.startswith("p_improve")}
        rows.append(
            {
                "learner": label,
                "seeds": len(s.final),
                **{k: v for k, v in estimates[label].items() if not k.startswith("p_improve")},
                "mean_peak": float(s.peak.mean()),
                "mean_drop": float((s.peak - s.final).mean()),
                "mean_final_gap": float(s.gap.mean()),
                "mean_final_noise": float(s.noise.mean()),
                **poi,
                **extras[label],
            }
        )
    return rows


def aggregate_table(per_game: dict[str, dict[str, LearnerScores]], reps: int = 2000, seed: int = 0) -> tuple[list[dict], dict]:
    """Across games: rows per learner present in every game, over the seeds every game has;
    also returns the (seeds x games) score matrices for performance profiles."""
    labels = [label for label in next(iter(per_game.values())) if all(label in g for g in per_game.values())]
    if not labels:
        return [], {}
    n = min(len(g[label].final) for g in per_game.values() for label in labels)
    matrices = {label: np.stack([g[label].final[:n] for g in per_game.values()], axis=1) for label in labels}
    estimates = _interval_rows(matrices, reps, seed)
    rows = [{"learner": label, "seeds": n, "games": len(per_game), **estimates[label]} for label in labels]
    return rows, matrices


def performance_profiles(matrices: dict[str, np.ndarray], taus: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[dict, dict]:
    """rliable's score distributions: the share of runs whose normalised score exceeds tau."""
    rly, _ = _rliable()
    with _SeededGlobalRNG(seed):
        return rly.create_performance_profile(matrices, taus, reps=reps)
