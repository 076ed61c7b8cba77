"""The public surface: what ``__all__`` names exists and is documented, nothing else public sits
at the top of ``fpo_envs`` and ``agents``, the registries are read-only, and every public
function, class, method, property and UPPERCASE constant of every module has a docstring.

A constant is documented the way this package documents one: by a string literal right after
its assignment, in the module that assigns it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import pkgutil
import types
from pathlib import Path

import gymnasium as gym
import pytest

import agents
import agents.bench
import fpo_envs

PACKAGES = {"fpo_envs": fpo_envs, "agents": agents, "agents.bench": agents.bench}


def _names(target: ast.expr) -> set[str]:
    """The names an assignment target binds (``X``, ``X, Y``); none for ``x[i]`` or ``x.a``."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_names(e.value if isinstance(e, ast.Starred) else e) for e in target.elts))
    return set()


def _assignments(tree: ast.Module) -> list[tuple[set[str], bool]]:
    """Per top-level assignment: the names it binds, and whether a string literal follows it."""
    found = []
    for node, after in zip(tree.body, tree.body[1:] + [None]):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names = set().union(*(_names(t) for t in targets))
        documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)
        if names:
            found.append((names, documented))
    return found


def _documented_constants(module: types.ModuleType) -> set[str]:
    """The names a module assigns at its top level with a string literal right after."""
    try:
        tree = ast.parse(Path(inspect.getfile(module)).read_text())
    except (TypeError, OSError):
        return set()
    return {name for names, documented in _assignments(tree) if documented for name in names}


def _source_module(module: types.ModuleType, name: str) -> types.ModuleType:
    """The module that assigns ``name``: ``module``, or the one its ``from x import name``
    names, followed through re-exports."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and any(alias.name == name for alias in node.names):
            return _source_module(importlib.import_module(node.module), name)
    return module


def _undocumented(obj: object) -> bool:
    """No docstring of its own: a class's inherited one, or the signature a dataclass fills in, is none."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
        return True
    return not (doc or "").strip()


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_name_in_all_exists_and_is_documented(package):
    module = PACKAGES[package]
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            if _undocumented(obj):
                undocumented.append(name)
        elif not isinstance(obj, types.ModuleType) and name not in _documented_constants(_source_module(module, name)):
            undocumented.append(name)
    assert not undocumented, f"{package}: public names without a docstring: {undocumented}"


@pytest.mark.parametrize("package", ["fpo_envs", "agents"])
def test_nothing_public_leaks_at_the_top_level(package):
    module = PACKAGES[package]
    leaked = sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and name not in module.__all__ and not isinstance(value, types.ModuleType)
    )
    assert not leaked, f"{package} exposes {leaked} outside its __all__: import them privately (as _name)"


@pytest.mark.parametrize(
    "view, how",
    [(agents.registry, "agents.register"), (agents.PENALTIES, "agents.register_penalty"), (agents.FAMILIES, "agents.register")],
)
def test_the_registries_read_as_dicts_and_refuse_writes(view, how):
    key = next(iter(view))
    assert key in view and view[key] is view.get(key) and len(list(view.items())) == len(view)
    writes = [
        lambda: view.__setitem__(key, None),
        lambda: view.__delitem__(key),
        lambda: view.pop(key),
        lambda: view.update({key: None}),
        lambda: view.setdefault("new", None),
        lambda: view.clear(),
        lambda: view.popitem(),
    ]
    for write in writes:
        with pytest.raises(TypeError, match=f"read-only.*use {how}"):
            write()
    assert key in view


def test_unregister_removes_a_users_learner_and_penalty_and_keeps_the_builtins():
    agents.register("api-test-fpo", kwargs={"penalty": "practical"}, games=("linear",))
    agents.register_penalty("api-test-penalty", lambda z: z.grad_sqnorm)
    assert agents.unregister("api-test-fpo").id == "api-test-fpo" and "api-test-fpo" not in agents.registry
    assert agents.unregister_penalty("api-test-penalty").name == "api-test-penalty" and "api-test-penalty" not in agents.PENALTIES
    with pytest.raises(ValueError, match="no learner 'api-test-fpo' is registered"):
        agents.unregister("api-test-fpo")
    with pytest.raises(ValueError, match="built-in learner and stays registered.*temporary_registrations"):
        agents.unregister("fpo-relaxed")
    with pytest.raises(ValueError, match="built-in penalty and stays registered.*temporary_registrations"):
        agents.unregister_penalty("relaxed")


def test_temporary_registrations_undo_everything_inside_the_block():
    from agents.common.registration import temporary_registrations

    agents.ids()  # the plugins load first, as the block loads them on entry
    builtin, relaxed = agents.registry["rlhf"], agents.PENALTIES["relaxed"]
    before = dict(agents.registry), dict(agents.PENALTIES)
    with temporary_registrations():
        agents.register("rlhf", kwargs={"penalty": "practical"}, games=("linear",), override=True)
        agents.register_penalty("relaxed", lambda z: z.grad_sqnorm, override=True)
        agents.register("api-test-temp", kwargs={}, games=("linear",))
        assert agents.registry["rlhf"] is not builtin and agents.PENALTIES["relaxed"] is not relaxed
    assert (dict(agents.registry), dict(agents.PENALTIES)) == before
    assert agents.registry["rlhf"] is builtin and agents.PENALTIES["relaxed"] is relaxed


def _modules() -> list[str]:
    names = []
    for package in (fpo_envs, agents):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):  # running it is its job: importing would run the command
                names.append(info.name)
    return sorted(names)


def _import(name: str) -> types.ModuleType:
    """The module, or a skip where it needs an optional extra that is not installed."""
    try:
        return importlib.import_module(name)
    except (ImportError, gym.error.DependencyNotInstalled) as err:
        missing = getattr(err, "name", None) or ""
        if isinstance(err, ImportError) and (not isinstance(err, ModuleNotFoundError) or missing.split(".")[0] in PACKAGES):
            raise  # this package's own import error, not an optional extra
        pytest.skip(f"{name} needs an optional extra that is not installed: {err}")


def _written_in(function: object, module: types.ModuleType) -> bool:
    """Whether ``function``'s code is in ``module``'s file (a dataclass's generated methods are not)."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code is not None and Path(code.co_filename).resolve() == Path(inspect.getfile(module)).resolve()


def _member_docs(cls: type, module: types.ModuleType) -> dict[str, str | None]:
    """The docstrings of the public methods and properties ``cls``'s own body defines in
    ``module`` (neither inherited ones nor those a dataclass generates)."""
    docs = {}
    for attr, obj in vars(cls).items():
        if attr.startswith("_"):
            continue
        if isinstance(obj, (staticmethod, classmethod)):
            function = obj.__func__
        elif isinstance(obj, property):
            function = obj.fget  # the property's __doc__: its own ``doc=`` or its getter's
        elif isinstance(obj, functools.cached_property):
            function = obj.func
        elif inspect.isfunction(obj):
            function = obj
        else:
            continue
        if function is not None and _written_in(function, module):
            docs[attr] = obj.__doc__ if isinstance(obj, (property, functools.cached_property)) else function.__doc__
    return docs


@pytest.mark.parametrize("name", _modules())
def test_every_public_function_and_class_has_a_docstring(name):
    module = _import(name)
    assert not _undocumented(module), f"module {name} has no docstring"
    undocumented = sorted(
        attr
        for attr, obj in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
        and _undocumented(obj)
    )
    assert not undocumented, f"{name}: public functions/classes without a docstring: {undocumented}"


@pytest.mark.parametrize("name", _modules())
def test_every_public_method_and_property_has_a_docstring_of_its_own(name):
    module = _import(name)
    undocumented = sorted(
        f"{attr}.{member}"
        for attr, cls in vars(module).items()
        if not attr.startswith("_") and inspect.isclass(cls) and cls.__module__ == name
        for member, doc in _member_docs(cls, module).items()
        if not (doc or "").strip()
    )
    assert not undocumented, f"{name}: public methods/properties without a docstring of their own: {undocumented}"


@pytest.mark.parametrize("name", _modules())
def test_every_public_constant_has_a_docstring(name):
    # Read from the source, so a module that needs an optional extra is checked too.
    tree = ast.parse(Path(importlib.util.find_spec(name).origin).read_text())
    undocumented = sorted(
        constant
        for names, documented in _assignments(tree)
        if not documented
        for constant in names
        if not constant.startswith("_") and constant.isupper()
    )
    assert not undocumented, f"{name}: public constants without a string literal after their assignment: {undocumented}"
