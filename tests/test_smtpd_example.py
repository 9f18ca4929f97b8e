"""examples/smtpd_capture.py runs on every backend and prints the message it sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load_example, run_example

pytestmark = pytest.mark.timeout(120)


def test_smtpd_capture_as_a_program(poller_name: str, tmp_path: Path) -> None:
    example = load_example("smtpd_capture")
    out = run_example("smtpd_capture", poller_name, tmp_path).splitlines()
    body = example.MESSAGE.decode().replace("\r\n", "\n")
    # smtplib stuffs the leading dot and the server removes it again
    assert out[1:] == [
        "refused: {}",
        f"from: {example.SENDER}",
        "to: " + ", ".join(example.RECIPIENTS),
        *["| " + line if line else "|" for line in body.splitlines()],
    ]


def test_smtpd_capture_in_process(default_poller: str) -> None:
    example = load_example("smtpd_capture")
    messages = example.main()
    assert [(m.mailfrom, m.rcpttos) for m in messages] == [(example.SENDER, example.RECIPIENTS)]
    assert messages[0].message == example.MESSAGE.replace(b"\r\n", b"\n").rstrip(b"\n")
