"""TLS for asyncore channels, over the standard library's :mod:`ssl`.

Put :class:`TLSMixin` first in the bases of a ``dispatcher``,
``dispatcher_with_send`` or ``async_chat`` subclass and call
:meth:`TLSMixin.wrap_ssl` with an :class:`ssl.SSLContext`: at once for an
accepted connection, before or after ``connect()`` for a client, or in the
middle of a plaintext conversation for a STARTTLS-style upgrade.  The
channel's own ``handle_read``/``handle_write`` and its ``recv``/``send`` calls
stay as they are; they see plaintext.

How it fits the loop (the facts the design follows):

* The socket stays non-blocking.  ``do_handshake()``, ``recv()``,
  ``send()`` and ``unwrap()`` raise ``SSLWantReadError`` or
  ``SSLWantWriteError`` when the SSL object needs the socket to become
  readable or writable; those turn into the events the channel waits for
  (:attr:`TLSSocket.want`), never into ``handle_error``.
* A readable socket does not mean readable plaintext (the bytes may be a
  handshake message, a session ticket or half a record), and one record
  read from the socket may hold more plaintext than ``handle_read`` asks
  for.  So the mixin reads ahead: on a read event it decrypts what the
  socket holds into a buffer, calls ``handle_read`` only when there is
  something to give, and calls it again while decrypted bytes remain.  The
  kernel will not report those bytes, so when the channel stops reading
  (its ``readable()`` went false, or it took too long a turn) and wants
  them later, the mixin queues a made-up read event for the next pass.
* The mixin's ``readable()``/``writable()`` answer from the TLS state while
  a handshake or a closing exchange runs.  They are marked as pushing their
  changes (:func:`~asyncio_compat._interest.pushes_interest`); every change of
  TLS state happens in an event handler of the channel or calls
  ``interest_changed()``.  A class whose own predicates are legacy ones
  (asked every pass) keeps being asked every pass.
* A record cut short by ``SSLWantWriteError`` must be offered again with
  the same bytes: each ``send()`` hands the SSL object at most one record
  (16 KiB) and remembers the length of a write it must finish.

Certificate and hostname failures surface from the handshake as
``ssl.SSLCertVerificationError`` (its message names the reason: "Hostname
mismatch", "self-signed certificate"...), which the loop hands to
``handle_error`` like any other exception.
"""

from __future__ import annotations

import functools
import inspect
import socket
import ssl
from errno import EPIPE, EWOULDBLOCK
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Union

from pollers import READ, WRITE

from . import _loop
from ._delivery import DISCONNECTED, call_guarded
from ._interest import pushes_interest, reports_changes
from ._timers import TimerHandle
from ._validation import seconds
from .timers import call_later

__all__ = ["HANDSHAKE", "OPEN", "CLOSING", "TLSMixin", "TLSSocket"]

#: The TLS phases of a :class:`TLSSocket`.
HANDSHAKE = "handshake"
OPEN = "open"
CLOSING = "closing"

# Largest plaintext of one TLS record: a send() gives the SSL object at most
# this much, so a write it must retry is never longer than one record.
_RECORD = 16384
# How much plaintext a read event decrypts ahead before handing it out.
_READ_AHEAD = 65536
# handle_read calls in one turn of a channel with buffered plaintext; more
# wait for the next pass so one busy channel cannot starve the others.
_TURNS = 64

_Plan = Tuple[ssl.SSLContext, bool, Optional[str]]
_UNWRAP = "unwrap"


# The peer ended the TCP connection without a close_notify where one was due.
# Python 3.9 with OpenSSL 3 reports that as SSLZeroReturnError ("TLS/SSL
# connection has been closed (EOF)"); later versions as SSLEOFError.
_PEER_ENDED = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


def _disconnected(exc: OSError) -> bool:
    """A socket error that means the peer is gone (not an SSL error: those
    reuse small errno values for their own codes)."""
    return not isinstance(exc, ssl.SSLError) and exc.errno in DISCONNECTED


def _check_handshake_timeout(allowed: Optional[float]) -> Optional[float]:
    if allowed is None:
        return None
    return seconds(allowed, "handshake_timeout", positive=True, accepted="a number of seconds or None")


def _would_block(what: str) -> BlockingIOError:
    return BlockingIOError(EWOULDBLOCK, f"TLS {what} would block")


class TLSSocket:
    """An :class:`ssl.SSLSocket` driven without blocking, for a dispatcher.

    It stands in for the plain socket in ``dispatcher.socket``: ``recv()``
    and ``send()`` speak plaintext and raise ``BlockingIOError`` (EWOULDBLOCK)
    where the TLS layer has to wait, which ``dispatcher.send`` turns into 0
    and ``async_chat`` ignores.  Every other attribute (``getpeercert()``,
    ``cipher()``, ``version()``, ``getsockopt()``...) is the SSL socket's.

    ``phase`` is :data:`HANDSHAKE`, :data:`OPEN` or :data:`CLOSING`;
    ``want`` is the READ/WRITE mask the SSL object waits for.
    ``notify`` is called whenever ``want`` changes.
    """

    #: ``send()`` takes any bytes-like object (a memoryview too) without
    #: copying it, so ``async_chat`` hands it views of queued data
    zero_copy_send = True

    def __init__(self, ssl_socket: ssl.SSLSocket, want: int, notify: Callable[[], None]) -> None:
        self.ssl = ssl_socket
        self.phase = HANDSHAKE
        self.want = want
        self._notify = notify
        self.inbound = bytearray()  # decrypted, not yet handed to recv()
        self.at_eof = False  # the peer's end of stream has been read
        self.close_notify_received = False  # that end was a clean TLS close
        self.read_blocked = False  # a read needs the socket writable first
        self._unfinished = 0  # length of a record write the SSL object must finish

    def __getattr__(self, name: str) -> Any:
        # only reached for names this class does not define
        if name == "ssl":  # not set yet (a half-built copy): do not recurse
            raise AttributeError(name)
        return getattr(self.ssl, name)

    def __repr__(self) -> str:
        return f"<TLSSocket {self.phase} fd={self.ssl.fileno()} want={self.want}>"

    def fileno(self) -> int:
        return self.ssl.fileno()

    def _set_want(self, want: int) -> None:
        if want != self.want:
            self.want = want
            self._notify()

    # -- handshake and close ----------------------------------------------------

    def handshake(self) -> bool:
        """Advance the handshake; True once it is complete.

        Raises ``ssl.SSLError`` (``SSLCertVerificationError`` for a
        certificate or hostname the context rejects) or OSError when it fails.
        """
        try:
            self.ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._set_want(READ)
            return False
        except ssl.SSLWantWriteError:
            self._set_want(WRITE)
            return False
        self.phase = OPEN
        self._set_want(0)
        return True

    def unwrap(self) -> Optional[socket.socket]:
        """Advance the closing exchange; the plain socket once both sides sent close_notify.

        The TLS layer is gone afterwards: this object no longer owns the fd.
        Raises ``ssl.SSLError`` or OSError when the exchange fails.
        """
        try:
            self.ssl.unwrap()
        except ssl.SSLWantReadError:
            self._set_want(READ)
            return None
        except ssl.SSLWantWriteError:
            self._set_want(WRITE)
            return None
        self._set_want(0)
        family, kind, proto = self.ssl.family, self.ssl.type, self.ssl.proto
        return socket.socket(family, kind, proto, fileno=self.ssl.detach())

    def send_close_notify(self) -> None:
        """Tell the peer, once and without waiting, that no more TLS data comes.

        Best effort, for a channel that is closing: errors (a peer already
        gone, a socket that is full) are ignored.
        """
        if self.phase == HANDSHAKE:
            return  # after a failed or unfinished handshake there is no session to close
        self.phase = CLOSING
        try:
            self.ssl.unwrap()
        except (OSError, ValueError):  # ssl.SSLError is an OSError
            pass

    def close(self) -> None:
        self.ssl.close()

    # -- plaintext in -------------------------------------------------------------

    def fill(self, limit: Optional[int] = None) -> None:
        """Decrypt what the socket holds into ``inbound``, up to ``limit`` bytes
        (default: the module's read-ahead, 64 KiB).

        Sets ``at_eof`` at the end of the peer's stream: a close_notify (then
        ``close_notify_received`` too), the TCP connection ending without
        one, or a disconnection error (a reset).  Raises ``ssl.SSLError``
        for a corrupt stream, OSError for other socket errors.
        """
        self.read_blocked = False
        if limit is None:
            limit = _READ_AHEAD
        while len(self.inbound) < limit and not self.at_eof:
            try:
                data = self.ssl.recv(limit - len(self.inbound))
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                self.read_blocked = True
                self._set_want(self.want | WRITE)
                return
            except _PEER_ENDED:
                # the peer closed TCP without close_notify: an end all the same
                self.at_eof = True
                return
            except OSError as exc:
                if not _disconnected(exc):
                    raise
                # a reset: the end of the stream, as dispatcher.recv() has it
                self.at_eof = True
                return
            if not data:
                self.at_eof = self.close_notify_received = True
                return
            self.inbound += data

    def buffered(self) -> bool:
        """True while plaintext (or the end of the stream) waits for ``recv()``."""
        return bool(self.inbound) or self.at_eof or (self.phase == OPEN and self.ssl.pending() > 0)

    def recv(self, size: int, flags: int = 0) -> bytes:
        """Up to ``size`` bytes of plaintext; b"" at the end of the peer's stream.

        Raises BlockingIOError when none is there yet (or a handshake or
        closing exchange is running), ValueError for ``flags``.
        """
        if flags:
            raise ValueError("recv() flags are not supported on a TLS channel")
        if not self.inbound and not self.at_eof and self.phase == OPEN:
            self.fill(max(size, 1))
        if self.inbound:
            data = bytes(self.inbound[:size])
            del self.inbound[:size]
            return data
        if self.at_eof:
            return b""
        raise _would_block("read")

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        """``recv()`` into ``buffer``; returns the count.  Raises as ``recv()``."""
        view = memoryview(buffer).cast("B")
        data = self.recv(size or len(view), flags)
        view[: len(data)] = data
        return len(data)

    # -- plaintext out --------------------------------------------------------------

    def send(self, data: Any, flags: int = 0) -> int:
        """Encrypt and send up to one record of ``data``; returns the count.

        Raises BlockingIOError when the socket cannot take the record now
        (or no session is open); the next call must start with the same
        bytes, as every asyncore buffer does.  Raises BrokenPipeError once
        the peer has closed the TCP connection.  Raises ValueError for
        ``flags``, or when a record cut short is offered fewer bytes than
        before.
        """
        if flags:
            raise ValueError("send() flags are not supported on a TLS channel")
        if self.phase != OPEN:
            raise _would_block("write (no open session)")
        chunk = self._next_record(data)
        try:
            sent = self.ssl.send(chunk)
        except ssl.SSLWantWriteError:
            self._unfinished = len(chunk)
            self._set_want(self.want | WRITE)
            raise _would_block("write") from None
        except ssl.SSLWantReadError:
            self._unfinished = len(chunk)
            self._set_want(self.want | READ)
            raise _would_block("write") from None
        except _PEER_ENDED:
            # the SSL object saw the peer's TCP end: a broken pipe, which
            # dispatcher.send() answers with handle_close(), as for a plain socket
            raise BrokenPipeError(EPIPE, "TLS send: the peer has closed the connection") from None
        self._unfinished = 0
        self._set_want(0)
        return int(sent)

    def _next_record(self, data: Any) -> Any:
        view = memoryview(data).cast("B")
        if not self._unfinished:
            return view[:_RECORD]
        if len(view) < self._unfinished:
            raise ValueError(
                f"a TLS record cut short must be sent again whole: {self._unfinished} bytes "
                f"were offered before, {len(view)} now"
            )
        return view[: self._unfinished]


class TLSMixin:
    """TLS for a dispatcher or async_chat: place it first in the bases.

    ::

        class Handler(TLSMixin, asynchat.async_chat): ...

    Call :meth:`wrap_ssl` to start TLS, :meth:`unwrap_ssl` to end it and go
    on in plaintext.  Hooks: :meth:`handle_handshake_done`,
    :meth:`handle_close_notify`, :meth:`handle_unwrap_done`,
    :meth:`handle_handshake_timeout`.  ``close()`` sends a close_notify
    first (without waiting for the answer).
    """

    socket: Any
    _fileno: Optional[int]
    _map: Any
    connected: bool
    connecting: bool
    accepting: bool

    # a wrap_ssl() (its settings) or unwrap_ssl() (_UNWRAP) waiting for the
    # connect to finish or the queued plaintext/ciphertext to be sent
    _tls_pending: Union[_Plan, str, None] = None
    # the wrap waits for output queued before wrap_ssl() to go out in plaintext
    _tls_flush_first = False
    _tls_wake_queued = False  # a made-up read event is queued for buffered plaintext
    _tls_notified_close = False  # handle_close_notify() was called
    _tls_deadline: Optional[TimerHandle] = None  # ends a handshake that takes too long

    #: Seconds a handshake may take, counted from its start, before
    #: :meth:`handle_handshake_timeout` is called; None turns the limit off.
    #: Read by :meth:`wrap_ssl`.
    handshake_timeout: Optional[float] = 60.0

    if TYPE_CHECKING:  # provided by the dispatcher class that follows in the bases

        def interest_changed(self) -> None: ...
        def handle_read(self) -> None: ...
        def handle_close(self) -> None: ...
        def handle_error(self) -> None: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, tls_answer in (("readable", TLSMixin._tls_readable), ("writable", TLSMixin._tls_writable)):
            own = cls.__dict__.get(name)
            if inspect.isfunction(own):
                # the class's own predicate: TLS must still answer during a
                # handshake or closing exchange, so wrap it
                setattr(cls, name, _tls_predicate(own, tls_answer))
            elif getattr(cls, name) is getattr(TLSMixin, name):
                beneath = getattr(super(), name, None)
                if beneath is not None and not reports_changes(beneath):
                    # a legacy predicate below us must still be asked every
                    # pass: give this class an unmarked copy of ours
                    setattr(cls, name, _tls_predicate(beneath, tls_answer))

    # -- public API ------------------------------------------------------------------

    @property
    def tls(self) -> Optional[TLSSocket]:
        """The :class:`TLSSocket` while TLS is on, else None."""
        sock = self.socket
        return sock if isinstance(sock, TLSSocket) else None

    def wrap_ssl(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
    ) -> None:
        """Start TLS on this channel's socket with ``context``.

        The handshake runs from the loop; :meth:`handle_handshake_done` is
        called when it completes, and plaintext I/O waits until then.  A
        client that is not connected yet starts once it is (before
        ``handle_connect`` is called).  A channel with output queued at the
        time of the call (see :meth:`tls_output_pending`) waits until that
        is all sent, so a STARTTLS reply goes out in plaintext; without
        such output, everything queued after the call waits for the session.  A client
        normally passes ``server_hostname``, the name the certificate must
        match.

        The handshake must complete within :attr:`handshake_timeout` seconds
        of its start (60 by default), else :meth:`handle_handshake_timeout`
        is called.

        Raises TypeError when ``context`` is not an SSLContext or
        ``handshake_timeout`` is not a number or None; ValueError when there
        is no socket, the socket listens, TLS is already on (or pending), the
        context checks hostnames and ``server_hostname`` is missing, or
        ``handshake_timeout`` is not positive and finite.
        """
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"wrap_ssl() needs an ssl.SSLContext, not {type(context).__name__}")
        _check_handshake_timeout(self.handshake_timeout)
        self._check_can_wrap(context, server_side, server_hostname)
        self._tls_pending = (context, server_side, server_hostname)
        self._tls_flush_first = self.tls_output_pending()
        self._tls_notified_close = False
        self._tls_start_pending()
        self.interest_changed()

    def unwrap_ssl(self) -> None:
        """End TLS (both sides send close_notify) and go on in plaintext.

        Output queued before the call is sent under TLS first.  When the
        exchange is done the channel's socket is a plain socket again and
        :meth:`handle_unwrap_done` is called.  Raises ValueError when no
        TLS session is open.
        """
        tls = self.tls
        if tls is None or tls.phase != OPEN or self._tls_pending is not None:
            raise ValueError(f"unwrap_ssl(): no open TLS session on {self!r}")
        self._tls_pending = _UNWRAP
        self._tls_start_pending()
        self.interest_changed()

    def tls_output_pending(self) -> bool:
        """Whether the channel still holds output queued before a TLS switch.

        :meth:`wrap_ssl` and :meth:`unwrap_ssl` wait until this is false.
        The default knows ``dispatcher_with_send.out_buffer`` and
        ``async_chat.producer_fifo``; override it for a buffer of your own.
        """
        return bool(getattr(self, "out_buffer", b"")) or bool(getattr(self, "producer_fifo", ()))

    # -- hooks -------------------------------------------------------------------------

    def handle_handshake_done(self) -> None:
        """Called once the handshake has completed; ``self.tls`` tells the
        cipher, the version and the peer's certificate.  The default does nothing."""

    def handle_close_notify(self) -> None:
        """Called when the peer ends TLS with a close_notify.

        The default does nothing: the end reaches ``handle_read`` as the end
        of the stream (``recv()`` returns b"" and calls ``handle_close``).
        Call :meth:`unwrap_ssl` here to answer it and go on in plaintext.
        """

    def handle_unwrap_done(self) -> None:
        """Called when :meth:`unwrap_ssl` has finished; the socket is plain
        again.  The default does nothing."""

    def handle_handshake_timeout(self) -> None:
        """Called when the handshake has not completed :attr:`handshake_timeout`
        seconds after it started, however many bytes the peer sent meanwhile.

        The default calls ``handle_close()``.  An exception raised here goes
        to ``handle_error``.
        """
        self.handle_close()

    # -- the dispatcher's methods, TLS-aware ----------------------------------------

    @pushes_interest
    def readable(self) -> bool:
        """The TLS layer's answer during a handshake or closing exchange,
        else the channel's own (``super().readable()``)."""
        return self._tls_readable(super().readable)  # type: ignore[misc]

    @pushes_interest
    def writable(self) -> bool:
        """The TLS layer's answer during a handshake or closing exchange,
        else the channel's own (``super().writable()``)."""
        return self._tls_writable(super().writable)  # type: ignore[misc]

    def _tls_readable(self, own: Callable[[], Any]) -> bool:
        tls = self.tls
        if tls is None:
            if self._tls_pending is not None and self.connected:
                return False  # a wrap waits for our reply: the peer's next bytes are TLS
            return bool(own())
        if tls.phase != OPEN:
            return bool(tls.want & READ)
        wanted = bool(own())
        if wanted and tls.buffered():
            self._tls_wake()
        return wanted or bool(tls.want & READ)

    def _tls_writable(self, own: Callable[[], Any]) -> bool:
        tls = self.tls
        if tls is None:
            # a finished connect shows as a write event, and TLS waits for it
            return self._tls_waits_for_connect() or bool(own())
        if tls.phase != OPEN:
            return bool(tls.want & WRITE)
        return bool(own()) or bool(tls.want & WRITE)

    def handle_read_event(self) -> None:
        self._tls_wake_queued = False
        tls = self.tls
        if tls is None:
            if self._tls_waits_for_connect():
                self.handle_connect_event()
            else:
                super().handle_read_event()  # type: ignore[misc]
        elif tls.phase == OPEN:
            self._tls_deliver(tls)
        else:
            self._tls_advance(tls)

    def handle_write_event(self) -> None:
        tls = self.tls
        if tls is None:
            if self._tls_waits_for_connect():
                self.handle_connect_event()
                return
            super().handle_write_event()  # type: ignore[misc]
        elif tls.phase != OPEN:
            self._tls_advance(tls)
            return
        else:
            if tls.read_blocked:
                self._tls_deliver(tls)
                if self.socket is not tls or self._fileno is None:
                    return
            super().handle_write_event()  # type: ignore[misc]
        self._tls_start_pending()

    def handle_connect_event(self) -> None:
        plan = self._tls_pending
        if isinstance(plan, tuple) and not self._tls_flush_first and self._fileno is not None:
            # TLS before handle_connect() runs: what it (or anyone since
            # wrap_ssl) queues waits for the session instead of going out in
            # plaintext.  A failed connect still raises below.
            self._tls_pending = None
            self._tls_wrap(*plan)
        super().handle_connect_event()  # type: ignore[misc]
        self._tls_start_pending()

    def close(self) -> None:
        """Send a close_notify if a TLS session is open, then close."""
        tls = self.tls
        self._tls_pending = None
        self._tls_cancel_deadline()
        if tls is not None and tls.phase == OPEN:
            tls.send_close_notify()
        super().close()  # type: ignore[misc]

    # -- internals -------------------------------------------------------------------------

    def _check_can_wrap(self, context: ssl.SSLContext, server_side: bool, hostname: Optional[str]) -> None:
        if self.socket is None:
            raise ValueError("wrap_ssl(): the channel has no socket yet (call create_socket() first)")
        if self.accepting:
            raise ValueError("wrap_ssl(): a listening socket cannot carry TLS; wrap each accepted channel")
        if self.tls is not None or self._tls_pending is not None:
            raise ValueError(f"wrap_ssl(): TLS is already on (or starting) for {self!r}")
        if not server_side and context.check_hostname and not hostname:
            raise ValueError("wrap_ssl(): this context checks hostnames, so server_hostname is required")

    def _tls_waits_for_connect(self) -> bool:
        return self._tls_pending is not None and self.connecting and not self.connected

    def _tls_start_pending(self) -> None:
        """Carry out a wrap_ssl()/unwrap_ssl() once nothing holds it back."""
        plan = self._tls_pending
        if plan is None or self._fileno is None or not self.connected:
            return
        if (plan == _UNWRAP or self._tls_flush_first) and self.tls_output_pending():
            return
        self._tls_pending = None
        tls = self.tls
        if plan == _UNWRAP:
            assert tls is not None
            tls.phase = CLOSING
            tls._set_want(WRITE)  # send our close_notify on the next pass
        else:
            assert isinstance(plan, tuple)
            self._tls_wrap(*plan)
        self.interest_changed()

    def _tls_wrap(self, context: ssl.SSLContext, server_side: bool, hostname: Optional[str]) -> None:
        wrapped = context.wrap_socket(
            self.socket,
            server_side=server_side,
            server_hostname=hostname,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,  # so that fill() tells close_notify from a bare EOF
        )
        # the server waits for the ClientHello; the client sends it when writable
        self.socket = TLSSocket(wrapped, READ if server_side else WRITE, self.interest_changed)
        self._tls_arm_deadline()

    def _tls_arm_deadline(self) -> None:
        allowed = _check_handshake_timeout(self.handshake_timeout)
        if allowed is not None:
            self._tls_deadline = call_later(allowed, self._tls_deadline_passed, map=self._map)

    def _tls_cancel_deadline(self) -> None:
        if self._tls_deadline is not None:
            self._tls_deadline.cancel()
            self._tls_deadline = None

    def _tls_deadline_passed(self) -> None:
        self._tls_deadline = None
        tls = self.tls
        if tls is not None and tls.phase == HANDSHAKE and self._fileno is not None:
            call_guarded(self, "handle_handshake_timeout")

    def _tls_advance(self, tls: TLSSocket) -> None:
        """One step of a handshake or closing exchange, and its hook when done.

        A peer that disconnects meanwhile (a reset, or the TCP connection
        ending without a close_notify: ``SSLEOFError``) gets
        ``handle_close``, as a disconnection seen by ``recv()`` does; other
        SSL errors propagate (the loop gives them to ``handle_error``).
        """
        try:
            self._tls_step(tls)
        except _PEER_ENDED:
            self.handle_close()
        except OSError as exc:
            if not _disconnected(exc):
                raise
            self.handle_close()

    def _tls_step(self, tls: TLSSocket) -> None:
        if tls.phase == HANDSHAKE:
            if tls.handshake():
                self._tls_cancel_deadline()
                self.handle_handshake_done()
                if self.socket is tls and tls.phase == OPEN and self._fileno is not None:
                    self._tls_deliver(tls)  # data may have come with the last flight
            return
        plain = tls.unwrap()
        if plain is not None:
            self.socket = plain
            self.handle_unwrap_done()

    def _tls_deliver(self, tls: TLSSocket) -> None:
        """Hand decrypted plaintext to ``handle_read`` until none is left."""
        tls.fill()
        for _ in range(_TURNS):
            if not tls.buffered():
                return
            if not tls.inbound and tls.close_notify_received and not self._tls_notified_close:
                self._tls_notified_close = True
                self.handle_close_notify()
                if self.socket is not tls or tls.phase != OPEN or self._tls_pending is not None:
                    return  # unwrap_ssl() answered it
            self.handle_read()
            if self.socket is not tls or self._fileno is None or not self.readable():
                return
            if tls.at_eof and not tls.inbound:
                return  # the end is told once per event, as a plain socket's is
            if not tls.inbound:
                tls.fill()
        if tls.buffered():
            self._tls_wake()

    def _tls_wake(self) -> None:
        """Queue a read event for the next pass: the kernel will not report these bytes."""
        if self._tls_wake_queued or self._fileno is None:
            return
        map_loop = _loop.existing_loop(self._map)
        if map_loop is not None:
            map_loop.inject(self._fileno, READ)
            self._tls_wake_queued = True


def _tls_predicate(
    own: Callable[[Any], Any], tls_answer: Callable[[Any, Callable[[], Any]], bool]
) -> Callable[[Any], bool]:
    """``own`` (a readable/writable function) behind the TLS layer's answer.

    The result is marked as pushing its changes only when ``own`` is: a
    legacy predicate keeps being asked every pass.
    """

    def predicate(self: Any) -> bool:
        return tls_answer(self, own.__get__(self, type(self)))

    functools.update_wrapper(predicate, own)
    if reports_changes(own):
        pushes_interest(predicate)
    return predicate
