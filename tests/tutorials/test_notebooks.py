"""Every lesson in ``tutorials/`` runs top to bottom, and is committed without outputs; the data a
lesson reads is what the current code plays."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
REPLAYED_ROUNDS = 100
"""Rounds of the lesson data's first block played again against the shipped file."""
LESSON_DATA_ATOL = 1e-4
"""Largest deviation allowed from the shipped true utility (``U`` peaks at 10) after
``REPLAYED_ROUNDS`` rounds. The same machine repeats the file bit for bit; under
``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE`` (the kernels of ``make test-kernels``) the
first 100 rounds moved by at most 8.6e-6 (rlhf) and 1.6e-6 (fpo-relaxed). A change of the game's
or the learners' arithmetic (a step size, a penalty) moves them by 1e-2 and more."""


def _lesson_data_script():
    path = ROOT / "scripts" / "make_lesson_data.py"
    spec = importlib.util.spec_from_file_location("make_lesson_data", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_there_are_lessons():
    assert len(NOTEBOOKS) >= 4, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, "a lesson without code"
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
            f"{path.name} has outputs committed; clear them (Kernel > Restart & Clear Output) before committing"
        )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lesson_runs(path, tmp_path):
    import nbclient  # the tutorials extra; CI installs it, so a missing one fails
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    # A fresh folder per lesson: what a lesson writes (results, a learner module) stays there.
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    # A failing cell (an error, or an assert on a claim the prose makes) raises
    # CellExecutionError naming the cell; the lessons' run times are reported, not asserted.
    client.execute()
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
    shown = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.get("data", {}).get("image/png")]
    assert shown, "a lesson that draws no figure"


@pytest.mark.pinned
def test_lesson_data_is_what_the_code_plays():
    """``tutorials/data/blind_spot.npz``, the 64-seed runs lesson 2 reads, has the layout
    ``scripts/make_lesson_data.py`` writes, and its first block (seeds 0-15) of both learners,
    computed again by the script for the first rounds, equals the file's rows. A change to the
    neural game or its learners that moves these runs fails here: run the script again."""
    script = _lesson_data_script()
    with np.load(script.OUT) as f:
        data = dict(f)
    assert (int(data["rounds"]), int(data["seeds"]), int(data["block"])) == (script.ROUNDS, script.SEEDS, script.BLOCK)
    np.testing.assert_array_equal(data["rows"], script.rows())
    for learner in script.LEARNERS:
        u, final, peak = data[f"{learner}/true_utility"], data[f"{learner}/final"], data[f"{learner}/peak"]
        assert u.shape == (len(script.rows()), script.SEEDS) and final.shape == peak.shape == (script.SEEDS,)
        np.testing.assert_array_equal(u[-1], final.astype(np.float32))  # the last row is the final round
        assert np.all(peak >= u.max(0)) and np.all(np.isfinite(u))
    for key in ("rlhf/buffer_error", "rlhf/error_at_ideal"):
        assert data[key].shape == (script.SEEDS,) and np.all(np.isfinite(data[key]))

    fresh = script.compute(seeds=script.BLOCK, rounds=REPLAYED_ROUNDS, log=lambda *_: None)
    early = data["rows"] < REPLAYED_ROUNDS
    np.testing.assert_array_equal(fresh["rows"][:-1], data["rows"][early])  # every stored row, and round 99
    for learner in script.LEARNERS:
        np.testing.assert_allclose(
            fresh[f"{learner}/true_utility"][:-1],
            data[f"{learner}/true_utility"][early, : script.BLOCK],
            rtol=0,
            atol=LESSON_DATA_ATOL,
            err_msg=f"{learner}: {script.OUT} is not what this code plays; python scripts/make_lesson_data.py writes it again",
        )
