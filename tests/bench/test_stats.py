"""Every statistic of the leaderboard is what its label says, checked against plain numpy."""

import numpy as np
import pytest

pytest.importorskip("rliable")

from agents.bench import stats  # noqa: E402


def _scores(label: str, final: np.ndarray) -> stats.LearnerScores:
    n = len(final)
    return stats.LearnerScores(label, np.arange(n), final, final + 0.1, np.zeros(n), np.zeros(n))


def _iqm(x: np.ndarray) -> float:
    """The mean of the middle half of the sorted scores, written out."""
    x = np.sort(np.ravel(x))
    cut = int(0.25 * len(x))
    return float(x[cut : len(x) - cut].mean())


def _p_improve(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over all pairs, ties counting one half."""
    return float(((x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])).mean())


# Skewed on purpose: the mean (0.46) is far from the median (0.3).
SKEWED = np.array([0.1, 0.2, 0.25, 0.3, 0.3, 0.35, 0.9, 0.95, 0.98])
OTHER = np.array([0.05, 0.1, 0.1, 0.2, 0.6, 0.6, 0.7, 0.8, 0.81])


def test_each_aggregate_against_numpy():
    x = SKEWED[:, None]
    assert stats.AGGREGATE_FUNCTIONS["median"](x) == pytest.approx(np.median(SKEWED)) == pytest.approx(0.3)
    assert stats.AGGREGATE_FUNCTIONS["mean"](x) == pytest.approx(SKEWED.mean())
    assert stats.AGGREGATE_FUNCTIONS["iqm"](x) == pytest.approx(_iqm(SKEWED))
    assert stats.AGGREGATE_FUNCTIONS["collapse_rate"](x) == pytest.approx(np.mean(SKEWED < 0.5))


def test_the_game_table_median_is_the_median_over_seeds():
    rows = {r["learner"]: r for r in stats.game_table({"rlhf": _scores("rlhf", OTHER), "fpo": _scores("fpo", SKEWED)}, reps=200)}
    fpo = rows["fpo"]
    assert fpo["median"] == pytest.approx(np.median(SKEWED))
    assert fpo["median"] != pytest.approx(SKEWED.mean())  # what rliable's aggregate_median gives on one task
    assert fpo["mean"] == pytest.approx(SKEWED.mean())
    assert fpo["iqm"] == pytest.approx(_iqm(SKEWED))
    assert fpo["collapse_rate"] == pytest.approx(np.mean(SKEWED < 0.5))
    assert fpo["mean_peak"] == pytest.approx((SKEWED + 0.1).mean())
    assert fpo["p_improve"] == pytest.approx(_p_improve(SKEWED, OTHER))
    for name in stats.AGGREGATES:
        assert fpo[f"{name}_low"] <= fpo[name] <= fpo[f"{name}_high"], name
    # A bootstrap interval of the median holds only values the seeds take.
    assert fpo["median_low"] in SKEWED and fpo["median_high"] in SKEWED


def test_the_across_games_aggregates_pool_every_run():
    per_game = {
        "A": {"rlhf": _scores("rlhf", OTHER), "fpo": _scores("fpo", SKEWED)},
        "B": {"rlhf": _scores("rlhf", OTHER[::-1] * 0.5), "fpo": _scores("fpo", SKEWED[:7] + 0.01)},
    }
    rows, matrices = stats.aggregate_table(per_game, reps=200)
    fpo = {r["learner"]: r for r in rows}["fpo"]
    pooled = np.concatenate([SKEWED[:7], SKEWED[:7] + 0.01])  # the 7 seeds both games have
    assert fpo["seeds"] == 7 and fpo["games"] == 2
    assert matrices["fpo"].shape == (7, 2)
    assert fpo["median"] == pytest.approx(np.median(pooled))
    assert fpo["mean"] == pytest.approx(pooled.mean())
    assert fpo["iqm"] == pytest.approx(_iqm(pooled))
    assert fpo["collapse_rate"] == pytest.approx(np.mean(pooled < 0.5))
    rlhf = [OTHER[:7], (OTHER[::-1] * 0.5)[:7]]
    by_game = [_p_improve(SKEWED[:7], rlhf[0]), _p_improve(SKEWED[:7] + 0.01, rlhf[1])]
    assert fpo["p_improve"] == pytest.approx(np.mean(by_game))


def test_a_report_repeats_for_its_seed():
    scores = {"rlhf": _scores("rlhf", OTHER), "fpo": _scores("fpo", SKEWED)}
    assert stats.game_table(scores, reps=100, seed=3) == stats.game_table(scores, reps=100, seed=3)


@pytest.mark.parametrize("shape_x, shape_y", [((5, 36), (5, 36)), ((1, 36), (5, 36)), ((7, 1), (3, 1))])
def test_the_vectorized_probability_of_improvement_is_rliables(shape_x, shape_y):
    """The text report's win rates: the same number as rliable's per-task Mann-Whitney loop, ties
    (scores on a grid of quarters, as the judge's often are) and identical columns included."""
    from rliable import metrics

    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 21, size=shape_x) / 4
        y = rng.integers(0, 21, size=shape_y) / 4
        if shape_x == shape_y:
            y[:, 0] = x[:, 0]  # a task where both score the same on every run
        assert stats.probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)
        assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(y, x) == pytest.approx(1.0)
