"""Sphinx configuration of the fpo-envs site: ``make docs`` builds it with warnings as errors.

Two kinds of page are written here, at the start of every build, from the code itself: one page
per game from its environment's class docstring (as Gymnasium's site does), and the table of the
registered learners. They are not committed (``docs/.gitignore``).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

project = "fpo-envs"
author = "fpo-envs developers"
copyright = "2026, fpo-envs developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
# autosummary writes its stubs with the first suffix: they are reStructuredText.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
# The results pages and the learner table are included into other pages, not pages of their own.
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "games/*-results.md", "learner-registry.md"]

html_theme = "furo"
html_title = "fpo-envs"
html_static_path: list[str] = []

autosummary_generate = True
# A package's page documents what it defines; what it re-exports is documented where it is defined.
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, so a documented attribute is not described twice

myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 4
# The committed reports under figures/ are pages too; they open at H2 as the tools write them.
suppress_warnings = ["myst.header"]
nb_execution_mode = "off"  # the lessons are rendered from executed copies: scripts/render_lessons.py

GAMES = {
    "linear": (
        "FPO/LinearRM-v0",
        "fpo_envs.games.linear",
        "LinearRMEnv",
        "LinearRMVectorEnv",
        "../figures/animations/linear.gif",
    ),
    "neural": (
        "FPO/NeuralRM-v0",
        "fpo_envs.games.neural",
        "NeuralRMEnv",
        "NeuralRMVectorEnv",
        "../figures/animations/neural.gif",
    ),
    "token": ("FPO/TokenRM-v0", "fpo_envs.games.token", "TokenRMEnv", "TokenRMVectorEnv", "../figures/animations/token.gif"),
    "text": ("FPO/TextRM-v0", "fpo_envs.games.text", "TextRMEnv", None, "../figures/text-gold/text_curves.png"),
}


def docstring_to_markdown(doc: str) -> str:
    """An env docstring (Gymnasium's layout: ``## Section`` headings, reST literals and roles,
    doctest examples) as MyST markdown."""
    lines = inspect.cleandoc(doc).split("\n")
    out, in_example = [], False
    for line in lines:
        is_doctest = line.startswith(">>>") or (in_example and line.startswith("..."))
        if is_doctest and not in_example:
            out.append("```pycon")
            in_example = True
        elif in_example and not is_doctest:
            out.append("```")
            in_example = False
        if is_doctest:
            line = re.sub(r"\s*# doctest:.*$", "", line)
        else:
            line = re.sub(r":(?:class|func|meth|data|attr|mod):`~?([^`]+)`", r"`\1`", line)
        out.append(line)
    if in_example:
        out.append("```")
    return "\n".join(out)


def write_game_pages() -> None:
    import importlib

    folder = DOCS / "games"
    folder.mkdir(exist_ok=True)
    for name, (env_id, module, single, vector, picture) in GAMES.items():
        mod = importlib.import_module(module)
        cls = getattr(mod, single)
        summary, _, rest = inspect.cleandoc(cls.__doc__).partition("\n")
        text = [f"# `{env_id}`", "", f"*{summary.strip()}*", "", f"![{env_id}]({picture})", ""]
        text += [
            f'`gym.make("{env_id}")` builds {{py:class}}`{module}.{single}`'
            + (
                f'; `gym.make_vec("{env_id}", num_envs=n)` builds {{py:class}}`{module}.{vector}`, n copies in one batched state.'
                if vector
                else "."
            ),
            "This page is the class docstring, the environment's specification.",
            "",
        ]
        text.append(docstring_to_markdown(rest))
        if vector:
            text += ["", "## The vector env", "", docstring_to_markdown(getattr(mod, vector).__doc__)]
        results = folder / f"{name}-results.md"
        if results.exists():
            text += ["", "```{include} " + results.name, ":heading-offset: 1", "```"]
        (folder / f"{name}.md").write_text("\n".join(text) + "\n")


def _name_of(entry_point) -> str:
    """A registry entry point (``"module:Class"`` or the class itself) as a dotted name."""
    if isinstance(entry_point, str):
        return entry_point.replace(":", ".")
    return f"{entry_point.__module__}.{entry_point.__qualname__}"


def write_learner_table() -> None:
    import agents

    rows = ["| id | policy family on each game it plays | settings it fixes | env it needs |", "|---|---|---|---|"]
    for learner_id in agents.ids():
        spec = agents.spec(learner_id)
        family = "; ".join(f"{game}: `{_name_of(f)}`" for game, f in spec.entry_points.items())
        settings = ", ".join(f"`{k}={v!r}`" for k, v in spec.kwargs.items()) or "-"
        needs = ", ".join(f"`{k}={v!r}`" for k, v in spec.env_kwargs.items()) or "-"
        rows.append(f"| `{learner_id}` | {family} | {settings} | {needs} |")
    (DOCS / "learner-registry.md").write_text("<!-- written by docs/conf.py from agents.registry -->\n" + "\n".join(rows) + "\n")


def _rubrics(app, what, name, obj, options, lines) -> None:
    """The env docstrings' ``## Section`` headings as reST rubrics in the API reference (only
    unindented ones: an indented ``# ...`` is a comment in a code example)."""
    out = []
    for line in lines:
        match = re.match(r"^#{1,4} (.+)$", line)
        out += ["", f".. rubric:: {match.group(1)}", ""] if match else [line]
    lines[:] = out


def setup(app):
    write_game_pages()
    write_learner_table()
    app.connect("autodoc-process-docstring", _rubrics)
