"""The import rule and the import graph.

``import asyncio_compat`` loads the core: the engine, ``asyncore`` and
``asynchat`` (``shutdown()`` is built on both).  It does not load the
optional pieces, each of which pulls in a good part of the standard library:
they load when a program imports them or first uses them.  A function-level
import of one of the package's own modules is there for this rule alone.

The modules of ``asyncio_compat`` and ``pollers`` import each other without
a cycle, counting the imports inside functions (not those under
``if TYPE_CHECKING:``, which never run), and ``pollers`` never imports
``asyncio_compat``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("asyncio_compat", "pollers")

LOADED = ("asyncio_compat.asyncore", "asyncio_compat.asynchat", "pollers")
NOT_LOADED = (
    # ours: public modules a program imports, and what is loaded at first use
    "asyncio_compat.asyncio_bridge", "asyncio_compat.diagnose", "asyncio_compat.idle",
    "asyncio_compat.smtpd", "asyncio_compat.socketserver", "asyncio_compat.tk",
    "asyncio_compat.tls", "asyncio_compat.workers",
    "asyncio_compat._debug_monitor", "asyncio_compat._loop_stats",
    # the standard library they bring
    "asyncio", "dataclasses", "email", "logging", "smtplib", "socketserver", "ssl", "tkinter",
    "traceback",
)


def test_import_asyncio_compat_loads_the_core_and_nothing_optional() -> None:
    program = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import asyncio_compat\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert [name for name in LOADED if name not in loaded] == []
    unwanted = [name for name in loaded if any(name == m or name.startswith(m + ".") for m in NOT_LOADED)]
    assert sorted(unwanted) == []


# -- the import graph -------------------------------------------------------------------


def _modules() -> Dict[str, Path]:
    """Every module of PACKAGES by its dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runtime_imports(tree: ast.AST) -> List[ast.AST]:
    """The import statements of ``tree``, at any depth, except under ``if TYPE_CHECKING:``."""
    found: List[ast.AST] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            found += [n for child in node.orelse for n in _runtime_imports(child)]
        else:
            found += _runtime_imports(node)
    return found


def _graph(modules: Dict[str, Path]) -> Dict[str, Set[str]]:
    """module -> the modules of PACKAGES it imports (the most specific existing name)."""
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = []
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
                continue
            assert isinstance(node, ast.ImportFrom)
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets += [f"{base}.{alias.name}" for alias in node.names]
        graph[name] = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` as a path that starts and ends on the same module; [] if none."""
    done: Set[str] = set()

    def visit(name: str, path: List[str]) -> List[str]:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return []
        for target in sorted(graph[name]):
            found = visit(target, path + [name])
            if found:
                return found
        done.add(name)
        return []

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return []


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph(_modules())
    assert "asyncio_compat.asyncore" in graph["asyncio_compat.asynchat"]  # the parse sees imports
    assert " -> ".join(_cycle(graph)) == ""


def test_pollers_imports_nothing_of_asyncio_compat() -> None:
    graph = _graph(_modules())
    assert {name: targets for name, targets in graph.items()
            if name.split(".")[0] == "pollers" and any(t.startswith("asyncio_compat") for t in targets)} == {}
