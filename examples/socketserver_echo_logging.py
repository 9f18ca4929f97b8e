"""The echo server of socketserver_echo.py, with every hook logging its call.

Run it from a checkout::

    python3 examples/socketserver_echo_logging.py

The server and its handler override each hook on the path of a request,
log the call and hand on to the base class, so the output shows the order
in which the framework calls them::

    get_request -> verify_request -> process_request -> finish_request
      -> (handler) setup -> handle -> finish
    -> shutdown_request -> close_request

``service_actions()`` also runs after every wake-up of ``serve_forever()``
(each request, and every ``poll_interval`` seconds); it is left out of the
log because how often it runs depends on timing.  Log lines name their
thread: the hooks run in the ``server`` thread that runs
``serve_forever()``, the client in ``MainThread``.  Exit status 0 when the
echo matched.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import socketserver

MESSAGE = b"hello, hooks\n"

log = logging.getLogger("echo")


class LoggingEchoHandler(socketserver.StreamRequestHandler):
    """Echoes one line; logs setup(), handle() and finish()."""

    def setup(self) -> None:
        log.info("handler setup() for %s:%d", *self.client_address)
        super().setup()

    def handle(self) -> None:
        line = self.rfile.readline()
        log.info("handler handle() read %r and echoes it", line)
        self.wfile.write(line)

    def finish(self) -> None:
        log.info("handler finish()")
        super().finish()


class LoggingEchoServer(socketserver.TCPServer):
    """A TCPServer that logs each hook of the request path."""

    def get_request(self) -> Tuple[Any, Any]:
        request, client_address = super().get_request()
        log.info("server get_request() accepted %s:%d", *client_address)
        return request, client_address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        log.info("server verify_request() -> True")
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        log.info("server process_request()")
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        log.info("server finish_request(): creating the handler")
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        log.info("server shutdown_request()")
        super().shutdown_request(request)

    def close_request(self, request: Any) -> None:
        log.info("server close_request()")
        super().close_request(request)


def run(message: bytes = MESSAGE) -> bytes:
    """Serve one echo of ``message`` and return the reply."""
    with LoggingEchoServer(("127.0.0.1", 0), LoggingEchoHandler) as server:
        serving = threading.Thread(target=server.serve_forever, name="server")
        serving.start()
        try:
            log.info("client connects and sends %r", message)
            with socket.create_connection(server.server_address, timeout=10) as client:
                client.sendall(message)
                with client.makefile("rb") as replies:
                    reply = replies.readline()
        finally:
            # every hook of the request has run before the loop can stop
            server.shutdown()
            serving.join()
    log.info("client got back %r; server shut down", reply)
    return reply


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(threadName)-10s %(message)s", stream=sys.stdout)
    log.info("poller: %s", asyncio_compat.get_default_poller().name)
    reply = run()
    log.info("echo %s", "matched" if reply == MESSAGE else "DIFFERS")
    return 0 if reply == MESSAGE else 1


if __name__ == "__main__":
    sys.exit(main())
