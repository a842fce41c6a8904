"""The project's layers, read from the source with `ast` (nothing is imported): every import of a project module,
at module level, inside functions and classes, under `if __name__ == "__main__":`, in try/except alike, in
aecore/, ui/, app_pages/ (pages/ before the move) and app.py.

Floors, lowest first; an import a -> b needs floor(b) <= floor(a):

    0  aecore.argv, aecore.trace (and the bare `aecore` package, whose __init__ imports nothing)
    1  aecore.engine.*        the engine
    2  aecore.runs.*          the run service
    3  aecore.labs.*          the labs; aecore.export.* (a run's code, ONNX, an offline page), beside them
    4  aecore.train, aecore.bench, aecore.loadtest, aecore.classload, aecore.pagetimes, aecore.anomaly   entry points (aecore.browse: their browser)
    5  ui.*                   what the pages share
    6  app_pages.*  (pages.* until the move)
    7  app                    the frame

A package's __init__.py is its package module (aecore/runs/__init__.py is `aecore.runs`). Also asserted: no
import circle among the project's modules, no aecore module imports streamlit, and every module has a floor.
Imports made by name at run time (`importlib.import_module("...")`) are not seen.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aecore", "ui", "app_pages", "pages")
SCRIPTS = ("app.py",)

FLOORS = {
    "aecore": 0, "aecore.argv": 0, "aecore.trace": 0,
    "aecore.engine": 1,
    "aecore.runs": 2,
    "aecore.labs": 3, "aecore.export": 3,
    "aecore.train": 4, "aecore.bench": 4, "aecore.loadtest": 4, "aecore.classload": 4, "aecore.browse": 4, "aecore.pagetimes": 4, "aecore.anomaly": 4,
    "ui": 5,
    "app_pages": 6, "pages": 6,
    "app": 7,
}
SUB_PACKAGE_FLOORS = ("aecore.engine", "aecore.runs", "aecore.labs", "aecore.export", "ui", "app_pages", "pages")   # and below


# ---------------------------------------------------------------------------------------------- reading
def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every project module (a package's __init__.py under the package's name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    for script in SCRIPTS:
        if (root / script).is_file():
            found[Path(script).stem] = root / script
    return found


def floor(module: str) -> int | None:
    if module in FLOORS:
        return FLOORS[module]
    for prefix in SUB_PACKAGE_FLOORS:
        if module.startswith(prefix + "."):
            return FLOORS[prefix]
    return None


def project_module(name: str, modules) -> str | None:
    """The longest prefix of the dotted `name` that is a project module."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def imports(module: str, path: Path, modules) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(project modules imported, with line numbers; every imported name, project's or not, with line numbers)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    edges, names = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.append((alias.name, node.lineno))
                target = project_module(alias.name, modules)
                if target:
                    edges.append((target, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.append((source, node.lineno))
            for alias in node.names:
                target = project_module(f"{source}.{alias.name}", modules) if alias.name != "*" else None
                if target != f"{source}.{alias.name}":      # a name inside `source`, not a submodule of it
                    target = project_module(source, modules)
                if target:
                    edges.append((target, node.lineno))
    return edges, names


def graph(root: Path = ROOT) -> tuple[dict[str, Path], dict[str, dict[str, int]], dict[str, list[tuple[str, int]]]]:
    """Project modules, their import edges (importer -> imported -> first line), and every name each imports."""
    modules = module_files(root)
    edges, names = {}, {}
    for module, path in modules.items():
        found, names[module] = imports(module, path, modules)
        edges[module] = {}
        for target, line in found:
            if target != module:
                edges[module].setdefault(target, line)
    return modules, edges, names


def where(modules, module: str, line: int) -> str:
    return f"{modules[module].relative_to(ROOT) if modules[module].is_relative_to(ROOT) else modules[module]}:{line}"


# ---------------------------------------------------------------------------------------------- circles
def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One circle (a, b, ..., a) through each strongly connected group of modules (Tarjan), in name order."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)

    found = []
    for group in groups:
        start = min(group)
        # breadth-first within the group: the shortest way from `start` back to itself
        previous, frontier = {start: None}, [start]
        while frontier and start not in [w for v in frontier for w in edges[v]]:
            nxt = []
            for v in frontier:
                for w in sorted(edges[v]):
                    if w in group and w not in previous:
                        previous[w] = v
                        nxt.append(w)
            frontier = nxt
        last = next(v for v in sorted(frontier) if start in edges[v])
        path = [last]
        while previous[path[-1]] is not None:
            path.append(previous[path[-1]])
        found.append(list(reversed(path)) + [start])
    return sorted(found)


# ---------------------------------------------------------------------------------------------- the tests
def test_every_module_has_a_floor():
    modules, _, _ = graph()
    assert "app" in modules and any(m.startswith("aecore.engine") for m in modules)   # the reader finds the tree
    missing = sorted(m for m in modules if floor(m) is None)
    if missing:
        pytest.fail("modules without a floor (add them to FLOORS in tests/test_layers.py):\n  "
                    + "\n  ".join(f"{m}  ({modules[m].relative_to(ROOT)})" for m in missing), pytrace=False)


def test_no_import_runs_up_a_floor():
    modules, edges, _ = graph()
    upward = [f"{where(modules, a, line)}  {a} (floor {floor(a)}) -> {b} (floor {floor(b)})"
              for a in sorted(edges) for b, line in sorted(edges[a].items())
              if floor(a) is not None and floor(b) is not None and floor(b) > floor(a)]
    if upward:
        pytest.fail(f"{len(upward)} import(s) run up a floor (an import a -> b needs floor(b) <= floor(a)):\n  "
                    + "\n  ".join(upward), pytrace=False)


def test_no_import_circle():
    modules, edges, _ = graph()
    found = circles(edges)

    def describe(circle):
        steps = [f"{a} -> {b} ({where(modules, a, edges[a][b])})" for a, b in zip(circle, circle[1:])]
        return " -> ".join(circle) + "\n      " + "\n      ".join(steps)

    if found:
        pytest.fail(f"{len(found)} import circle(s):\n  " + "\n  ".join(describe(c) for c in found), pytrace=False)


def test_no_aecore_module_imports_streamlit():
    modules, _, names = graph()
    offending = [f"{where(modules, m, line)}  {m} imports {name}"
                 for m in sorted(names) if m == "aecore" or m.startswith("aecore.")
                 for name, line in names[m] if name == "streamlit" or name.startswith("streamlit.")]
    if offending:
        pytest.fail("aecore must not import streamlit:\n  " + "\n  ".join(offending), pytrace=False)


def test_the_reader_sees_every_kind_of_import(tmp_path):
    """The reader itself: imports in functions, in a __main__ block and relative ones all count; a name imported
    from a package is an edge to the package, a submodule imported from it an edge to the submodule."""
    (tmp_path / "aecore" / "engine").mkdir(parents=True)
    (tmp_path / "aecore" / "runs").mkdir(parents=True)
    (tmp_path / "aecore" / "__init__.py").write_text("")
    (tmp_path / "aecore" / "engine" / "__init__.py").write_text("from . import data\n")
    (tmp_path / "aecore" / "engine" / "data.py").write_text(
        "def f():\n    from ..runs import job\n\nif __name__ == '__main__':\n    import aecore.runs.job\n"
        "    from aecore.engine import ENV\n")
    (tmp_path / "aecore" / "runs" / "__init__.py").write_text("")
    (tmp_path / "aecore" / "runs" / "job.py").write_text("import streamlit as st\nfrom aecore.engine.data import x\n")
    (tmp_path / "app.py").write_text("from aecore.runs import job, RunSpec\n")
    modules, edges, names = graph(tmp_path)
    assert set(modules) == {"aecore", "aecore.engine", "aecore.engine.data", "aecore.runs", "aecore.runs.job", "app"}
    assert edges["aecore.engine"] == {"aecore.engine.data": 1}
    assert edges["aecore.engine.data"] == {"aecore.runs.job": 2, "aecore.engine": 6}
    assert edges["app"] == {"aecore.runs.job": 1, "aecore.runs": 1}
    assert ("streamlit", 1) in names["aecore.runs.job"]
    # one circle per strongly connected group (here engine, engine.data, runs.job), the shortest through its first
    assert circles(edges) == [["aecore.engine", "aecore.engine.data", "aecore.engine"]]
