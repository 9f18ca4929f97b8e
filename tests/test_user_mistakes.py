"""A newcomer's mistakes get a message that names them."""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from asyncio_compat import asyncore

ROOT = Path(__file__).resolve().parent.parent
TK_EXAMPLE = ROOT / "examples" / "tk_idle_client.py"


class ForgetsInit(asyncore.dispatcher):
    def __init__(self) -> None:  # no super().__init__()
        self.create_socket()


def test_create_socket_without_dispatcher_init_says_what_is_missing() -> None:
    made = []
    original = asyncore.dispatcher.set_socket

    def remember(self: asyncore.dispatcher, sock: object, map: object = None) -> None:
        made.append(sock)
        original(self, sock, map)  # type: ignore[arg-type]

    asyncore.dispatcher.set_socket = remember  # type: ignore[method-assign]
    try:
        # 3.11 raised AttributeError too ("no attribute '_map'")
        with pytest.raises(AttributeError, match=r"ForgetsInit.__init__ did not call dispatcher.__init__\(\)"
                           r".*call super\(\).__init__\(\) before create_socket\(\)"):
            ForgetsInit()
    finally:
        asyncore.dispatcher.set_socket = original  # type: ignore[method-assign]
        for sock in made:
            sock.close()  # type: ignore[attr-defined]
    assert len(made) == 1


def test_a_bad_map_still_fails_as_before() -> None:
    """Only the missing map is explained; another object that refuses items keeps its own error."""
    channel = asyncore.dispatcher(map={})
    with socket.socket() as sock, pytest.raises(TypeError, match="does not support item assignment"):
        channel.set_socket(sock, map=())  # type: ignore[arg-type]


@pytest.mark.skipif(os.name != "posix", reason="the display is X11's DISPLAY")
def test_tk_example_without_a_display_says_so(tmp_path: Path) -> None:
    pytest.importorskip("tkinter", reason="tkinter is not available (Debian: apt-get install python3-tk)")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, str(TK_EXAMPLE), "--close-when-done"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot open a window" in proc.stderr and "It needs a display" in proc.stderr
    assert "xvfb-run python3 examples/tk_idle_client.py" in proc.stderr


def test_tk_example_says_it_waits_for_the_window_to_be_closed() -> None:
    doc = ast.get_docstring(ast.parse(TK_EXAMPLE.read_text()))
    assert doc is not None
    waits = r"Without ``--close-when-done`` the window stays open.*exits only when you\s+close it"
    assert re.search(waits, doc, re.S)


def _shell_lines(text: str) -> list:
    return [line.strip() for line in text.splitlines()
            if re.match(r"\s*(\$ )?python3?( |$)", line) or "``python " in line]


def test_commands_for_readers_say_python3() -> None:
    """A fresh Debian or Ubuntu machine has python3 and no python: one spelling, the one that runs."""
    documents = [*sorted((ROOT / "examples").glob("*.py")), ROOT / "README.md", ROOT / "CONTRIBUTING.md",
                 ROOT / "docs" / "debugging.rst"]
    wrong = []
    for path in documents:
        text = path.read_text()
        if path.suffix == ".py":
            text = ast.get_docstring(ast.parse(text)) or ""
        wrong += [f"{path.name}: {line}" for line in _shell_lines(text) if re.search(r"\bpython\b", line)]
    assert wrong == []
