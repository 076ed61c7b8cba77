"""Every Python snippet in the README and in the documentation's pages runs as written, each in a
fresh interpreter."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README] + sorted(
    p for p in (ROOT / "docs").rglob("*.md") if not {"_build", "figures", "generated"} & set(p.relative_to(ROOT / "docs").parts)
)
"""The README and the site's hand-written pages (not the committed reports, the build, or the API
stubs Sphinx writes)."""


def _snippets(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _params():
    seen = set()  # the quickstart stands on three pages; run each distinct snippet once
    for path in PAGES:
        for i, code in enumerate(_snippets(path)):
            if code in seen:
                continue
            seen.add(code)
            first = code.strip().splitlines()[0]
            marks = [pytest.mark.slow] if "TextRM" in code else []  # loads the real language models
            yield pytest.param(code, id=f"{path.relative_to(ROOT)}-{i}-{first[:30]}", marks=marks)


def test_the_readme_and_the_pages_have_snippets():
    assert _snippets(README), "the README's quickstart has no snippet"
    assert sum(len(_snippets(p)) for p in PAGES) >= 8


@pytest.mark.parametrize("code", list(_params()))
def test_snippet_runs(code, tmp_path):
    # The "your own algorithm" snippet is the user's module my_algo.py, as the page says.
    name = "my_algo.py" if "register_penalty" in code else "snippet.py"
    (tmp_path / name).write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, name], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"snippet failed:\n{code}\n--- stderr ---\n{result.stderr[-3000:]}"
