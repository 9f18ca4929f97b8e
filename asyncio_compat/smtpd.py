"""An SMTP server on :mod:`asyncio_compat.asynchat`: CPython 3.11's ``smtpd``, given back.

Python 3.12 removed ``smtpd`` with ``asyncore`` and ``asynchat``.  This
module has 3.11's classes, attributes, replies and command line:

* :class:`SMTPServer` listens and makes one :class:`SMTPChannel` per
  client; subclasses override :meth:`SMTPServer.process_message`;
* :class:`DebuggingServer` prints each message on standard output;
* :class:`PureProxy` relays each message to another SMTP server;
* :class:`CapturingServer` (not in 3.11) keeps the messages in a list and
  serves from a background thread: what a test suite needs.

``python -m asyncio_compat.smtpd`` (and ``python -m smtpd`` where the
top-level module is ours) takes 3.11's options; see ``-h``.

The protocol logic that does not need the channel's state (command and
address syntax, ESMTP parameters, reply texts, dot-unstuffing) lives in the
sans-IO module ``asyncio_compat._smtp_syntax``.
"""

from __future__ import annotations

import collections
import errno
import getopt
import os
import signal
import smtplib
import socket
import ssl
import sys
import threading
import time
import warnings
from typing import Any, Dict, List, NamedTuple, NoReturn, Optional, Tuple, Union

from . import asynchat, asyncore
from ._shutdown import shutdown
from ._smtp_syntax import (
    check_mail_params,
    ehlo_lines,
    help_reply,
    parse_address,
    parse_params,
    split_command,
    strip_keyword,
    unstuff,
)
from ._socket_map import SocketMap
from .idle import IdleTimeoutMixin
from .signals import add_signal_handler, remove_signal_handler
from .tls import TLSMixin

__all__ = [
    "SMTPChannel", "SMTPServer", "DebuggingServer", "PureProxy",
    # not in 3.11
    "CapturedMessage", "CapturingServer",
]

program = sys.argv[0]
__version__ = "Python SMTP proxy version 0.3"

# the command-line help; usage() fills in program and __version__
_USAGE = """\
Usage: %(program)s [options] [localhost:localport [remotehost:remoteport]]

Receive mail over SMTP (RFC 5321, with the SIZE and SMTPUTF8 extensions) and
hand every message to a server class.

Options:
  -n, --nosetuid      stay the current user; without it the server switches
                      to the user `nobody' (which needs root)
  -c, --class NAME    the server class: a name from this module (PureProxy,
                      the default, or DebuggingServer) or module.Class
  -s, --size LIMIT    refuse messages above LIMIT bytes (announced with
                      SIZE); without it there is no limit
  -u, --smtputf8      accept SMTPUTF8 (RFC 6531) messages
  -d, --debug         trace the conversation on standard error
  -V, --version       print the version and exit
  -h, --help          print this text and exit

Version: %(__version__)s

The server listens on localhost:8025 unless told otherwise; PureProxy relays
to localhost:25 unless told otherwise.
"""


class Devnull:
    """A write-only stream that drops everything: the default :data:`DEBUGSTREAM`."""

    def write(self, msg: str) -> None:
        """Discard ``msg``."""

    def flush(self) -> None:
        """Nothing to flush."""


#: Where the server traces commands and state; assign a stream (``sys.stderr``,
#: a ``StringIO``) to see them.  ``-d`` on the command line sets ``sys.stderr``.
DEBUGSTREAM: Any = Devnull()
NEWLINE = "\n"
COMMASPACE = ", "
#: The default ``data_size_limit``: 32 MiB.
DATA_SIZE_DEFAULT = 33554432

_BOTH_MODES = "decode_data and enable_SMTPUTF8 cannot be set to True at the same time"


def _trace(*values: Any) -> None:
    print(*values, file=DEBUGSTREAM)


def usage(code: int, msg: object = "") -> NoReturn:
    """Print the help (and ``msg``) on standard error and exit with ``code``."""
    print(_USAGE % {"program": program, "__version__": __version__}, file=sys.stderr)
    if msg:
        print(msg, file=sys.stderr)
    sys.exit(code)


_Address = Tuple[Any, ...]


# -- one client session ------------------------------------------------------------


class SMTPChannel(IdleTimeoutMixin, TLSMixin, asynchat.async_chat):
    """One client's SMTP session; the state lives in public attributes that
    subclasses and tests read (``smtp_state``, ``mailfrom``, ``rcpttos``...).

    Not in 3.11, off by default: set :attr:`idle_timeout` (seconds, in a
    subclass) and a client silent that long gets ``421`` and is
    disconnected (:meth:`handle_idle_timeout`).

    Also not in 3.11: when the server has a ``tls_context``, EHLO announces
    STARTTLS and the client may switch the session to TLS; the session
    then starts again from the greeting (RFC 3207).

    A command ``XYZ`` is handled by the method ``smtp_XYZ(arg)``, looked up
    at each command, so a subclass adds a command by defining one.  The
    channel answers 3.11's texts; a line longer than the command limit gets
    ``500 Error: line too long`` and is not kept beyond that limit, a
    message longer than ``data_size_limit`` gets ``552`` and is not kept
    beyond it either.
    """

    COMMAND = 0
    DATA = 1

    #: the length limit of a command line (RFC 5321, 4.5.3.1.4)
    command_size_limit = 512
    #: per-command limits after EHLO; each channel gets its own copy (3.11
    #: shared one among all channels, so a new connection reset the others')
    command_size_limits: Dict[str, int] = collections.defaultdict(lambda: SMTPChannel.command_size_limit)

    smtp_state: Any
    mailfrom: Optional[str]
    rcpttos: List[str]
    received_lines: List[Any]
    received_data: Any
    mail_options: List[str]
    rcpt_options: List[str]

    def __init__(
        self, server: SMTPServer, conn: Any, addr: Any, data_size_limit: Optional[int] = DATA_SIZE_DEFAULT,
        map: Optional[asyncore.SocketMapType] = None, enable_SMTPUTF8: bool = False,
        decode_data: bool = False,
    ) -> None:
        """Start a session on the accepted socket ``conn`` and greet the client.

        Raises ValueError when both ``decode_data`` and ``enable_SMTPUTF8``
        are true; an OSError from ``getpeername()`` other than ENOTCONN (the
        client already left, the channel just closes).
        """
        if enable_SMTPUTF8 and decode_data:
            raise ValueError(_BOTH_MODES)
        super().__init__(conn, map=map)
        # settings first, then who is talking to whom
        self._decode_data = decode_data
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self.data_size_limit = data_size_limit
        self.smtp_server, self.conn, self.addr = server, conn, addr
        # 3.11's names for the empty string and line end of the input's type,
        # which subclasses (CPython's own test_smtplib among them) use
        self._emptystring: Union[str, bytes] = "" if decode_data else b""
        self._linesep: Union[str, bytes] = "\r\n" if decode_data else b"\r\n"
        self._newline: Union[str, bytes] = NEWLINE if decode_data else b"\n"
        self._dotsep: Union[str, int] = "." if decode_data else ord(".")
        self._set_rset_state()
        self.seen_greeting = ""
        self.extended_smtp = False
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self.fqdn = socket.getfqdn()
        self._greet()

    def _greet(self) -> None:
        try:
            self.peer = self.conn.getpeername()
        except OSError as exc:
            self.close()
            if exc.errno != errno.ENOTCONN:
                raise
            return
        _trace("Peer:", repr(self.peer))
        self.push(f"220 {self.fqdn} {__version__}")

    @property
    def max_command_size_limit(self) -> int:
        """The longest command line accepted now: the largest per-command limit."""
        return max(self.command_size_limits.values(), default=self.command_size_limit)

    def _set_post_data_state(self) -> None:
        """Forget the transaction (sender, recipients, SMTPUTF8) after a message."""
        self.set_terminator(b"\r\n")
        self.num_bytes = 0
        self.require_SMTPUTF8 = False
        self.mailfrom, self.rcpttos = None, []
        self.smtp_state = self.COMMAND

    def _set_rset_state(self) -> None:
        """Forget the transaction and the input collected; the greeting stays."""
        self._set_post_data_state()
        self.received_data = ""
        self.received_lines = []

    def push(self, msg: str) -> None:  # type: ignore[override]
        """Send the reply line ``msg`` (CRLF is added): ASCII, or UTF-8 in an SMTPUTF8 transaction.

        Raises UnicodeEncodeError for a non-ASCII reply outside SMTPUTF8.
        """
        codec = "utf-8" if self.require_SMTPUTF8 else "ascii"
        super().push((msg + "\r\n").encode(codec))

    # -- input -------------------------------------------------------------------

    def _current_limit(self) -> Optional[int]:
        if self.smtp_state == self.COMMAND:
            return self.max_command_size_limit
        if self.smtp_state == self.DATA:
            return self.data_size_limit
        return None

    def collect_incoming_data(self, data: bytes) -> None:
        """Keep ``data`` until the line or message ends, up to the current limit."""
        limit = self._current_limit()
        if limit:
            if self.num_bytes > limit:
                return  # over the limit: counted no further, dropped
            self.num_bytes += len(data)
        self.received_lines.append(str(data, "utf-8") if self._decode_data else data)

    def found_terminator(self) -> None:
        """A command line or a whole message has arrived: act on it."""
        line = self._emptystring.join(self.received_lines)
        _trace("Data:", repr(line))
        self.received_lines = []
        if self.smtp_state == self.COMMAND:
            self._command_line(line)
        elif self.smtp_state != self.DATA:
            self.push("451 Internal confusion")
            self.num_bytes = 0
        else:
            self._message(line)

    def _command_line(self, line: Union[str, bytes]) -> None:
        size, self.num_bytes = self.num_bytes, 0
        if not line:
            self.push("500 Error: bad syntax")
            return
        text = line if isinstance(line, str) else str(line, "utf-8")
        command, arg = split_command(text)
        limit = self.command_size_limits[command] if self.extended_smtp else self.command_size_limit
        if size > limit:
            self.push("500 Error: line too long")
            return
        handler = getattr(self, "smtp_" + command, None)
        if handler is None:
            self.push(f'500 Error: command "{command}" not recognized')
            return
        handler(arg)

    def _message(self, payload: Union[str, bytes]) -> None:
        if self.data_size_limit and self.num_bytes > self.data_size_limit:
            self.push("552 Error: Too much mail data")
            self.num_bytes = 0
            return
        self.received_data = unstuff(payload) if isinstance(payload, bytes) else unstuff(payload)
        options: Dict[str, Any] = {}
        if not self._decode_data:
            options = {"mail_options": self.mail_options, "rcpt_options": self.rcpt_options}
        status = self.smtp_server.process_message(
            self.peer, self.mailfrom, self.rcpttos, self.received_data, **options
        )
        self._set_post_data_state()
        self.push(status if status else "250 OK")

    # -- the commands ---------------------------------------------------------------

    def _greeting(self, verb: str, arg: Optional[str]) -> bool:
        """Common checks of HELO/EHLO; True when the greeting is accepted."""
        if not arg:
            self.push(f"501 Syntax: {verb} hostname")
            return False
        if self.seen_greeting:
            self.push("503 Duplicate HELO/EHLO")
            return False
        self._set_rset_state()
        self.seen_greeting = arg
        return True

    def smtp_HELO(self, arg: Optional[str]) -> None:
        """HELO hostname: greet, without the ESMTP extensions."""
        if self._greeting("HELO", arg):
            self.push(f"250 {self.fqdn}")

    def smtp_EHLO(self, arg: Optional[str]) -> None:
        """EHLO hostname: greet, list the extensions, raise the MAIL line limit for them."""
        if not self._greeting("EHLO", arg):
            return
        self.extended_smtp = True
        if self.data_size_limit:
            self.command_size_limits["MAIL"] += 26  # room for " SIZE=<digits>"
        if self.enable_SMTPUTF8:
            self.command_size_limits["MAIL"] += 10  # room for " SMTPUTF8"
        lines = ehlo_lines(
            self.fqdn, size_limit=self.data_size_limit, decode_data=self._decode_data,
            enable_smtputf8=self.enable_SMTPUTF8,
        )
        if self._starttls_offered():
            lines.insert(-1, "250-STARTTLS")
        for line in lines:  # one push per line, as 3.11 (tests read the last one)
            self.push(line)

    def smtp_NOOP(self, arg: Optional[str]) -> None:
        """NOOP: 250 OK."""
        self.push("501 Syntax: NOOP" if arg else "250 OK")

    def smtp_QUIT(self, arg: Optional[str]) -> None:
        """QUIT: say goodbye, then close once the reply is sent."""
        self.push("221 Bye")
        self.close_when_done()

    def smtp_HELP(self, arg: Optional[str]) -> None:
        """HELP [command]: list the commands or show one's syntax."""
        self.push(help_reply(arg, extended=self.extended_smtp))

    def smtp_VRFY(self, arg: Optional[str]) -> None:
        """VRFY address: never confirms a user (252), as RFC 5321 allows."""
        if not arg:
            self.push("501 Syntax: VRFY <address>")
        elif parse_address(arg)[0]:
            self.push("252 Cannot VRFY user, but will accept message and attempt delivery")
        else:
            self.push(f"502 Could not VRFY {arg}")

    def _syntax_error(self, usage_text: str) -> str:
        return "501 Syntax: " + usage_text + (" [SP <mail-parameters>]" if self.extended_smtp else "")

    def _address_and_params(self, keyword: str, arg: Optional[str], error: str) -> Optional[Tuple[str, str]]:
        """The address and parameter text of MAIL/RCPT; None once ``error`` was sent."""
        if arg is None:
            self.push(error)
            return None
        address, params = parse_address(strip_keyword(keyword, arg))
        if not address or (params and not self.extended_smtp):
            self.push(error)
            return None
        return address, params

    def smtp_MAIL(self, arg: Optional[str]) -> None:
        """MAIL FROM:<address> [parameters]: start a transaction."""
        if not self.seen_greeting:
            self.push("503 Error: send HELO first")
            return
        _trace("===> MAIL", arg)
        error = self._syntax_error("MAIL FROM: <address>")
        parsed = self._address_and_params("FROM:", arg, error)
        if parsed is None:
            return
        if self.mailfrom:
            self.push("503 Error: nested MAIL command")
            return
        self.mail_options = parsed[1].upper().split()
        if self._mail_params_refused(error):
            return
        self.mailfrom = parsed[0]
        _trace("sender:", self.mailfrom)
        self.push("250 OK")

    def _mail_params_refused(self, error: str) -> bool:
        params = parse_params(self.mail_options)
        if params is None:
            self.push(error)
            return True
        check = check_mail_params(
            params, syntax_error=error, decode_data=self._decode_data,
            enable_smtputf8=self.enable_SMTPUTF8, size_limit=self.data_size_limit,
        )
        if check.smtputf8:
            self.require_SMTPUTF8 = True
        if check.error is not None:
            self.push(check.error)
            return True
        return False

    def smtp_RCPT(self, arg: Optional[str]) -> None:
        """RCPT TO:<address>: add a recipient (no parameters are supported)."""
        if not self.seen_greeting:
            self.push("503 Error: send HELO first")
            return
        _trace("===> RCPT", arg)
        if not self.mailfrom:
            self.push("503 Error: need MAIL command")
            return
        error = self._syntax_error("RCPT TO: <address>")
        parsed = self._address_and_params("TO:", arg, error)
        if parsed is None:
            return
        self.rcpt_options = parsed[1].upper().split()
        params = parse_params(self.rcpt_options)
        if params is None:
            self.push(error)
        elif params:
            self.push("555 RCPT TO parameters not recognized or not implemented")
        else:
            self.rcpttos.append(parsed[0])
            _trace("recips:", self.rcpttos)
            self.push("250 OK")

    def smtp_RSET(self, arg: Optional[str]) -> None:
        """RSET: drop the transaction; the greeting stays."""
        if arg:
            self.push("501 Syntax: RSET")
            return
        self._set_rset_state()
        self.push("250 OK")

    def smtp_DATA(self, arg: Optional[str]) -> None:
        """DATA: receive the message, up to a line holding a single dot."""
        if not self.seen_greeting:
            self.push("503 Error: send HELO first")
        elif not self.rcpttos:
            self.push("503 Error: need RCPT command")
        elif arg:
            self.push("501 Syntax: DATA")
        else:
            self.smtp_state = self.DATA
            self.set_terminator(b"\r\n.\r\n")
            self.push("354 End data with <CR><LF>.<CR><LF>")

    def smtp_EXPN(self, arg: Optional[str]) -> None:
        """EXPN: not implemented (502)."""
        self.push("502 EXPN not implemented")

    def _starttls_offered(self) -> bool:
        return getattr(self.smtp_server, "tls_context", None) is not None and self.tls is None

    def smtp_STARTTLS(self, arg: Optional[str]) -> None:
        """STARTTLS (RFC 3207), when the server has a ``tls_context``.

        Input the client sent after the command, before the handshake, is
        discarded (it could not be trusted), and so is all the session
        knew: the client greets again over TLS.  Without a context the
        command is unknown, as in 3.11.
        """
        context = getattr(self.smtp_server, "tls_context", None)
        if context is None:
            self.push('500 Error: command "STARTTLS" not recognized')
        elif arg:
            self.push("501 Syntax: STARTTLS")
        elif self.tls is not None:
            self.push("503 Error: TLS already active")
        else:
            self.ac_in_buffer = b""  # the rest of this read: sent before TLS, dropped
            self._forget_session()
            self.push("220 Ready to start TLS")
            self.wrap_ssl(context, server_side=True)

    def _forget_session(self) -> None:
        self._set_rset_state()
        self.seen_greeting = ""
        self.extended_smtp = False
        self.command_size_limits.clear()

    def handle_idle_timeout(self) -> None:
        """The client was silent for :attr:`idle_timeout` seconds: say so (421,
        as RFC 5321 4.2.2 has it) and close once that reply is sent."""
        self.require_SMTPUTF8 = False
        self.push(f"421 {self.fqdn} Error: timeout exceeded")
        self.close_when_done()


def _renamed(old: str, new: str) -> property:
    """A property under 3.11's pre-3.5 private name that warns and forwards to ``new``."""

    def get(channel: SMTPChannel) -> Any:
        warnings.warn(f"Access to {old} attribute on SMTPChannel is deprecated, use '{new}' instead",
                      DeprecationWarning, 2)
        return getattr(channel, new)

    def set_(channel: SMTPChannel, value: Any) -> None:
        warnings.warn(f"Setting {old} attribute on SMTPChannel is deprecated, set '{new}' instead",
                      DeprecationWarning, 2)
        setattr(channel, new, value)

    return property(get, set_)


# the names SMTPChannel's attributes had before Python 3.5 (name-mangled
# privates that subclasses reached anyway); 3.11 still answered them, warning
for _old, _new in (
    ("server", "smtp_server"), ("line", "received_lines"), ("state", "smtp_state"),
    ("greeting", "seen_greeting"), ("mailfrom", "mailfrom"), ("rcpttos", "rcpttos"),
    ("data", "received_data"), ("fqdn", "fqdn"), ("peer", "peer"), ("conn", "conn"),
    ("addr", "addr"),
):
    setattr(SMTPChannel, "_SMTPChannel__" + _old, _renamed("__" + _old, _new))
del _old, _new


# -- the servers ---------------------------------------------------------------------


class SMTPServer(asyncore.dispatcher):
    """Listens on ``localaddr`` and serves each client with ``channel_class``.

    ``remoteaddr`` is kept for subclasses that relay (:class:`PureProxy`).
    Subclasses implement :meth:`process_message`.  ``tls_context`` (not in
    3.11, keyword only) lets clients use STARTTLS.  Raises ValueError when
    both ``decode_data`` and ``enable_SMTPUTF8`` are true, TypeError for a
    ``tls_context`` that is not an :class:`ssl.SSLContext`, and the OSError
    of a failed bind or listen (the socket is closed first).
    """

    channel_class = SMTPChannel
    #: the server's TLS settings; a context makes EHLO offer STARTTLS (not in 3.11)
    tls_context: Optional[ssl.SSLContext] = None

    def __init__(
        self, localaddr: _Address, remoteaddr: Optional[_Address],
        data_size_limit: Optional[int] = DATA_SIZE_DEFAULT, map: Optional[asyncore.SocketMapType] = None,
        enable_SMTPUTF8: bool = False, decode_data: bool = False, *,
        tls_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        if enable_SMTPUTF8 and decode_data:
            raise ValueError(_BOTH_MODES)
        if tls_context is not None:
            if not isinstance(tls_context, ssl.SSLContext):
                raise TypeError(f"tls_context must be an ssl.SSLContext, not {type(tls_context).__name__}")
            self.tls_context = tls_context
        self._localaddr, self._remoteaddr = localaddr, remoteaddr
        # handed to every channel this server makes
        self._decode_data = decode_data
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self.data_size_limit = data_size_limit
        super().__init__(map=map)
        try:
            self._listen(localaddr)
        except BaseException:
            self.close()
            raise
        _trace("%s started at %s\n\tLocal addr: %s\n\tRemote addr:%s" % (
            type(self).__name__, time.ctime(time.time()), localaddr, remoteaddr))

    def _listen(self, localaddr: _Address) -> None:
        host, port = localaddr[:2]
        family, kind = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][:2]
        self.create_socket(family, kind)
        self.set_reuse_addr()
        self.bind(localaddr)
        self.listen(5)

    def handle_accepted(self, conn: Any, addr: Any) -> None:
        """Start a ``channel_class`` session for the new client."""
        _trace("Incoming connection from %s" % repr(addr))
        self.channel_class(self, conn, addr, self.data_size_limit, self._map,
                           self.enable_SMTPUTF8, self._decode_data)

    def process_message(
        self, peer: Any, mailfrom: Optional[str], rcpttos: List[str], data: Any, **kwargs: Any
    ) -> Optional[str]:
        """Called with each message received; subclasses must override it.

        ``peer`` is the client's address; ``mailfrom`` and ``rcpttos`` the
        envelope; ``data`` the message with line ends as ``\\n`` and dot
        stuffing removed: bytes, or str when the server was made with
        ``decode_data=True``.  Without ``decode_data``, ``kwargs`` holds
        ``mail_options`` and ``rcpt_options``, the upper-cased ESMTP
        parameters of MAIL and of the last RCPT.  Return None to answer
        ``250 OK``, or the reply line to send instead (``"550 no thanks"``).

        Raises NotImplementedError here.
        """
        raise NotImplementedError


class DebuggingServer(SMTPServer):
    """Prints every message on standard output, with an ``X-Peer`` header
    added after the others; bytes messages are printed line by line as reprs."""

    def _print_message_content(self, peer: Any, data: Union[str, bytes]) -> None:
        header_done = False
        for line in data.splitlines():
            if not header_done and not line:
                print(self._peer_header(peer, data))
                header_done = True
            print(line if isinstance(line, str) else repr(line))

    @staticmethod
    def _peer_header(peer: Any, data: Union[str, bytes]) -> str:
        header = "X-Peer: " + peer[0]
        return header if isinstance(data, str) else repr(header.encode("utf-8"))

    def process_message(
        self, peer: Any, mailfrom: Optional[str], rcpttos: List[str], data: Any, **kwargs: Any
    ) -> Optional[str]:
        """Print the message between two rulers; answer 250 OK."""
        print("---------- MESSAGE FOLLOWS ----------")
        if kwargs.get("mail_options"):
            print("mail options: %s" % kwargs["mail_options"])
        if kwargs.get("rcpt_options"):
            print("rcpt options: %s\n" % kwargs["rcpt_options"])
        self._print_message_content(peer, data)
        print("------------ END MESSAGE ------------")
        return None


class PureProxy(SMTPServer):
    """Relays every message to the SMTP server at ``remoteaddr`` with
    :mod:`smtplib`, adding an ``X-Peer`` header.  Refusals are only traced
    on :data:`DEBUGSTREAM`, as in 3.11.  Raises ValueError for
    ``enable_SMTPUTF8=True``, which it cannot relay."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("enable_SMTPUTF8"):
            raise ValueError("PureProxy does not support SMTPUTF8.")
        super().__init__(*args, **kwargs)

    def process_message(
        self, peer: Any, mailfrom: Optional[str], rcpttos: List[str], data: Any, **kwargs: Any
    ) -> Optional[str]:
        """Insert ``X-Peer`` after the headers and relay the message.

        ``data`` may be bytes (the default) or str (``decode_data=True``);
        3.11 accepted only str and failed on the default.
        """
        refused = self._deliver(mailfrom, rcpttos, _with_peer_header(data, peer))
        _trace("we got some refusals:", refused)
        return None

    def _deliver(
        self, mailfrom: Optional[str], rcpttos: List[str], data: Union[str, bytes]
    ) -> Dict[str, Any]:
        """Send to the remote server; the refused recipients with their (code, reason)."""
        assert self._remoteaddr is not None
        try:
            client = smtplib.SMTP()
            client.connect(self._remoteaddr[0], self._remoteaddr[1])
            try:
                return dict(client.sendmail(mailfrom or "", rcpttos, data))
            finally:
                client.quit()
        except smtplib.SMTPRecipientsRefused as exc:
            _trace("got SMTPRecipientsRefused")
            return dict(exc.recipients)
        except (OSError, smtplib.SMTPException) as exc:
            _trace("got", exc.__class__)
            code = getattr(exc, "smtp_code", -1)
            reason = getattr(exc, "smtp_error", "ignore")
            return {rcpt: (code, reason) for rcpt in rcpttos}


def _with_peer_header(data: Union[str, bytes], peer: Any) -> Union[str, bytes]:
    """``data`` with ``X-Peer: <client ip>`` as its last header."""
    header = "X-Peer: %s" % peer[0]
    if isinstance(data, bytes):
        lines_b = data.split(b"\n")
        end = next((i for i, line in enumerate(lines_b) if not line), len(lines_b))
        lines_b.insert(end, header.encode("utf-8"))
        return b"\n".join(lines_b)
    lines = data.split("\n")
    end = next((i for i, line in enumerate(lines) if not line), len(lines))
    lines.insert(end, header)
    return NEWLINE.join(lines)


class CapturedMessage(NamedTuple):
    """One message a :class:`CapturingServer` received: the envelope and the
    message (bytes, or str with ``decode_data=True``; line ends are ``\\n``)."""

    mailfrom: Optional[str]
    rcpttos: List[str]
    message: Any


class _StopBell(asyncore.dispatcher):
    """One end of a socket pair in the server's map: a byte from :meth:`ring`,
    sent from any thread, makes the serving thread call ``on_ring``."""

    def __init__(self, socket_map: SocketMap, on_ring: Any) -> None:
        receiver, self._sender = socket.socketpair()
        self._sender.setblocking(False)
        self._lock = threading.Lock()
        self._on_ring = on_ring
        super().__init__(receiver, map=socket_map)

    def ring(self) -> None:
        """Wake the serving thread; never blocks, never raises (rung twice is rung once)."""
        with self._lock:
            try:
                self._sender.send(b"\0")
            except OSError:
                pass  # closed: already rung; full: a byte is already waiting

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.close()
        self._on_ring()

    def close(self) -> None:
        super().close()
        with self._lock:
            self._sender.close()


class CapturingServer(SMTPServer):
    """Keeps every message it receives in :attr:`messages`; serves from a thread.

    Not in 3.11: the server most test suites wrote by hand.  It listens on
    ``localaddr`` (an unused port of 127.0.0.1 by default; :attr:`address`
    says which) as soon as it is made, on a map of its own, and serves once
    :meth:`start` is called; :meth:`stop` ends it.  As a context manager it
    starts on entry and stops on exit::

        with CapturingServer() as server:
            smtplib.SMTP(*server.address).sendmail(...)
        mailfrom, rcpttos, message = server.messages[0]

    A message is in :attr:`messages` before the client hears ``250`` for
    it, so it is there when ``sendmail()`` returns.
    """

    #: seconds a session still open at :meth:`stop` has to finish
    stop_grace = 1.0

    def __init__(
        self, localaddr: _Address = ("127.0.0.1", 0), *, data_size_limit: Optional[int] = DATA_SIZE_DEFAULT,
        enable_SMTPUTF8: bool = False, decode_data: bool = False,
        tls_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        """Raises what :class:`SMTPServer` raises (ValueError, TypeError, OSError)."""
        self.messages: List[CapturedMessage] = []
        self._thread: Optional[threading.Thread] = None
        self._socket_map = SocketMap()
        super().__init__(localaddr, None, data_size_limit, self._socket_map, enable_SMTPUTF8, decode_data,
                         tls_context=tls_context)
        self._bell = _StopBell(self._socket_map, self._stop_serving)

    @property
    def address(self) -> Tuple[str, int]:
        """The ``(host, port)`` the server listens on."""
        host, port = self.socket.getsockname()[:2]
        return host, port

    def process_message(
        self, peer: Any, mailfrom: Optional[str], rcpttos: List[str], data: Any, **kwargs: Any
    ) -> Optional[str]:
        """Append the message to :attr:`messages`; answer 250 OK."""
        self.messages.append(CapturedMessage(mailfrom, list(rcpttos), data))
        return None

    def start(self) -> None:
        """Serve in a daemon thread.  Raises RuntimeError when already started."""
        if self._thread is not None:
            raise RuntimeError("CapturingServer.start() called twice")
        name = "CapturingServer %s:%d" % self.address
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncore.loop(timeout=30.0, map=self._socket_map)

    def _stop_serving(self) -> None:
        shutdown(self._socket_map, grace=self.stop_grace)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, let the sessions send their last replies, end the thread.

        Waits for the thread at most ``timeout`` seconds (raises
        TimeoutError past it).  Before :meth:`start`, it only closes the
        sockets.  Calling it again does nothing.
        """
        thread = self._thread
        if thread is None:
            asyncore.close_all(self._socket_map)
            return
        self._bell.ring()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"CapturingServer did not stop within {timeout} seconds")

    def __enter__(self) -> CapturingServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- the command line ----------------------------------------------------------------


class Options:
    """What :func:`parseargs` read; the class attributes are the defaults."""

    setuid = True
    classname = "PureProxy"
    size_limit: Optional[int] = None
    enable_SMTPUTF8 = False
    localhost: str
    localport: int
    remotehost: str
    remoteport: int


_SHORT_OPTIONS = "nVhc:s:du"
_LONG_OPTIONS = ["class=", "nosetuid", "version", "help", "size=", "debug", "smtputf8"]


def _apply_option(options: Options, flag: str, value: str) -> None:
    global DEBUGSTREAM
    if flag in ("-h", "--help"):
        usage(0)
    elif flag in ("-V", "--version"):
        print(__version__)
        sys.exit(0)
    elif flag in ("-n", "--nosetuid"):
        options.setuid = False
    elif flag in ("-c", "--class"):
        options.classname = value
    elif flag in ("-d", "--debug"):
        DEBUGSTREAM = sys.stderr
    elif flag in ("-u", "--smtputf8"):
        options.enable_SMTPUTF8 = True
    elif flag in ("-s", "--size"):
        try:
            options.size_limit = int(value)
        except ValueError:
            print("Invalid size: " + value, file=sys.stderr)
            sys.exit(1)


def _host_and_port(spec: str, which: str) -> Tuple[str, int]:
    host, colon, port = spec.partition(":")
    if not colon:
        usage(1, f"Bad {which} spec: {spec}")
    try:
        return host, int(port)
    except ValueError:
        usage(1, f"Bad {which} port: {spec}")


def parseargs(argv: Optional[List[str]] = None) -> Options:
    """Read the command line (``sys.argv[1:]`` by default) into an :class:`Options`.

    ``-h``, ``-V`` and every mistake print and exit (SystemExit: 0 for help
    and version, 1 for a mistake), as 3.11's did.
    """
    try:
        opts, args = getopt.getopt(sys.argv[1:] if argv is None else argv, _SHORT_OPTIONS, _LONG_OPTIONS)
    except getopt.error as exc:
        usage(1, exc)
    options = Options()
    for flag, value in opts:
        _apply_option(options, flag, value)
    if len(args) > 2:
        usage(1, "Invalid arguments: %s" % COMMASPACE.join(args))
    local = args[0] if args else "localhost:8025"
    remote = args[1] if len(args) > 1 else "localhost:25"
    options.localhost, options.localport = _host_and_port(local, "local")
    options.remotehost, options.remoteport = _host_and_port(remote, "remote")
    return options


def _server_class(name: str) -> Any:
    """The class ``-c`` names: ``module.Class``, or a name of this module (then
    of ``__main__``).  Exits with the usage text when there is no such class
    (3.11 raised AttributeError)."""
    module_name, _, class_name = name.rpartition(".")
    if module_name:
        try:
            found = getattr(__import__(module_name, fromlist=[""]), class_name, None)
        except ImportError as exc:
            usage(1, f"Bad class: {name} ({exc})")
    else:
        found = globals().get(name, getattr(sys.modules["__main__"], name, None))
    if not isinstance(found, type):
        usage(1, f"Bad class: {name} (give DebuggingServer, PureProxy or module.Class)")
    return found


def _become_nobody() -> None:
    try:
        import pwd
    except ImportError:
        print('Cannot import module "pwd"; try running with -n option.', file=sys.stderr)
        sys.exit(1)
    try:
        os.setuid(pwd.getpwnam("nobody")[2])
    except PermissionError:
        print('Cannot setuid "nobody"; try running with -n option.', file=sys.stderr)
        sys.exit(1)


def _serve(options: Options) -> None:
    server_class = _server_class(options.classname)
    server_class(
        (options.localhost, options.localport), (options.remotehost, options.remoteport),
        options.size_limit, enable_SMTPUTF8=options.enable_SMTPUTF8,
    )
    if options.setuid:
        _become_nobody()
    # Ctrl-C and SIGTERM stop the server gracefully: the listener closes,
    # sessions finish sending their replies, loop() returns
    stop_signals = [getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)]
    for signum in stop_signals:
        add_signal_handler(signum, shutdown)
    try:
        asyncore.loop()
    except KeyboardInterrupt:
        pass
    finally:
        for signum in stop_signals:
            remove_signal_handler(signum)


def _main() -> None:
    _serve(parseargs())


if __name__ == "__main__":
    _main()
