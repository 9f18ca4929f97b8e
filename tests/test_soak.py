"""Soak: 5,000 concurrent loopback connections, each echoing 100 KiB through async_chat.

The machinery is ``examples/soak_long.py`` (its ``Soak`` class), which users
run for longer.  All clients connect first and only then start streaming,
so every connection is open at once; each client checks every byte of its
echo.  Afterwards the map must be empty and no descriptor may be left open.

Both ends live in this process: about 10,000 descriptors.  The soft
RLIMIT_NOFILE is raised to the hard limit for the test (and put back); the
test skips, saying why, when the hard limit is too low.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest
from helpers import load_example

pytestmark = [pytest.mark.soak, pytest.mark.timeout(150)]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "soak_long.py"
CONNECTIONS = 5000
SIZE = 100 * 1024


@pytest.fixture
def soak_module() -> ModuleType:
    return load_example("soak_long")


@pytest.fixture
def descriptors(soak_module: ModuleType) -> Iterator[None]:
    """Raises the soft descriptor limit to the hard one for the test."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = soak_module.fds_needed(CONNECTIONS)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} descriptors; the hard RLIMIT_NOFILE is {hard}")
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_5000_connections_echo_100k_each(
    poller_name: str, soak_module: ModuleType, descriptors: None
) -> None:
    if poller_name == "select":
        pytest.skip("select() cannot watch descriptors past FD_SETSIZE (1024)")
    fds_before = soak_module.open_fd_count()
    soak = soak_module.Soak(CONNECTIONS, SIZE, seed=CONNECTIONS)
    soak.run(poller_name, time_limit=120.0)
    assert soak.failures == []
    assert soak.peak_open == CONNECTIONS
    assert soak.done == CONNECTIONS
    assert soak.verified == CONNECTIONS * SIZE
    assert not soak.channels
    assert soak_module.open_fd_count() == fds_before


def test_long_variant_runs_rounds(poller_name: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    args = ["--connections", "40", "--size", "20000", "--rounds", "2", "--poller", poller_name]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"poller: {poller_name}; 40 connections x 20000 bytes per round"
    for number, line in enumerate(lines[1:], start=1):
        assert re.fullmatch(
            rf"round {number}: 40 connections open at once; 40 echoed 800000 bytes, every one checked, "
            r"in [0-9.]+s; 0 failures; descriptors leaked: 0",
            line,
        ), line
    assert len(lines) == 3
