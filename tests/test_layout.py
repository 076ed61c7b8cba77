"""The package layout: imports point one way, and no module imports itself back in a circle.

Read from the source (every ``import``, including those inside functions), so a lazy import
that closes a circle is caught as well as a module-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ALLOWED = {
    # fpo_envs: the environments, never the learners.
    "fpo_envs.render": set(),
    "fpo_envs.core": {"fpo_envs.render"},
    "fpo_envs.lm": {"fpo_envs.core"},
    "fpo_envs.models": {"fpo_envs.core", "fpo_envs.lm"},
    "fpo_envs.games": {"fpo_envs.core", "fpo_envs.lm", "fpo_envs.models", "fpo_envs.render"},
    "fpo_envs": {"fpo_envs.core"},
    # agents: the shared contract, then families, then the plugin learners, tools and the benchmark.
    "agents.common": {"fpo_envs", "fpo_envs.core"},
    "agents": {"agents.common"},
    "agents.families": {"agents.common", "fpo_envs", "fpo_envs.core", "fpo_envs.lm", "fpo_envs.models"},
}
"""The subpackages each subpackage may import (besides itself). The plugin learners, tools and
the benchmark sit on top and may import anything below them, but nothing imports them back
(the registry loads the plugin learners by name)."""

TOP = ("agents.learners", "agents.tools", "agents.bench")


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("fpo_envs", "agents"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                out.add(name if name in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_the_layout_check_sees_every_package():
    assert {_package(m) for m in MODULES} == set(ALLOWED) | set(TOP)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _package(module) == package
        for target in targets
        if _package(target) != package and _package(target) not in ALLOWED[package]
    )
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


def test_nothing_imports_the_top_layers_from_below():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _package(target) in TOP and _package(module) not in TOP
    )
    assert not wrong


def test_no_import_circles():
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target) :] + [module, target]))
            elif target not in state:
                visit(target, path + [module])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])
    assert not circles, circles


def test_a_circle_would_be_found():
    """The check itself: a graph with a circle fails it."""
    global GRAPH
    saved = GRAPH
    GRAPH = {**saved, "agents.common.io": saved["agents.common.io"] | {"agents.common.base"}}
    try:
        with pytest.raises(AssertionError):
            test_no_import_circles()
    finally:
        GRAPH = saved
