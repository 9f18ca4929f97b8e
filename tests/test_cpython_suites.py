"""CPython's own asyncore/asynchat/smtpd/smtplib/socketserver test files, run against our modules.

Each suite runs in a subprocess (it rebinds module globals and sys.modules)
once per available backend as the process default.  Where the test file or
``test.support`` is absent (a distribution's Python without its Lib/test),
each test skips and says what is missing and where it looked.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "cpython_runner.py")

sys.path.insert(0, HERE)
from cpython_runner import why_unavailable  # noqa: E402


def run_suite(suite: str, poller: str) -> None:
    reason = why_unavailable(suite)
    if reason is not None:
        pytest.skip(reason)
    proc = subprocess.run(
        [sys.executable, RUNNER, suite, poller],
        capture_output=True, text=True, timeout=240,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "RESULT ran=" in output


@pytest.mark.timeout(300)
def test_cpython_asyncore_suite(poller_name: str) -> None:
    run_suite("test_asyncore", poller_name)


@pytest.mark.timeout(300)
def test_cpython_socketserver_suite(poller_name: str) -> None:
    # 3.11's file on 3.9-3.11, the interpreter's own file from 3.12 on
    run_suite("test_socketserver", poller_name)


@pytest.mark.timeout(300)
def test_cpython_asynchat_suite(poller_name: str) -> None:
    run_suite("test_asynchat", poller_name)


@pytest.mark.timeout(300)
def test_cpython_smtpd_suite(poller_name: str) -> None:
    run_suite("test_smtpd", poller_name)


@pytest.mark.timeout(300)
def test_cpython_smtplib_suite(poller_name: str) -> None:
    # this interpreter's own test_smtplib, its smtpd replaced by ours
    run_suite("test_smtplib", poller_name)
