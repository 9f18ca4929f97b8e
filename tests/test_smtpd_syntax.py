"""The sans-IO half of smtpd (asyncio_compat._smtp_syntax), tested on text alone."""

from __future__ import annotations

from typing import Dict, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncio_compat._smtp_syntax import (
    check_mail_params,
    ehlo_lines,
    help_reply,
    parse_address,
    parse_params,
    split_command,
    strip_keyword,
    unstuff,
)


@pytest.mark.parametrize("line, expected", [
    ("QUIT", ("QUIT", None)),
    ("quit", ("QUIT", None)),
    ("mail FROM:<a@b>  ", ("MAIL", "FROM:<a@b>")),
    ("NOOP ", ("NOOP", "")),
    ("helo   host.example", ("HELO", "host.example")),
    ("", ("", None)),
])
def test_split_command(line: str, expected: tuple) -> None:
    assert split_command(line) == expected


def test_strip_keyword_any_case_or_nothing() -> None:
    assert strip_keyword("FROM:", "from: <a@b>") == "<a@b>"
    assert strip_keyword("FROM:", "FROM:x@y SIZE=1") == "x@y SIZE=1"
    assert strip_keyword("TO:", "FROM:<a@b>") == ""
    assert strip_keyword("TO:", "") == ""


@pytest.mark.parametrize("arg, expected", [
    ("<eggs@example>", ("eggs@example", "")),
    ("eggs@example SIZE=20", ("eggs@example", "SIZE=20")),
    ('<"Fred Blogs"@example.com> BODY=8BITMIME', ('"Fred Blogs"@example.com', "BODY=8BITMIME")),
    ("", ("", "")),
    ("<>", ("<>", "")),  # the null reverse-path (bounces) is an address
])
def test_parse_address(arg: str, expected: tuple) -> None:
    assert parse_address(arg) == expected


def test_parse_params_values_flags_and_bad_words() -> None:
    assert parse_params(["SIZE=20", "SMTPUTF8"]) == {"SIZE": "20", "SMTPUTF8": True}
    assert parse_params([]) == {}
    assert parse_params(["SIZE="]) is None  # '=' without a value
    assert parse_params(["B-D=1"]) is None  # keyword not alphanumeric


def check(params: Dict[str, object], *, decode: bool = False, utf8: bool = False,
          limit: Optional[int] = 100) -> tuple:
    result = check_mail_params(dict(params), syntax_error="501 bad", decode_data=decode,  # type: ignore[arg-type]
                               enable_smtputf8=utf8, size_limit=limit)
    return result.error, result.smtputf8


def test_mail_params_in_3_11_order() -> None:
    assert check({}) == (None, False)
    assert check({"BODY": "8BITMIME", "SIZE": "100"}) == (None, False)
    assert check({"BODY": "BINARY"}) == ("501 Error: BODY can only be one of 7BIT, 8BITMIME", False)
    # decode_data: BODY is not understood, so it is a leftover parameter
    assert check({"BODY": "8BITMIME"}, decode=True)[0] == (
        "555 MAIL FROM parameters not recognized or not implemented")
    assert check({"SMTPUTF8": True}, utf8=True) == (None, True)
    assert check({"SMTPUTF8": "yes"}, utf8=True) == ("501 Error: SMTPUTF8 takes no arguments", False)
    # SMTPUTF8 is granted before a later parameter is refused, as 3.11
    assert check({"SMTPUTF8": True, "SIZE": "x"}, utf8=True) == ("501 bad", True)
    assert check({"SIZE": "101"}) == ("552 Error: message size exceeds fixed maximum message size", False)
    assert check({"SIZE": "101"}, limit=None) == (None, False)
    assert check({"SIZE": True}) == ("501 bad", False)  # 3.11 raised AttributeError here
    assert check({"X": "1"})[0] == "555 MAIL FROM parameters not recognized or not implemented"


def test_ehlo_lines() -> None:
    assert ehlo_lines("h", size_limit=10, decode_data=False, enable_smtputf8=True) == [
        "250-h", "250-SIZE 10", "250-8BITMIME", "250-SMTPUTF8", "250 HELP"]
    assert ehlo_lines("h", size_limit=None, decode_data=True, enable_smtputf8=False) == ["250-h", "250 HELP"]


def test_help_replies() -> None:
    listing = "EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY"
    assert help_reply(None, extended=False) == "250 Supported commands: " + listing
    assert help_reply("", extended=True) == "250 Supported commands: " + listing
    assert help_reply("bogus", extended=False) == "501 Supported commands: " + listing
    assert help_reply("mail", extended=False) == "250 Syntax: MAIL FROM: <address>"
    assert help_reply("MAIL", extended=True) == "250 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
    assert help_reply("rcpt", extended=True) == "250 Syntax: RCPT TO: <address> [SP <mail-parameters>]"
    assert help_reply("VRFY", extended=True) == "250 Syntax: VRFY <address>"


def test_unstuff_bytes_and_text() -> None:
    assert unstuff(b"a\r\n..b\r\n.c\r\nd") == b"a\n.b\nc\nd"
    assert unstuff("x\r\n.\r\ny") == "x\n\ny"
    assert unstuff(b"bare\nlf\rcr") == b"bare\nlf\rcr"
    assert unstuff(b"") == b""


@given(st.lists(st.binary().map(lambda b: b.replace(b"\r", b"")), min_size=1))
def test_unstuff_undoes_dot_stuffing(lines: list) -> None:
    # what a client sends: every line that starts with a dot gets one more
    stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    assert unstuff(stuffed) == b"\n".join(lines)
