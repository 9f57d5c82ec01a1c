"""The package's shape: no import cycles between netloupe's modules (DESIGN.md: arrows point one
way, and files of a package do not import each other in a circle). The sources are parsed with
``ast``, not imported, so the check is fast and sees imports inside functions too."""

import ast
from collections import deque
from pathlib import Path
from typing import Dict, List

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules(root: Path, package: str) -> Dict[str, Path]:
    """Every module of ``package`` under ``root`` by its full name (a package by its own name)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: Dict[str, Path]) -> Dict[str, int]:
    """The package's modules that ``name`` imports anywhere in its file, each with the line of its
    first import. ``from pkg import x`` imports the submodule pkg.x if there is one, else pkg
    (``from . import NAME`` in a submodule imports its package's __init__). A module's parents,
    which Python imports first, count only where the file names them itself."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import pkg.mod.attr` style: the module it names
                target = target.rpartition(".")[0]
            if target:
                found.setdefault(target, node.lineno)
    return found


def import_graph(root: Path, package: str) -> Dict[str, Dict[str, int]]:
    """module -> {imported module of the package: line}."""
    modules = _modules(root, package)
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _path(graph, start: str, goal: str) -> List[str]:
    """A shortest import chain start -> ... -> goal ([] if there is none)."""
    before = {start: None}
    todo = deque([start])
    while todo:
        here = todo.popleft()
        if here == goal:
            chain = [here]
            while before[chain[-1]] is not None:
                chain.append(before[chain[-1]])
            return chain[::-1]
        for nxt in graph.get(here, {}):
            if nxt not in before:
                before[nxt] = here
                todo.append(nxt)
    return []


def cycles(graph) -> List[List[str]]:
    """For every import that lies on a circle, the shortest circle through it ([a, b, ..., a]),
    each circle once, so that every import to untangle is named."""
    found = set()
    for a, targets in graph.items():
        for b in targets:
            back = _path(graph, b, a)
            if back:
                ring = [a] + back[:-1]
                i = ring.index(min(ring))
                found.add(tuple(ring[i:] + ring[:i]))
    return [list(ring) + [ring[0]] for ring in sorted(found)]


def _describe(graph, root: Path, ring: List[str]) -> str:
    def where(a, b):
        path = root.joinpath(*a.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        return f"{path.relative_to(root)}:{graph[a][b]}"

    return " -> ".join(ring) + "\n      " + "; ".join(where(a, b) for a, b in zip(ring, ring[1:]))


def test_no_import_cycles():
    graph = import_graph(SRC, "netloupe")
    found = cycles(graph)
    assert not found, "import cycles (module -> imported module; where each import is):\n  " + "\n  ".join(
        _describe(graph, SRC, ring) for ring in found)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The checker itself, on a package made for it: relative and absolute, module-level and
    in-function imports, submodules named by ``from``, and a submodule importing its package."""
    files = {
        "pkg/__init__.py": "from .a import f\nfrom . import b\n",
        "pkg/a.py": "import os\n\ndef f():\n    from pkg.sub import c\n",
        "pkg/b.py": "from . import VALUE\n",  # a name of the package's __init__: imports pkg
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..a import f\n",
        "pkg/sub/d.py": "from .. import a\nfrom .c import g\nimport pkg.b.thing\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a": 1, "pkg.b": 2}, "pkg.a": {"pkg.sub.c": 4}, "pkg.b": {"pkg": 1},
                     "pkg.sub": {}, "pkg.sub.c": {"pkg.a": 1}, "pkg.sub.d": {"pkg.a": 1, "pkg.sub.c": 2, "pkg.b": 3}}
    assert cycles(graph) == [["pkg", "pkg.b", "pkg"], ["pkg.a", "pkg.sub.c", "pkg.a"]]


def test_ruff_finds_nothing():
    """Style and the obvious bugs (unused names, import order) are checked with the configuration in pyproject.toml."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    done = subprocess.run([ruff, "check", "src", "tests", "benchmarks", "examples"], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing():
    """Every function of the package is annotated and the annotations agree (pyproject.toml's [tool.mypy])."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _trees():
    for path in sorted((SRC / "netloupe").rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_no_module_takes_another_modules_private_names():
    """What a module keeps private (a leading underscore) stays in it: no ``from .x import _name``, no
    ``x._name`` on a netloupe module another file imported."""
    found = []
    for path, tree in _trees():
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("netloupe")):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(SRC)}:{node.lineno} imports {alias.name}")
                    modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                modules |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("netloupe")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not found, "private names taken across modules:\n  " + "\n  ".join(found)


def test_no_function_is_longer_than_80_lines():
    long = [f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, tree in _trees() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80]
    assert not long, "split these:\n  " + "\n  ".join(long)


def test_no_deprecation_shims():
    """0.1.0 was never released: old names are renamed, not kept (CHANGELOG.md lists the renames)."""
    kept = [f"{path.relative_to(SRC)}:{node.lineno}" for path, tree in _trees() for node in ast.walk(tree)
            if isinstance(node, ast.Name) and node.id in ("DeprecationWarning", "renamed")]
    assert not kept, f"deprecation shims at {kept}"
