"""What several test files share: an echo dispatcher and running the examples."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from asyncio_compat import _loop, asyncore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUBPROCESS_TIMEOUT = 60.0


class EchoHandler(asyncore.dispatcher_with_send):
    """Sends back whatever it reads; closes quietly when the peer does."""

    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.send(data)

    def handle_close(self) -> None:
        self.close()


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, poller_name: str, tmp_path: Path) -> str:
    """Run ``examples/<name>.py`` on ``poller_name`` from a scratch folder, without
    PYTHONPATH (so the example's own bootstrap is used); its stdout when it exits 0."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["ASYNCIO_COMPAT_POLLER"] = poller_name
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, (
        f"{name} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    assert f"poller: {poller_name}" in proc.stdout, "the example did not run on the requested backend"
    return proc.stdout


def release_map(target: asyncore.SocketMap) -> None:
    """Close every channel of ``target`` and drop its loop, pending timers and
    foreign-loop pins included, so that nothing outlives the test."""
    asyncore.close_all(target)
    state = _loop.existing_loop(target)
    if state is not None:
        state.timers.clear()
        state.pins = 0
        _loop.forget(target)
