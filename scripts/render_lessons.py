"""Execute the lessons and write them, with their outputs, where the documentation site renders them.

    python scripts/render_lessons.py            # every lesson in tutorials/ -> docs/lessons/
    python scripts/render_lessons.py 04_text    # the lessons whose name contains 04_text

``tutorials/`` keeps the lessons without outputs (what a student opens); ``docs/lessons/`` keeps
executed copies, so the site shows the figures and numbers without running five notebooks in
every docs build. ``tests/tutorials/test_notebooks.py`` checks that each copy's code is its
lesson's, so a lesson changed without rendering it again fails CI. Each lesson runs in a fresh
temporary folder, as the lesson tests run it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
OUT = ROOT / "docs" / "lessons"


def render(path: Path, out: Path) -> float:
    """Execute ``path`` and write it with its outputs to ``out``; returns the seconds it took."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        client = nbclient.NotebookClient(notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": folder}})
        client.execute()
    notebook.metadata.pop("widgets", None)  # widget state of the sliders: large, and not rendered statically
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="render only the lessons whose file name contains one of these")
    args = parser.parse_args(argv)
    lessons = [p for p in sorted(TUTORIALS.glob("*.ipynb")) if not args.only or any(s in p.name for s in args.only)]
    if not lessons:
        raise SystemExit(f"no lesson in {TUTORIALS} matches {args.only}")
    for path in lessons:
        seconds = render(path, OUT / path.name)
        print(f"{path.name}: {seconds:.0f} s -> {(OUT / path.name).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
