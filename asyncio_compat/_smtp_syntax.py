"""Sans-IO pieces of the SMTP server: text in, replies and values out.

Nothing here touches a socket or a channel; :mod:`asyncio_compat.smtpd`
keeps the session state (on the channel, where 3.11's subclasses read it)
and calls these functions to read a command line, an address, the ESMTP
parameters, and to build the replies whose wording is fixed by 3.11.

Every function takes and returns ``str`` unless it says otherwise; a
message body is ``bytes`` or ``str`` as the channel's ``decode_data`` asks.
"""

from __future__ import annotations

from email._header_value_parser import get_addr_spec, get_angle_addr
from typing import Dict, List, NamedTuple, Optional, Tuple, TypeVar, Union

__all__ = [
    "COMMANDS", "MailCheck", "ParamValue", "check_mail_params", "ehlo_lines", "help_reply",
    "parse_address", "parse_params", "split_command", "strip_keyword", "unstuff",
]

#: The commands HELP lists, in the order 3.11 lists them.
COMMANDS = ("EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY")

#: ``KEY=value`` gives the str value; a bare ``KEY`` gives True.
ParamValue = Union[str, bool]

_Body = TypeVar("_Body", str, bytes)

# what HELP <topic> answers; MAIL and RCPT grow the ESMTP suffix after EHLO
_HELP_SYNTAX = {
    "EHLO": "EHLO hostname",
    "HELO": "HELO hostname",
    "MAIL": "MAIL FROM: <address>",
    "RCPT": "RCPT TO: <address>",
    "DATA": "DATA",
    "RSET": "RSET",
    "NOOP": "NOOP",
    "QUIT": "QUIT",
    "VRFY": "VRFY <address>",
}
_ESMTP_SUFFIX = " [SP <mail-parameters>]"
_BODY_TYPES = ("7BIT", "8BITMIME")


def split_command(line: str) -> Tuple[str, Optional[str]]:
    """``"mail FROM:<a@b> "`` -> ``("MAIL", "FROM:<a@b>")``.

    The verb is everything before the first space, upper-cased; the argument
    is the rest with surrounding whitespace removed, ``""`` when only spaces
    follow the verb, and None when there is no space at all.
    """
    verb, space, rest = line.partition(" ")
    if not space:
        return line.upper(), None
    return verb.upper(), rest.strip()


def strip_keyword(keyword: str, arg: str) -> str:
    """The argument after ``keyword`` (``"FROM:"``, any case), stripped; ``""``
    when ``arg`` does not start with it."""
    head = arg[: len(keyword)]
    if head.upper() != keyword:
        return ""
    return arg[len(keyword):].strip()


def parse_address(arg: str) -> Tuple[str, str]:
    """Split ``arg`` into the address and what follows it (the parameters).

    ``<local@domain>`` and a bare ``local@domain`` are both read, with the
    standard library's RFC 5322 parser, as 3.11 did.  The address is ``""``
    when there is none to read; the parser's HeaderParseError propagates for
    input it cannot read at all.
    """
    if not arg:
        return "", ""
    reader = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
    token, rest = reader(arg)
    if not token:
        return "", rest
    return str(token.addr_spec), rest


def parse_params(words: List[str]) -> Optional[Dict[str, ParamValue]]:
    """``["SIZE=10", "SMTPUTF8"]`` -> ``{"SIZE": "10", "SMTPUTF8": True}``.

    None when a word is not ``keyword[=value]`` with an alphanumeric
    keyword and a non-empty value after ``=`` (RFC 1869's syntax).
    """
    found: Dict[str, ParamValue] = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not key.isalnum() or (equals and not value):
            return None
        found[key] = value if equals else True
    return found


class MailCheck(NamedTuple):
    """What :func:`check_mail_params` decided: ``error`` is the reply that
    refuses the command (None: accepted); ``smtputf8`` whether the client
    asked for SMTPUTF8 (decided before any later parameter is refused, as 3.11)."""

    error: Optional[str]
    smtputf8: bool


def check_mail_params(
    params: Dict[str, ParamValue], *, syntax_error: str, decode_data: bool,
    enable_smtputf8: bool, size_limit: Optional[int],
) -> MailCheck:
    """Judge the parameters of MAIL FROM (already upper-cased), in 3.11's order:
    BODY, SMTPUTF8, SIZE, then anything left over.  ``params`` is consumed."""
    if not decode_data and params.pop("BODY", "7BIT") not in _BODY_TYPES:
        return MailCheck("501 Error: BODY can only be one of 7BIT, 8BITMIME", False)
    smtputf8 = False
    if enable_smtputf8:
        flag = params.pop("SMTPUTF8", False)
        if flag is not True and flag is not False:
            return MailCheck("501 Error: SMTPUTF8 takes no arguments", False)
        smtputf8 = flag
    return MailCheck(_size_error(params, syntax_error, size_limit), smtputf8)


def _size_error(params: Dict[str, ParamValue], syntax_error: str, size_limit: Optional[int]) -> Optional[str]:
    size = params.pop("SIZE", None)
    # a bare SIZE (no value) is a syntax error; 3.11 failed with AttributeError
    if size is True or (size and not str(size).isdigit()):
        return syntax_error
    if size and size_limit and int(size) > size_limit:
        return "552 Error: message size exceeds fixed maximum message size"
    if params:
        return "555 MAIL FROM parameters not recognized or not implemented"
    return None


def ehlo_lines(
    fqdn: str, *, size_limit: Optional[int], decode_data: bool, enable_smtputf8: bool
) -> List[str]:
    """The lines of the EHLO reply, continuation dashes included."""
    lines = [f"250-{fqdn}"]
    if size_limit:
        lines.append(f"250-SIZE {size_limit}")
    if not decode_data:
        lines.append("250-8BITMIME")
    if enable_smtputf8:
        lines.append("250-SMTPUTF8")
    lines.append("250 HELP")
    return lines


def help_reply(topic: Optional[str], *, extended: bool) -> str:
    """The reply to HELP (``topic`` None or empty) or HELP <topic>."""
    listing = " ".join(COMMANDS)
    if not topic:
        return f"250 Supported commands: {listing}"
    syntax = _HELP_SYNTAX.get(topic.upper())
    if syntax is None:
        return f"501 Supported commands: {listing}"
    if extended and topic.upper() in ("MAIL", "RCPT"):
        syntax += _ESMTP_SUFFIX
    return f"250 Syntax: {syntax}"


def unstuff(payload: _Body) -> _Body:
    """The message as the client meant it: CRLF line ends become ``\\n`` and
    the dot a line starts with is removed (RFC 5321, 4.5.2).

    ``payload`` is what came between DATA's reply and the final
    ``CRLF . CRLF`` (bytes, or str when the channel decodes); bare CR or LF
    are kept as they are.
    """
    if isinstance(payload, bytes):
        lines_b = [line[1:] if line[:1] == b"." else line for line in payload.split(b"\r\n")]
        return b"\n".join(lines_b)
    lines_s = [line[1:] if line[:1] == "." else line for line in payload.split("\r\n")]
    return "\n".join(lines_s)
