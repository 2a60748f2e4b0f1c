"""The package's layering, read from the source with ``ast`` at every depth.

Every ``import rewire...`` counts, at module level, inside a function or under
``TYPE_CHECKING``. The packages stand in one order and each imports only from those before it
(its own package aside)::

    errors, io, _version -> hw_profiles -> ir -> frontends -> compiler -> export
        -> training -> gnn -> job -> cli -> rewire/__init__.py (the face)

with two more rules: the compiler imports nothing from ``frontends`` and the writers
(``export``) nothing from ``frontends`` or ``training``. A ``__main__.py`` is an entry point
and stands above all of them; nothing imports the face (``from rewire import x`` for a name
that is not a sub-package) nor an entry point. No two modules import each other, directly or
through others (no cycle), and no file of the package is over 400 lines.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rewire"
ORDER = ("errors", "io", "_version", "hw_profiles", "ir", "frontends", "compiler", "export",
         "training", "gnn", "job", "cli", "__init__", "__main__")
RANK = {name: i for i, name in enumerate(ORDER)}
FORBIDDEN = {("compiler", "frontends"), ("export", "frontends"), ("export", "training")}
MAX_LINES = 400


def _modules() -> dict[tuple[str, ...], Path]:
    """``('export', 'netx')`` -> file, ``('export',)`` -> its ``__init__.py``, ``()`` -> the face."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[parts[:-1] if parts[-1] == "__init__" else parts] = path
    return found


MODULES = _modules()


def _group(mod: tuple[str, ...], path: Path) -> str:
    if path.name == "__main__.py":
        return "__main__"
    return mod[0] if mod else "__init__"


def _resolve(name: tuple[str, ...]) -> tuple[str, ...]:
    """The longest prefix of ``name`` that is a module of the package."""
    while name and name not in MODULES:
        name = name[:-1]
    return name


def _imports(mod: tuple[str, ...], path: Path):
    """Yield ``(line, target module)`` for every import of a rewire module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = list(mod if path.name == "__init__.py" else mod[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rewire" or alias.name.startswith("rewire."):
                    yield node.lineno, _resolve(tuple(alias.name.split(".")[1:]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    continue
                base = package[:len(package) - (node.level - 1)]
            elif node.module == "rewire" or (node.module or "").startswith("rewire."):
                base = []
            else:
                continue
            if node.level == 0:
                base = node.module.split(".")[1:]
            elif node.module:
                base = base + node.module.split(".")
            for alias in node.names:  # `from rewire.x import y`: y may be a module
                yield node.lineno, _resolve(tuple(base) + (alias.name,))


def _edges():
    for mod, path in sorted(MODULES.items()):
        for line, target in _imports(mod, path):
            if target != mod:
                yield mod, path, line, target


def test_every_import_follows_the_pipeline_order():
    bad = []
    for mod, path, line, target in _edges():
        src, dst = _group(mod, path), _group(target, MODULES[target])
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {'.'.join(('rewire',) + target)}"
        if dst in ("__init__", "__main__"):
            bad.append(f"{where}: nothing imports the face or an entry point")
        elif src != dst and (RANK[dst] >= RANK[src] or (src, dst) in FORBIDDEN):
            bad.append(f"{where}: {src} may not import {dst}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    graph: dict[tuple, set] = {mod: set() for mod in MODULES}
    for mod, _path, _line, target in _edges():
        graph[mod].add(target)
    # Tarjan's strongly connected components, iteratively
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(".".join(member) or "rewire")
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    assert not cycles, cycles


def test_no_file_of_the_package_is_over_400_lines():
    big = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, big


def test_sources_are_cited_from_the_repository_not_an_unshipped_document():
    root = PACKAGE.parent
    hits = [f"{p.relative_to(root)}:{k}" for folder in ("rewire", "docs")
            for p in (root / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md",
                                                                                ".toml")
            for k, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if "REFERENCE §" in line]
    assert not hits, hits


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The rules are not vacuous: a compiler module importing the frontends is caught."""
    fake = tmp_path / "rewire"
    (fake / "compiler").mkdir(parents=True)
    (fake / "frontends").mkdir()
    for name in ("__init__.py", "compiler/__init__.py", "frontends/__init__.py"):
        (fake / name).write_text("")
    (fake / "compiler" / "bad.py").write_text("def f():\n    from rewire.frontends import x\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGE", fake)
    monkeypatch.setattr(this, "MODULES", _modules())
    edges = [(m, t) for m, _p, _l, t in _edges()]
    assert (("compiler", "bad"), ("frontends",)) in edges
    try:
        test_every_import_follows_the_pipeline_order()
    except AssertionError as exc:
        assert "compiler/bad.py:2 imports rewire.frontends: compiler may not import" in str(exc)
    else:
        raise AssertionError("the order check missed compiler -> frontends")
