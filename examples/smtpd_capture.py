"""Capture the mail a program sends: smtplib talks to an smtpd server in the same process.

Run it from a checkout::

    python3 examples/smtpd_capture.py

``CapturingServer`` listens on an unused port of 127.0.0.1 and serves from
a background thread; ``smtplib`` sends it one message, and the example
prints the envelope and the message the server received.  This is the
fixture a test suite needs to check the mail its application sends,
without a real mail server.
"""

from __future__ import annotations

import smtplib
import sys
from pathlib import Path
from typing import List

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat.smtpd import CapturedMessage, CapturingServer

SENDER = "app@example.com"
RECIPIENTS = ["alice@example.com", "bob@example.com"]
MESSAGE = (
    b"From: app@example.com\r\n"
    b"To: alice@example.com, bob@example.com\r\n"
    b"Subject: your order\r\n"
    b"\r\n"
    b"It has shipped.\r\n"
    b".A line that starts with a dot arrives intact.\r\n"
)


def main() -> List[CapturedMessage]:
    """Send MESSAGE to a CapturingServer; print and return what it captured."""
    print("poller:", asyncio_compat.get_default_poller().name)
    with CapturingServer() as server:
        with smtplib.SMTP(*server.address, timeout=30) as client:
            refused = client.sendmail(SENDER, RECIPIENTS, MESSAGE)
        print("refused:", refused)
    for captured in server.messages:
        print("from:", captured.mailfrom)
        print("to:", ", ".join(captured.rcpttos))
        for line in captured.message.decode("utf-8").splitlines():
            print(f"| {line}".rstrip())
    return server.messages


if __name__ == "__main__":
    main()
