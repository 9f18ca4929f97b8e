"""Every test-side module imports on Windows, checked on Linux.

The Windows CI job collects the whole suite, and a module that imports
``resource`` or reads ``signal.SIGKILL`` at import stops its collection.  A
fresh interpreter strips what Windows lacks (``windows_rules.strip_to_windows``:
POSIX-only modules, ``os.fork``, ``AF_UNIX``, the POSIX signals, every
``select`` backend but select()) and imports each module found under tests/,
so a module added later is checked without being listed here.  An import may
end in a module-level skip (``pytest.importorskip``, ``pytest.skip(...,
allow_module_level=True)``): that is how pytest reports such a module on
Windows too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

pytestmark = [pytest.mark.timeout(120), pytest.mark.windows_rules]

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _module_names() -> List[str]:
    names = sorted(path.stem for path in TESTS.glob("*.py"))
    package = TESTS / "fakes"
    names += sorted(f"fakes.{path.stem}".replace(".__init__", "") for path in package.glob("*.py"))
    return names


MODULES = _module_names()

_SCRIPT = """
import json, sys
from windows_rules import import_as_windows_would
outcomes = import_as_windows_would(sys.argv[1], sys.argv[2:])
import os, select, signal, socket
import asyncio_compat.asyncore, pollers
try:
    import resource
except ImportError:
    resource = None
outcomes["<rules>"] = {
    "resource": resource is not None,
    "fork": hasattr(os, "fork"),
    "AF_UNIX": hasattr(socket, "AF_UNIX"),
    "SIGKILL": hasattr(signal, "SIGKILL"),
    "poll": hasattr(select, "poll"),
    "file_dispatcher": hasattr(asyncio_compat.asyncore, "file_dispatcher"),
    "available": pollers.available(),
    "WINDOWS": pollers.platform_rules.WINDOWS,
}
print(json.dumps(outcomes))
"""


@pytest.fixture(scope="module")
def outcomes() -> Dict[str, object]:
    """module name -> outcome, from one interpreter that imports them all as on Windows."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(ROOT), *MODULES],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    result: Dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_interpreter_lacks_what_windows_lacks(outcomes: Dict[str, object]) -> None:
    assert outcomes["<rules>"] == {
        "resource": False,
        "fork": False,
        "AF_UNIX": False,
        "SIGKILL": False,
        "poll": False,
        "file_dispatcher": False,
        "available": ["select"],
        "WINDOWS": True,
    }


def test_every_module_is_checked() -> None:
    assert {"conftest", "helpers", "windows_rules", "fakes", "test_windows_collect"} <= set(MODULES)
    assert sum(name.startswith("test_") for name in MODULES) >= 30


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_as_on_windows(outcomes: Dict[str, object], name: str) -> None:
    outcome = str(outcomes[name])
    if outcome != "ok" and not outcome.startswith("skipped: "):
        pytest.fail(f"{name} does not import on Windows:\n{outcome}", pytrace=False)
