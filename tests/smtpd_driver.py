"""Play scripted SMTP conversations against one smtpd and print what it did, as JSON.

    python smtpd_driver.py stdlib|ours < conversations.json

``stdlib`` is the interpreter's own ``smtpd`` (CPython 3.11 and older);
``ours`` is ``asyncio_compat.smtpd`` from the source tree next to this
folder.  The same file runs under both, so the two transcripts differ only
where the modules do.

Each conversation is ``{"options": {...server keyword arguments...},
"status": reply or null, "chunks": [latin-1 text, ...]}``.  The server side
of a socket pair is an ``SMTPChannel``; the driver writes one chunk (in
pieces of at most 32 KiB), calls ``handle_read()`` once per piece, and
flushes the replies, so every implementation sees exactly the same reads.
No loop runs.  For each piece the transcript has the replies it drew
(``"<EOF>"`` once the server closed) and how many bytes the channel holds in
``received_lines``; then the ``process_message`` calls.  An exception from
``handle_read`` ends the conversation and is recorded by its type's name.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import warnings
from typing import Any, Dict, List

PIECE = 32768


def load(which: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if which == "stdlib":
            import smtpd

            return smtpd
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from asyncio_compat import smtpd as ours

        return ours


def drain(client: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            piece = client.recv(1 << 20)
        except BlockingIOError:
            return received
        if not piece:
            return received + b"<EOF>"
        received += piece


def flush(channel: Any, client: socket.socket) -> bytes:
    """The replies the channel has sent or queued, sending the queue out."""
    replies = drain(client)
    for _ in range(10000):
        if not channel.producer_fifo or channel.socket is None or not channel.connected:
            break
        channel.handle_write()
        replies += drain(client)
    return replies


def play(smtpd: Any, conversation: Dict[str, Any]) -> Dict[str, Any]:
    calls: List[Any] = []
    status = conversation.get("status")

    class Recorder(smtpd.SMTPServer):
        def process_message(self, peer: Any, mailfrom: Any, rcpttos: Any, data: Any, **kwargs: Any) -> Any:
            calls.append([mailfrom, list(rcpttos), repr(data), sorted((k, v) for k, v in kwargs.items())])
            return status

    socket_map: Dict[int, Any] = {}
    options = conversation.get("options", {})
    server = Recorder(("127.0.0.1", 0), None, map=socket_map, **options)
    ours, client = socket.socketpair()
    client.setblocking(False)
    server.handle_accepted(ours, "peer")
    channel = next(c for c in socket_map.values() if c is not server)
    steps = [[flush(channel, client).decode("latin-1"), 0]]
    error = None
    try:
        for chunk in conversation["chunks"]:
            data = chunk.encode("latin-1")
            for start in range(0, max(len(data), 1), PIECE):
                client.setblocking(True)
                client.sendall(data[start:start + PIECE])
                client.setblocking(False)
                channel.handle_read()
                buffered = sum(len(line) for line in channel.received_lines)
                steps.append([flush(channel, client).decode("latin-1"), buffered])
    except Exception as exc:  # recorded: 3.11 lets some inputs raise out of handle_read
        error = type(exc).__name__
    for channel_or_server in list(socket_map.values()):
        channel_or_server.close()
    client.close()
    return {"steps": steps, "calls": calls, "error": error}


def main() -> None:
    smtpd = load(sys.argv[1])
    conversations = json.load(sys.stdin)
    json.dump([play(smtpd, conversation) for conversation in conversations], sys.stdout)


if __name__ == "__main__":
    main()
