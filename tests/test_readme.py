"""Every Python snippet in the README runs as written, each in a fresh interpreter."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def _params():
    for i, code in enumerate(SNIPPETS):
        first = code.strip().splitlines()[0]
        marks = [pytest.mark.slow] if "TextRM" in code else []  # loads the real language models
        yield pytest.param(code, id=f"{i}-{first[:30]}", marks=marks)


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("code", list(_params()))
def test_readme_snippet_runs(code, tmp_path):
    # The "your own algorithm" snippet is the user's module my_algo.py, as the README says.
    name = "my_algo.py" if "register_penalty" in code else "snippet.py"
    (tmp_path / name).write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, name], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"README snippet failed:\n{code}\n--- stderr ---\n{result.stderr[-3000:]}"
