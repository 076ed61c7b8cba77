"""``fpo-bench check``: a leaderboard against a committed one, each figure within its CI."""

import csv
from pathlib import Path

import pytest

from agents.bench import compare

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "docs" / "figures" / "paper" / "leaderboard.csv"


def _board(path: Path, rows: list[dict]) -> Path:
    fields = ["game", "learner"] + [f"{s}{end}" for s in compare.STATISTICS for end in ("", "_low", "_high")]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(learner: str, iqm: float, low: float, high: float, **extra) -> dict:
    return {"game": "G", "learner": learner, "iqm": iqm, "iqm_low": low, "iqm_high": high, **extra}


def test_a_figure_inside_the_reference_interval_agrees_and_one_outside_does_not(tmp_path):
    reference = _board(tmp_path / "ref.csv", [_row("rlhf", 0.5, 0.4, 0.6), _row("fpo", 0.9, 0.9, 0.9)])
    inside = _board(tmp_path / "a.csv", [_row("rlhf", 0.58, 0.5, 0.7), _row("fpo", 0.9, 0.9, 0.9)])
    outside = _board(tmp_path / "b.csv", [_row("rlhf", 0.61, 0.5, 0.7), _row("fpo", 0.9, 0.9, 0.9)])
    assert all(a.holds for a in compare.compare(inside, reference))
    verdict = {a.learner: a.holds for a in compare.compare(outside, reference)}
    assert verdict == {"rlhf": False, "fpo": True}
    report = compare.format_report(compare.compare(outside, reference))
    assert "**no**" in report and "1 of 2 figures" in report


def test_missing_statistics_and_rows_are_left_out(tmp_path):
    reference = _board(tmp_path / "ref.csv", [_row("rlhf", 0.5, 0.4, 0.6), _row("gone", 0.5, 0.4, 0.6)])
    result = _board(tmp_path / "a.csv", [_row("rlhf", 0.5, 0.4, 0.6, p_improve=0.7, p_improve_low=0.6, p_improve_high=0.8)])
    checked = compare.compare(result, reference)
    assert [(a.learner, a.statistic) for a in checked] == [("rlhf", "iqm")]


def test_bad_files_are_clear_errors(tmp_path):
    reference = _board(tmp_path / "ref.csv", [_row("rlhf", 0.5, 0.4, 0.6)])
    with pytest.raises(FileNotFoundError, match="leaderboard.csv that fpo-bench run wrote"):
        compare.compare(tmp_path / "missing.csv", reference)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a leaderboard.csv"):
        compare.compare(tmp_path / "x.csv", reference)
    other = _board(tmp_path / "o.csv", [{**_row("rlhf", 0.5, 0.4, 0.6), "game": "H"}])
    with pytest.raises(ValueError, match="share no"):
        compare.compare(other, reference)


@pytest.mark.pinned
def test_the_paper_suite_linear_figures_repeat_exactly(tmp_path):
    """The linear half of ``fpo-bench run paper``, rerun here, gives the committed figures (the
    neural half repeats within its CIs; ``make reproduce`` checks that)."""
    pytest.importorskip("rliable")
    from agents import bench

    board = bench.run(
        bench.load_suite("paper"), out=tmp_path, games=["FPO/LinearRM-v0"], backend="serial", plots=False, progress=False
    )
    checked = compare.compare(board.with_suffix(".csv"), PAPER)
    assert {a.game for a in checked} == {"FPO/LinearRM-v0"} and len(checked) >= 16
    for a in checked:
        assert a.value == pytest.approx(a.reference, abs=1e-9), a


def test_the_cli_exits_nonzero_when_a_figure_disagrees(tmp_path, capsys):
    from agents.bench.cli import main

    reference = _board(tmp_path / "ref.csv", [_row("rlhf", 0.5, 0.4, 0.6)])
    good = _board(tmp_path / "a.csv", [_row("rlhf", 0.55, 0.5, 0.6)])
    bad = _board(tmp_path / "b.csv", [_row("rlhf", 0.7, 0.6, 0.8)])
    assert main(["check", str(good), "--against", str(reference)]) == 0
    assert "1 of 1 figures" in capsys.readouterr().out
    assert main(["check", str(bad), "--against", str(reference)]) == 1
    assert main(["check", str(tmp_path / "none.csv"), "--against", str(reference)]) == 2
    assert "fpo-bench: error:" in capsys.readouterr().err
