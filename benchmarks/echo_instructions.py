"""An in-process echo workload to count instructions under valgrind.

Timing anything on a shared machine is noise; counting the instructions a
fixed workload executes is not.  Run, from the checkout to measure::

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        python benchmarks/echo_instructions.py --channels 100 --messages 20000

(add ``--debug`` for debug mode on) and read ``I refs``.  ``--channels``
client ``dispatcher_with_send`` channels talk to as many echo channels (the
benchmark servers' ``EchoHandler``), all in one socket map and one process,
until ``--messages`` round trips are done; every message is checked.  The
file uses only the public API, so it runs unchanged against an older
checkout (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any, List, Optional

if __name__ == "__main__" and "asyncio_compat" not in sys.modules:
    # run by path from a checkout: its package, unless PYTHONPATH names another
    sys.path.insert(len(sys.path) if os.environ.get("PYTHONPATH") else 0,
                    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import asyncio_compat  # noqa: E402  (after the path set-up above)

asyncio_compat.install()  # the benchmark servers import asyncore, as legacy code does

from asyncio_compat import asyncore  # noqa: E402
from benchmarks.asyncore_servers import EchoHandler, Listener  # noqa: E402

MESSAGE = b"x" * 64


class Client(asyncore.dispatcher_with_send):
    """Sends MESSAGE, waits for it to come back whole, sends the next one."""

    def __init__(self, address: Any, budget: List[int]) -> None:
        super().__init__()
        self.budget = budget  # round trips left, shared by every client
        self.inbound = b""
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)

    def handle_connect(self) -> None:
        self.send(MESSAGE)

    def handle_read(self) -> None:
        self.inbound += self.recv(65536)
        if len(self.inbound) < len(MESSAGE):
            return
        if self.inbound != MESSAGE:
            raise AssertionError(f"echo mismatch: {self.inbound!r}")
        self.inbound = b""
        self.budget[0] -= 1
        if self.budget[0] > 0:
            self.send(MESSAGE)
        else:
            raise asyncore.ExitNow("done")


def run(channels: int, messages: int, debug: bool) -> int:
    """Run the workload; returns the round trips done."""
    if debug:
        asyncio_compat.set_debug(True)
    listener = Listener(EchoHandler)
    budget = [messages]
    clients = [Client(("127.0.0.1", listener.port()), budget) for _ in range(channels)]
    try:
        asyncore.loop(timeout=5.0, use_poll=True)
    except asyncore.ExitNow:
        pass
    finally:
        asyncore.close_all()
    del clients
    return messages - budget[0]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--debug", action="store_true", help="debug mode on")
    args = parser.parse_args(argv)
    done = run(args.channels, args.messages, args.debug)
    print(f"{done} round trips on {args.channels} channels, debug mode {'on' if args.debug else 'off'}, "
          f"package {os.path.dirname(asyncio_compat.__file__)}")


if __name__ == "__main__":
    main()
