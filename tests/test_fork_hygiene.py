"""No test forks while threads of another test still run.

Python 3.12+ warns at every ``fork()`` in a multi-threaded process, rightly:
the child may deadlock on a lock a vanished thread held.  Threads that
``threading`` does not know of (libuv's resolver pool, started by uvloop when
it looks up a host) outlive their test without tripping conftest's leak
check, and made every later fork of the run warn.  This runs the tests that
start such threads before the tests that fork, in a child pytest (so nothing
stays behind in this process), and looks for the warning.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WARNING = "is multi-threaded, use of fork()"

pytestmark = [
    pytest.mark.skipif(sys.version_info < (3, 12), reason="Python warns of fork() with threads from 3.12"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Python counts the threads on Linux"),
]


@pytest.mark.timeout(240)
def test_the_forking_tests_fork_a_single_threaded_process(tmp_path: Path) -> None:
    if importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed (optional test dependency): its threads are the ones to check")
    files = ["tests/test_asyncio_bridge.py", "tests/test_fork.py", "tests/test_socketserver.py"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "always::DeprecationWarning",
         "-k", "uvloop or fork or Forking", *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=200,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert WARNING not in output, output[-4000:]
