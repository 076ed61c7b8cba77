"""Every lesson in ``tutorials/`` runs top to bottom, and is committed without outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


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
