"""The socketserver examples run, exit 0 and print what they should.

Each example runs as a subprocess, the way a reader runs it, once per
backend (``ASYNCIO_COMPAT_POLLER``), from a scratch directory without
``PYTHONPATH`` so that its own bootstrap has to find the package; and once
in this process through its ``main()``, so that the leak check of
conftest.py sees any fd, thread or child it leaves behind.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import List

import pytest
from helpers import load_example, run_example

pytestmark = pytest.mark.timeout(90)

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")




def positions(out: str, patterns: List[str]) -> List[int]:
    found = []
    for pattern in patterns:
        match = re.search(pattern, out, re.M)
        assert match, f"no line matches {pattern!r} in:\n{out}"
        found.append(match.start())
    return found


# -- socketserver_echo -------------------------------------------------------------


def test_echo_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("socketserver_echo")
    out = run_example("socketserver_echo", poller_name, tmp_path)
    assert re.search(r"^serving on 127\.0\.0\.1:\d+$", out, re.M)
    for line in example.MESSAGES:
        assert f"sent {line!r}, got back {line!r}" in out
    assert out.rstrip().endswith("server shut down\nevery echo matched")


def test_echo_in_process(default_poller: str, capsys: pytest.CaptureFixture[str]) -> None:
    example = load_example("socketserver_echo")
    assert example.main() == 0
    assert example.run((b"other\n",)) == [b"other\n"]
    assert "every echo matched" in capsys.readouterr().out


# -- socketserver_echo_logging -----------------------------------------------------------


def test_echo_logging_shows_the_hooks_in_order(poller_name: str, tmp_path: Path) -> None:
    example = load_example("socketserver_echo_logging")
    out = run_example("socketserver_echo_logging", poller_name, tmp_path)
    steps = [
        r"^MainThread client connects and sends",
        r"^server\s+server get_request\(\) accepted 127\.0\.0\.1:\d+$",
        r"^server\s+server verify_request\(\) -> True$",
        r"^server\s+server process_request\(\)$",
        r"^server\s+server finish_request\(\)",
        r"^server\s+handler setup\(\)",
        rf"^server\s+handler handle\(\) read {re.escape(repr(example.MESSAGE))}",
        r"^server\s+handler finish\(\)$",
        r"^server\s+server shutdown_request\(\)$",
        r"^server\s+server close_request\(\)$",
        rf"^MainThread client got back {re.escape(repr(example.MESSAGE))}; server shut down$",
        r"^MainThread echo matched$",
    ]
    found = positions(out, steps)
    assert found == sorted(found)
    assert out.count("handler handle()") == 1


def test_echo_logging_in_process(default_poller: str) -> None:
    example = load_example("socketserver_echo_logging")
    assert example.run(b"in process\n") == b"in process\n"


# -- socketserver_threaded ---------------------------------------------------------------


def test_threaded_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("socketserver_threaded")
    out = run_example("socketserver_threaded", poller_name, tmp_path)
    replies = re.findall(r"^client (\d) got '(.*)' from thread '(.*)'$", out, re.M)
    assert [int(n) for n, _, _ in replies] == list(range(example.CLIENTS))
    assert [ast.literal_eval(f"'{text}'") for _, text, _ in replies] == [
        f"line from client {n}\n" for n in range(example.CLIENTS)
    ]
    threads = {name for _, _, name in replies}
    assert len(threads) == example.CLIENTS and not threads & {"server", "MainThread"}
    assert f"{example.CLIENTS} distinct handler threads" in out


def test_threaded_in_process(default_poller: str) -> None:
    example = load_example("socketserver_threaded")
    results = example.run()
    assert len({name for _, name in results}) == example.CLIENTS


# -- socketserver_forking ------------------------------------------------------------------


@fork_only
def test_forking_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("socketserver_forking")
    out = run_example("socketserver_forking", poller_name, tmp_path)
    server_pid = int(re.findall(r"^server pid (\d+)$", out, re.M)[0])
    replies = re.findall(r"^client (\d) got (b'.*') from child pid (\d+)$", out, re.M)
    assert [ast.literal_eval(line) for _, line, _ in replies] == [
        b"line from client %d\n" % n for n in range(example.CLIENTS)
    ]
    child_pids = {int(pid) for _, _, pid in replies}
    assert len(child_pids) == example.CLIENTS and server_pid not in child_pids
    assert f"parent forked {example.CLIENTS} children" in out
    assert "server closed; children left: 0" in out


@fork_only
def test_forking_in_process(default_poller: str) -> None:
    example = load_example("socketserver_forking")
    results = example.run(2)
    assert len({pid for pid, _ in results}) == 2 and os.getpid() not in {pid for pid, _ in results}


# -- socketserver_with_dispatchers ------------------------------------------------------------


def test_with_dispatchers_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("socketserver_with_dispatchers")
    out = run_example("socketserver_with_dispatchers", poller_name, tmp_path)
    assert "one map, 6 channels: 2 attached servers, 1 asyncore server, 3 clients" in out
    for name, expected in [
        ("quote client", example.QUOTE),
        ("threaded echo client", example.ECHO_LINE),
        ("dispatcher echo client", example.DISPATCHER_LINE),
    ]:
        assert f"{name}: got {expected!r}" in out
    order = positions(out, [
        r"^quote server: handling a request in the loop's thread$",
        r"^quote client: got",
        r"^all clients done: servers detached, asyncore server closed$",
        r"^loop returned; channels left in the map: 0$",
        r"^every client got what it expected$",
    ])
    assert order == sorted(order)


def test_with_dispatchers_in_process(default_poller: str) -> None:
    example = load_example("socketserver_with_dispatchers")
    clients = example.run()
    assert [client.reply for client in clients] == [example.QUOTE, example.ECHO_LINE, example.DISPATCHER_LINE]
