"""Two HTTP downloads at once with asyncore dispatchers.

Run it from a checkout::

    python3 examples/asyncore_http_client.py

There is no internet here, so the example starts its own web server first:
``http.server`` on 127.0.0.1 (port 0), in a background thread, serving two
pages it makes up.  Then two :class:`HTTPClient` dispatchers share one
socket map: each connects, writes a ``GET`` request and reads until the
server closes the connection (HTTP/1.0), logging every step.  The loop
returns when both have closed; the example prints each status line and
byte count, checks every body against the page that was served, and stops
the server.

Exit status 0 when both pages arrived intact, 1 otherwise.
"""

from __future__ import annotations

import http.server
import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Dict, List, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asyncore

READ_SIZE = 8192

# the two pages, made up so that their sizes are known in advance
PAGES: Dict[str, bytes] = {
    "/index.html": b"<!DOCTYPE html>\n<html><head><title>asyncio-compat</title></head><body>\n"
    + b"".join(b"<p>Paragraph %d, served to an asyncore client.</p>\n" % n for n in range(1, 31))
    + b"</body></html>\n",
    "/numbers.txt": b"".join(b"line %05d of the numbers file\n" % n for n in range(1, 1001)),
}


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``PAGES`` and a 404 for anything else."""

    def do_GET(self) -> None:  # noqa: N802  (the name http.server looks up)
        body = PAGES.get(self.path)
        if body is None:
            self.send_error(404, "no such page")
            return
        self.send_response(200)
        kind = "text/html" if self.path.endswith(".html") else "text/plain"
        self.send_header("Content-Type", f"{kind}; charset=ascii")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the server thread stays quiet so the client's log reads in order


class HTTPClient(asyncore.dispatcher):
    """Fetches one page over HTTP/1.0 and keeps the whole response.

    ``writable()`` is overridden the classic way: it asks for write events
    until the connect has finished and the request is sent.
    """

    def __init__(self, channels: Dict[int, asyncore.dispatcher], address: Tuple[str, int], path: str) -> None:
        super().__init__(map=channels)
        self.path = path
        self.logger = logging.getLogger(f"GET {path}")
        host, port = address
        self.outgoing = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode("ascii")
        self.pieces: List[bytes] = []
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)

    def handle_connect(self) -> None:
        self.logger.info("connected")

    def writable(self) -> bool:
        return not self.connected or bool(self.outgoing)

    def handle_write(self) -> None:
        sent = self.send(self.outgoing)
        self.outgoing = self.outgoing[sent:]
        if not self.outgoing:
            self.logger.info("request sent")

    def handle_read(self) -> None:
        data = self.recv(READ_SIZE)
        if data:  # b"" is the end of the response: recv() has called handle_close
            self.pieces.append(data)
            self.logger.info("read %d bytes", len(data))

    def handle_close(self) -> None:
        # recv() calls this at end of stream; an error event may call it again
        if self.connected:
            self.logger.info("server closed the connection")
        self.close()

    def response(self) -> Tuple[str, Dict[str, str], bytes]:
        """``(status line, headers, body)`` of what was received.

        Raises ValueError when the response has no blank line ending its head.
        """
        raw = b"".join(self.pieces)
        head, separator, body = raw.partition(b"\r\n\r\n")
        if not separator:
            raise ValueError(f"{self.path}: incomplete response ({len(raw)} bytes)")
        status, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, body


def check(client: HTTPClient) -> bool:
    """Print the summary of one download and say whether it is intact."""
    status, headers, body = client.response()
    print(f"{client.path}: {status}")
    print(f"{client.path}: {len(body)} body bytes, Content-Length {headers.get('content-length')}")
    intact = body == PAGES[client.path] and headers.get("content-length") == str(len(body))
    print(f"{client.path}: {'matches the page served' if intact else 'DIFFERS from the page served'}")
    return intact


def fetch_all(address: Tuple[str, int]) -> List[HTTPClient]:
    """Download every page of ``PAGES`` at once, in one socket map."""
    channels: Dict[int, asyncore.dispatcher] = asyncio_compat.SocketMap()
    clients = [HTTPClient(channels, address, path) for path in PAGES]
    asyncore.loop(timeout=1.0, map=channels)  # returns once both have closed
    return clients


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)-16s %(message)s", stream=sys.stdout)
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    server = http.server.HTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        clients = fetch_all(server.socket.getsockname())
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    results = [check(client) for client in clients]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
