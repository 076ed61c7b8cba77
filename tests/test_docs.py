"""The documentation site: it builds with warnings as errors, every internal link and image of
the built pages resolves, the README stays a landing page, and the rendered lessons are the
lessons' current code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_LIMIT = 15_000
"""Bytes: the README is a landing page; the rest lives on the site."""


def test_the_readme_is_a_landing_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move sections to docs/ (limit {README_LIMIT})"


def _local_targets(markdown: str) -> list[str]:
    links = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", markdown)
    return [t for t in links if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize(
    "page",
    [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("games/*-results.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_markdown_links_resolve_in_the_repository(page):
    """Read on GitHub or in an editor, every relative link and image of a page points at a file."""
    missing = [t for t in _local_targets(page.read_text()) if not (page.parent / unquote(t.split("#")[0])).exists()]
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("lesson", sorted((ROOT / "tutorials").glob("*.ipynb")), ids=lambda p: p.stem)
def test_the_rendered_lesson_is_the_lessons_code(lesson):
    """docs/lessons/ holds executed copies for the site; a lesson changed without rendering it
    again (python scripts/render_lessons.py) fails here."""
    rendered = DOCS / "lessons" / lesson.name
    assert rendered.exists(), f"{rendered} is missing: python scripts/render_lessons.py {lesson.stem}"

    def cells(path):
        return [(c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text())["cells"]]

    assert cells(rendered) == cells(lesson), f"{rendered.name} is stale: python scripts/render_lessons.py {lesson.stem}"
    code = [c for c in json.loads(rendered.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] or not c["source"] for c in code if "print(" in "".join(c["source"])), (
        "a rendered lesson without outputs"
    )
    errors = [o for c in code for o in c["outputs"] if o.get("output_type") == "error"]
    assert not errors, f"{rendered.name} was rendered with an error"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") in ("canonical",)):
                self.refs.append((tag, attrs[key]))


def _parse(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(errors="replace"))
    return parser


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors_and_every_link_and_image_resolves(tmp_path):
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", str(DOCS), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, f"make docs failed:\n{result.stderr[-5000:]}"
    pages = sorted(out.rglob("*.html"))
    for name in (
        "index.html",
        "games/linear.html",
        "games/text.html",
        "api/index.html",
        "lessons/04_text_game.html",
        "learners.html",
    ):
        assert (out / name).exists(), name
    parsed = {p: _parse(p) for p in pages}
    broken = []
    for page, refs in parsed.items():
        for tag, ref in refs.refs:
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith("//") or ref.startswith("mailto:"):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(out)}: <{tag}> {ref}")
            elif parts.fragment and target.suffix == ".html" and target in parsed and parts.fragment not in parsed[target].ids:
                broken.append(f"{page.relative_to(out)}: <{tag}> {ref} (no such anchor)")
    assert not broken, "\n".join(broken[:40])
    # Every figure the README shows is on the site too.
    readme_images = re.findall(r"!\[[^\]]*\]\((docs/figures/[^)]+)\)", (ROOT / "README.md").read_text())
    site_images = {p.name for p in out.rglob("*") if p.suffix in (".png", ".gif")}
    assert readme_images and all(Path(i).name in site_images for i in readme_images)
    # The learner table is the registry's (read in a fresh process: tests register learners of their own).
    ids = subprocess.run(
        [sys.executable, "-c", "import agents; print(' '.join(agents.ids()))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    learners = (out / "learners.html").read_text()
    assert len(ids) >= 15
    missing = [
        i for i in ids if f'<code class="docutils literal notranslate"><span class="pre">{i}</span></code>' not in learners
    ]
    assert not missing, f"learners missing from the site's table: {missing}"
