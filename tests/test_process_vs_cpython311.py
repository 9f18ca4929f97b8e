"""Signals and fork under CPython 3.11's own asyncore and under ours.

tests/process_programs.py is run twice with the 3.11 interpreter: once on the
standard library's asyncore, once on ours (on each backend); what the
handlers saw must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from helpers import SUBPROCESS_TIMEOUT
from test_dropin import find_interpreter

PROGRAM = Path(__file__).resolve().parent / "process_programs.py"

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the programs use signals and fork")


@pytest.fixture(scope="module")
def python311() -> str:
    found = find_interpreter("3.11")
    if found is None:
        pytest.skip("no CPython 3.11 (with the standard library's asyncore) found")
    return found


def _run(python: str, implementation: str, program: str, poller: Optional[str] = None) -> Dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    if poller is not None:
        env["ASYNCIO_COMPAT_POLLER"] = poller
    proc = subprocess.run(
        [python, str(PROGRAM), implementation, program],
        capture_output=True, text=True, env=env, timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # a child's handler error is written there
    result: Dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("program", ["close_all", "swap", "prefork"])
def test_same_as_cpython311(python311: str, poller_name: str, program: str) -> None:
    expected = _run(python311, "stdlib", program)
    assert _run(python311, "ours", program, poller_name) == expected
