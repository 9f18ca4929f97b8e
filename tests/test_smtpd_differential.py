"""Our smtpd against CPython 3.11's, byte for byte.

tests/smtpd_driver.py plays the same scripted conversations against 3.11's
own smtpd (on 3.11's asyncore, in a 3.11 subprocess) and against ours (in
a subprocess of this interpreter); every reply, every ``process_message``
call, the bytes each channel holds after each read and any exception must be
the same.  Skipped, with the reason, when no CPython 3.11 is installed.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "smtpd_driver.py"
CRLF = "\r\n"

MESSAGE = "From: a@example.com\r\nSubject: dots\r\n\r\n..leading dot\r\n.\r\n...\r\nlast\r\n"
TRANSACTION = [
    "EHLO client.example", "MAIL FROM:<a@example.com> SIZE=100 BODY=8BITMIME", "RCPT TO:<b@example.com>",
    "RCPT TO:c@example.com", "DATA",
]


def lines(*commands: str) -> List[str]:
    return [command + CRLF for command in commands]


def whole_session() -> List[str]:
    return lines(*TRANSACTION) + [MESSAGE + "." + CRLF] + lines("QUIT")


def conversation(chunks: List[str], status: Optional[str] = None, **options: Any) -> Dict[str, Any]:
    return {"chunks": chunks, "status": status, "options": options}


def bytewise(chunks: List[str]) -> List[str]:
    return [char for chunk in chunks for char in chunk]


BAD_COMMANDS = lines(
    "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA", "", "   ", "FOO bar", "NOOP x", "RSET x",
    "HELO", "EHLO", "HELP", "HELP mail", "help RCPT", "HELP nosuch", "VRFY", "VRFY <a@example.com>",
    "VRFY !!!", "EXPN list", "HELO h1", "HELO h2", "EHLO h3", "MAIL", "MAIL TO:<a@example.com>",
    "MAIL FROM:", "MAIL FROM:<a@example.com> SIZE=5", "RCPT FROM:<b@example.com>", "RCPT TO:",
    "DATA", "MAIL FROM:<a@example.com>", "MAIL FROM:<b@example.com>", "RCPT TO:<c@example.com> X=1",
    "DATA now", "RSET", "DATA", "mail from:<lower@example.com>", "rcpt to:<lower@example.com>", "QUIT",
)

EXTENDED_PARAMS = lines(
    "EHLO h", "MAIL FROM:<a@example.com> SIZE=abc", "MAIL FROM:<a@example.com> SIZE=99999999999",
    "MAIL FROM:<a@example.com> BODY=BINARY", "MAIL FROM:<a@example.com> BODY", "MAIL FROM:<a@example.com> X=",
    "MAIL FROM:<a@example.com> B-D=1", "MAIL FROM:<a@example.com> FOO=BAR",
    "MAIL FROM:<a@example.com> SMTPUTF8",
    "MAIL FROM:<> SIZE=10", "RCPT TO:<b@example.com> NOTIFY=NEVER", "RCPT TO:<b@example.com> =x", "RSET",
    "MAIL FROM:<a@example.com> " + "x" * 40, "QUIT",
)

SMTPUTF8_SESSION = lines(
    "EHLO h", "MAIL FROM:<a@example.com> SMTPUTF8=yes", "MAIL FROM:<ünï@example.com> SMTPUTF8 BODY=8BITMIME",
    "RCPT TO:<dést@example.com>", "VRFY ünï@example.com", "DATA",
) + ["Subject: é\r\n\r\nçà\r\n." + CRLF] + lines("HELP", "QUIT")

LONG_LINES = lines(
    "NOOP " + "x" * 600, "HELO h", "MAIL FROM:<" + "a" * 500 + "@example>", "RSET",
    "MAIL FROM:<" + "a" * 480 + "@example>", "QUIT",
) + lines("EHLO again")

EXTENDED_LONG_LINES = lines(
    "EHLO h", "MAIL FROM:<" + "a" * 516 + "@example>", "MAIL FROM:<" + "a" * 519 + "@example>",
    "RCPT TO:<" + "r" * 600 + "@example>", "QUIT",
)

SIZE_LIMIT = lines("EHLO h", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA") + [
    "x" * 300 + "\r\n." + CRLF] + lines("NOOP", "RSET") + ["." + CRLF, "\r\n." + CRLF] + lines("NOOP", "QUIT")

EMPTY_MESSAGE = lines("HELO h", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA") + [
    "." + CRLF, "NOOP" + CRLF, "\r\n." + CRLF] + lines("QUIT")

MEBIBYTE_LINE = ["NOOP " + "y" * (1 << 20), CRLF] + lines("NOOP", "QUIT")

DATA_WITHOUT_END = lines("HELO h", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA") + [
    ("z" * 1000 + CRLF) * 2100]

MANY_RECIPIENTS = lines("HELO h", "MAIL FROM:<a@example.com>") + [
    "".join("RCPT TO:<r%d@example.com>\r\n" % n for n in range(10000))] + lines("DATA") + [
    "body\r\n." + CRLF] + lines("QUIT")

CONVERSATIONS: Dict[str, Dict[str, Any]] = {
    "line by line": conversation(whole_session()),
    "pipelined": conversation(["".join(whole_session())]),
    "split at every byte": conversation(bytewise(whole_session())),
    "split at every byte, decode_data": conversation(bytewise(whole_session()), decode_data=True),
    "bad commands": conversation(BAD_COMMANDS),
    "bad commands, decode_data": conversation(BAD_COMMANDS, decode_data=True),
    "bad commands pipelined": conversation(["".join(BAD_COMMANDS)]),
    "ESMTP parameters": conversation(EXTENDED_PARAMS),
    "ESMTP parameters, no size limit": conversation(EXTENDED_PARAMS, data_size_limit=None),
    "ESMTP parameters, decode_data": conversation(EXTENDED_PARAMS, decode_data=True),
    "ESMTP parameters, SMTPUTF8": conversation(EXTENDED_PARAMS, enable_SMTPUTF8=True),
    "SMTPUTF8": conversation(SMTPUTF8_SESSION, enable_SMTPUTF8=True),
    "SMTPUTF8 refused": conversation(SMTPUTF8_SESSION),
    "UTF-8 byte by byte": conversation(bytewise(SMTPUTF8_SESSION), enable_SMTPUTF8=True),
    "invalid UTF-8 in a command": conversation(lines("HELO h", "NOOP \xff", "NOOP")),
    "command lines too long": conversation(LONG_LINES),
    "command lines too long after EHLO": conversation(EXTENDED_LONG_LINES),
    "command lines too long after EHLO, SMTPUTF8": conversation(EXTENDED_LONG_LINES, enable_SMTPUTF8=True),
    "message over the size limit": conversation(SIZE_LIMIT, data_size_limit=100),
    "message over the size limit, decode_data": conversation(
        SIZE_LIMIT, data_size_limit=100, decode_data=True),
    "empty message": conversation(EMPTY_MESSAGE),
    "process_message's reply": conversation(whole_session(), status="554 rejected by policy"),
    "a 1 MiB line without CRLF": conversation(MEBIBYTE_LINE),
    "DATA without end": conversation(DATA_WITHOUT_END),
    "DATA without end, 1 MiB limit": conversation(DATA_WITHOUT_END, data_size_limit=1 << 20),
    "10,000 RCPT": conversation(MANY_RECIPIENTS),
}


def python311() -> Optional[str]:
    """A CPython 3.11 with its smtpd, or None."""
    candidates = [os.environ.get("ASYNCIO_COMPAT_PYTHON311", "")]
    if sys.version_info[:2] == (3, 11):
        candidates.append(sys.executable)
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3.11")))
    candidates += sorted(glob.glob("/root/.pyenv/versions/3.11*/bin/python3.11"))
    candidates.append(shutil.which("python3.11") or "")
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def transcripts(python: str, which: str) -> Dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [python, str(DRIVER), which], input=json.dumps(list(CONVERSATIONS.values())),
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(zip(CONVERSATIONS, json.loads(proc.stdout)))


@pytest.fixture(scope="module")
def both() -> Dict[str, Any]:
    reference = python311()
    if reference is None:
        pytest.skip("no CPython 3.11 found (pyenv, PATH or ASYNCIO_COMPAT_PYTHON311) to compare with")
    return {"3.11": transcripts(reference, "stdlib"), "ours": transcripts(sys.executable, "ours")}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_same_as_3_11(both: Dict[str, Any], name: str) -> None:
    expected, got = both["3.11"][name], both["ours"][name]
    assert got["error"] == expected["error"]
    assert got["calls"] == expected["calls"]
    assert len(got["steps"]) == len(expected["steps"])
    for index, (mine, theirs) in enumerate(zip(got["steps"], expected["steps"])):
        assert mine == theirs, f"after piece {index}"


@pytest.mark.timeout(600)
def test_hostile_clients_are_answered_and_bounded(both: Dict[str, Any]) -> None:
    # what the byte-for-byte comparison also checks, stated: 3.11's answers and bounded buffers
    mebibyte = both["ours"]["a 1 MiB line without CRLF"]
    assert max(buffered for _, buffered in mebibyte["steps"]) <= 512 + 32768
    assert "".join(reply for reply, _ in mebibyte["steps"]).split(CRLF)[1:3] == [
        "500 Error: line too long", "250 OK"]
    endless = both["ours"]["DATA without end, 1 MiB limit"]
    assert max(buffered for _, buffered in endless["steps"]) <= (1 << 20) + 32768
    recipients = both["ours"]["10,000 RCPT"]
    assert len(recipients["calls"][0][1]) == 10000
