"""A drop-in ``asyncore``: CPython 3.11's API and behaviour on pluggable pollers.

Legacy code keeps its ``dispatcher`` subclasses and its ``loop()`` calls; the
loop now runs on the best poller of the platform (epoll on Linux) with
registrations kept across passes.  See the migration guide for the few
places where behaviour differs from 3.11 on purpose.
"""

# The lower-case class names and the module-level errno names are CPython's
# public API; they keep their spelling for compatibility.
# ruff: noqa: N801, N818

from __future__ import annotations

import os
import select  # noqa: F401  (asyncore.select is part of the 3.11 namespace)
import socket
import sys
import time  # asyncore.time is part of the 3.11 namespace too
import warnings

# The errno names are part of asyncore's namespace in 3.11: code imports
# them from here (ECONNRESET, EPIPE, ESHUTDOWN among them).
from errno import (  # noqa: F401
    EAGAIN,
    EALREADY,
    EBADF,
    ECONNABORTED,
    ECONNRESET,
    EINPROGRESS,
    EINVAL,
    EISCONN,
    EMFILE,
    ENFILE,
    ENOBUFS,
    ENOMEM,
    ENOTCONN,
    EPIPE,
    ESHUTDOWN,
    EWOULDBLOCK,
    errorcode,
)
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple, Type, TypeVar, Union

import pollers
from pollers import PRI, READ, WRITE

from . import _debug, _loop, _validation
from ._delivery import DISCONNECTED, RERAISED, call_guarded, deliver_poll
from ._errors import ExitNow
from ._interest import listener_events, pushes_interest, register_fast_interest
from ._socket_map import SocketMap

# 3.11's module held these two under these names; code written for it may read them
_DISCONNECTED = DISCONNECTED
_reraised_exceptions = RERAISED

_FOREVER = float("inf")
_INPUT = READ | PRI  # what readable() asks for
_ALL = READ | PRI | WRITE

ExitNow.__module__ = "asyncore"

SocketMapType = Dict[int, Any]

# accept() failures that mean "out of descriptors or kernel memory": the
# connection stays in the backlog and the listener stays readable, so retrying
# on the next pass would spin; see dispatcher.handle_accept_error.
_ACCEPT_EXHAUSTED: FrozenSet[int] = frozenset({EMFILE, ENFILE, ENOBUFS, ENOMEM})
_Address = Union[Tuple[Any, ...], str, bytes]

#: The map used when none is given.  Code may replace it with its own dict.
socket_map: SocketMapType = SocketMap()


def _uninitialised(channel: object) -> AttributeError:
    name = type(channel).__name__
    return AttributeError(
        f"{name} has no socket map: {name}.__init__ did not call dispatcher.__init__(); "
        "call super().__init__() before create_socket() or set_socket()"
    )


_M = TypeVar("_M", bound=Mapping[int, Any])


def map_or_default(map: Optional[_M]) -> Union[_M, SocketMapType]:  # noqa: A002 (asyncore's name)
    """``map``, or the default ``socket_map`` when it is None.

    The one default-map lookup of the package.  The module global is read at
    each call: programs (and CPython's tests) rebind ``asyncore.socket_map``.
    """
    return socket_map if map is None else map


def _strerror(err: int) -> str:
    """The message for an errno, never raising."""
    try:
        return os.strerror(err)
    except (ValueError, OverflowError, NameError):
        return errorcode.get(err, f"Unknown error {err}")


def read(obj: Any) -> None:
    """Call ``obj.handle_read_event()``; errors other than ExitNow & co go to handle_error."""
    call_guarded(obj, "handle_read_event")


def write(obj: Any) -> None:
    """Call ``obj.handle_write_event()``; errors other than ExitNow & co go to handle_error."""
    call_guarded(obj, "handle_write_event")


def _exception(obj: Any) -> None:
    """Call ``obj.handle_expt_event()``; errors other than ExitNow & co go to handle_error."""
    call_guarded(obj, "handle_expt_event")


def readwrite(obj: Any, flags: int) -> None:
    """Deliver poll()-style ``flags`` to ``obj``: read, write, urgent, then close.

    Every flag present is delivered.  An OSError whose errno means
    disconnection calls ``handle_close``; any other exception calls
    ``handle_error``; ExitNow, KeyboardInterrupt and SystemExit propagate.
    """
    deliver_poll(obj, flags)


def poll(timeout: Optional[float] = 0.0, map: Optional[SocketMapType] = None) -> None:
    """One pass with select(), asking every channel, as 3.11's ``poll()`` did.

    The map's due timers run at the end of the pass (an accept pause ends
    there too), and the wait ends at the earliest timer's deadline.
    ``timeout`` is checked as by :func:`loop` without ``use_poll``.
    Raises RuntimeError while an asyncio bridge serves the map.
    """
    wait = _validation.wait_timeout(timeout)
    _loop.run_once(map_or_default(map), pollers.get("select"), wait)


def poll2(timeout: Optional[float] = 0.0, map: Optional[SocketMapType] = None) -> None:
    """One pass with poll(), asking every channel, as 3.11's ``poll2()`` did.

    Falls back to select() where the platform has no poll().  Timers run as
    in :func:`poll`; ``timeout`` is checked as by :func:`loop` with
    ``use_poll=True`` (a negative one waits without limit).  Raises
    RuntimeError while an asyncio bridge serves the map.
    """
    wait = _validation.wait_timeout(timeout, negative_means_none=True)
    name = "poll" if "poll" in pollers.available() else "select"
    _loop.run_once(map_or_default(map), pollers.get(name), wait)


poll3 = poll2


def loop(
    timeout: Optional[float] = 30.0,
    use_poll: bool = False,
    map: Optional[SocketMapType] = None,
    count: Optional[int] = None,
    *,
    poller: Any = None,
) -> None:
    """Serve the channels of ``map`` (default: ``socket_map``).

    Runs passes until the map is empty and no timer is pending, or for at
    most ``count`` passes.  Each pass waits at most ``timeout`` seconds (less
    when a timer is due sooner).  ``poller`` is a backend name or class;
    without it the process default is used (see ``set_default_poller``).
    The poller and its registrations are kept across calls for the same map
    and released when the map empties.

    ``use_poll`` does two things.  It always picks how events reach the
    channels, as in 3.11: with ``use_poll=True`` a hang-up or error calls
    ``handle_close`` (poll2 semantics); without it a hang-up shows as a
    read/write event (select semantics), whatever the backend.  And when the
    default backend is select (and no ``poller`` is given), ``use_poll=True``
    runs the loop on poll instead, as 3.11 did.

    ``timeout`` is a number of seconds, or None to wait without limit for
    each pass.  A negative one raises ValueError, as 3.11's select() did;
    with ``use_poll=True`` it waits without limit instead, as 3.11's
    ``poll2()`` did.

    Raises pollers.UnknownPollerError for an unknown poller name, TypeError
    for a ``timeout`` that is not a number (a bool included), ValueError for
    a NaN or infinite one, and RuntimeError while an asyncio bridge serves
    the map (see :func:`asyncio_compat.asyncio_bridge.attach`).
    """
    kind = type(timeout)
    if not ((kind is float or kind is int) and 0 <= timeout < _FOREVER):  # type: ignore[operator]
        timeout = _validation.wait_timeout(timeout, negative_means_none=bool(use_poll))
    socket_map_ = map_or_default(map)
    map_loop = _loop.claim(socket_map_)  # raises while a foreign driver holds the map
    if map_loop is None or poller is not None:
        map_loop = _loop.loop_for(socket_map_, _loop.poller_class_for(use_poll, poller))
    try:
        # map_loop.pending(), inline: a call fewer per pass while the map has channels
        if count is None:
            while map_loop.map or map_loop.timers.keeps_loop_running():
                map_loop.run_pass(timeout, use_poll)
        else:
            while count > 0 and (map_loop.map or map_loop.timers.keeps_loop_running()):
                map_loop.run_pass(timeout, use_poll)
                count -= 1
    finally:
        if not socket_map_:
            _loop.forget(socket_map_)


class dispatcher:
    """A non-blocking socket and the handlers the loop calls for it.

    Subclasses override the ``handle_*`` methods.  Overriding ``readable()``
    or ``writable()`` works as in 3.11: such a channel is asked every pass.
    Channels that keep the built-in predicates are asked only when their
    state changes; code that changes ``connected`` or ``accepting`` by hand
    outside a handler should then call :meth:`interest_changed`.
    """

    __module__ = "asyncore"

    accepting = False  # listening: never put in the write set
    addr: Any = None
    closing = False
    connected = False
    connecting = False  # a non-blocking connect is in progress
    debug = False
    ignore_log_types: FrozenSet[str] = frozenset({"warning"})
    #: Seconds a listening dispatcher stops accepting after accept() ran out
    #: of descriptors or memory (see :meth:`handle_accept_error`).
    accept_pause: float = 0.1

    #: True while accepting is paused (:meth:`pause_accepting`): the loop
    #: then asks for no event on this fd, so a listener whose backlog cannot
    #: be accepted does not spin.  Read it; change it through the methods.
    accept_paused = False
    _accept_resume: Any = None  # the timer that ends the pause
    _accept_failing = False  # this run of failures was logged; a good accept resets it

    socket: Any  # the socket (or file_wrapper); set by __init__ or set_socket
    _fileno: Optional[int] = None  # the fd under which we sit in the map
    _map: Any = None

    def __init__(self, sock: Optional[socket.socket] = None, map: Optional[SocketMapType] = None) -> None:
        self._map = map_or_default(map)
        self._fileno = None
        # Per-instance copies of the class defaults: CPython 3.11 specialises
        # attribute reads only for instance attributes, and the loop reads
        # these on every event.  A value a subclass set before calling us wins.
        self.accepting = self.accepting
        self.connecting = self.connecting
        if not sock:
            self.socket = None
            return
        # the socket may come from a blocking source
        sock.setblocking(False)
        self.set_socket(sock, map)
        self.connected = True
        try:
            self.addr = sock.getpeername()
        except OSError as exc:
            if exc.errno in (ENOTCONN, EINVAL):
                # a socket that is not connected (yet) is fine
                self.connected = False
            else:
                # broken in some other way: do not leave it in the map
                self.del_channel(map)
                raise

    def __del__(self) -> None:
        # Debug mode reports a dispatcher collected with its socket open, as
        # asyncio reports an unclosed transport; off, this is one flag read
        # per dispatcher freed (never on the delivery path).  getattr: at
        # interpreter shutdown the module's globals may already be cleared.
        if getattr(_debug, "enabled", False):
            _debug.collected(self, self._map)

    def __repr__(self) -> str:
        cls = type(self)
        parts = [f"{cls.__module__}.{cls.__qualname__}"]
        if self.accepting and self.addr:
            parts.append("listening")
        elif self.connected:
            parts.append("connected")
        if self.addr is not None:
            try:
                parts.append("%s:%d" % self.addr)
            except TypeError:
                parts.append(repr(self.addr))
        return f"<{' '.join(parts)} at {id(self):#x}>"

    # -- the map -------------------------------------------------------------

    def add_channel(self, map: Optional[SocketMapType] = None) -> None:
        """Put this channel in ``map`` (default: its own map) under its fd."""
        target = self._map if map is None else map
        try:
            target[self._fileno] = self  # type: ignore[index]
        except TypeError:
            if target is None:  # the class default: dispatcher.__init__ never ran
                raise _uninitialised(self) from None
            raise
        _loop.channel_moved(target)  # a signal handler may add it during the wait

    def del_channel(self, map: Optional[SocketMapType] = None) -> None:
        """Take this channel out of ``map`` (default: its own map)."""
        target = self._map if map is None else map
        fd = self._fileno
        if fd in target:
            try:
                del target[fd]  # type: ignore[arg-type]
            except KeyError:
                pass  # a signal handler's close_all() took it out meanwhile
            else:
                # ... or close it; unregistered now, before close() closes the socket
                _loop.channel_moved(target, left=fd)
        self._fileno = None

    def interest_changed(self) -> None:
        """Tell the loop that ``readable()``/``writable()`` may answer differently.

        Needed only for changes made outside this channel's handlers; the
        loop looks again at every channel that has just handled an event.
        """
        fd = self._fileno
        if fd is not None:
            mark_changed = getattr(self._map, "mark_changed", None)
            if mark_changed is not None:  # a plain dict is compared in full anyway
                mark_changed(fd)

    def create_socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> None:
        """Create a non-blocking socket and add this channel to its map."""
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.family_and_type = (family, type)
        self.set_socket(sock)

    def set_socket(self, sock: Any, map: Optional[SocketMapType] = None) -> None:
        """Adopt ``sock`` and add this channel to ``map`` (default: its own)."""
        self.socket = sock
        self._fileno = sock.fileno()
        self.add_channel(map)

    def set_reuse_addr(self) -> None:
        """Set SO_REUSEADDR on the socket, ignoring a refusal."""
        try:
            current = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, current | 1)
        except OSError:
            pass

    # -- predicates ------------------------------------------------------------

    @pushes_interest
    def readable(self) -> bool:
        """Whether the loop should wait for input: always, by default."""
        return True

    @pushes_interest
    def writable(self) -> bool:
        """Whether the loop should wait for room to write: always, by default."""
        return True

    # -- socket methods ----------------------------------------------------------

    def listen(self, num: int) -> None:
        """Start accepting connections (backlog ``num``)."""
        self.accepting = True
        if os.name == "nt" and num > 5:
            num = 5
        self.interest_changed()
        return self.socket.listen(num)  # type: ignore[no-any-return]

    def bind(self, addr: _Address) -> None:
        """Bind the socket and remember ``addr``."""
        self.addr = addr
        return self.socket.bind(addr)  # type: ignore[no-any-return]

    def connect(self, address: _Address) -> None:
        """Start a non-blocking connect; ``handle_connect`` runs once it is done.

        Raises OSError when the connect fails at once.
        """
        self.connected = False
        self.connecting = True
        self.interest_changed()
        err = self.socket.connect_ex(address)
        in_progress = err in (EINPROGRESS, EALREADY, EWOULDBLOCK) or (
            err == EINVAL and os.name == "nt"
        )
        if not in_progress and err not in (0, EISCONN):
            raise OSError(err, errorcode[err])
        self.addr = address
        if not in_progress:  # connected at once (e.g. AF_UNIX)
            self.handle_connect_event()

    def accept(self) -> Optional[Tuple[Any, Any]]:
        """``(sock, addr)`` for a pending connection, or None if there is none.

        Raises OSError for errors other than "nothing to accept" and a
        connection aborted before it was accepted.
        """
        try:
            conn, addr = self.socket.accept()
        except TypeError:
            return None
        except OSError as exc:
            if exc.errno in (EWOULDBLOCK, ECONNABORTED, EAGAIN):
                return None
            if exc.errno in _ACCEPT_EXHAUSTED:
                # out of fds or memory: not this listener's fault, so it is
                # not closed; handle_accept_error backs off instead
                self.handle_accept_error(exc)
                return None
            raise
        self._accept_failing = False
        return conn, addr

    def handle_accept_error(self, exc: OSError) -> None:
        """Called when ``accept()`` fails for lack of resources.

        ``exc`` is the OSError (EMFILE, ENFILE, ENOBUFS or ENOMEM); the
        pending connection stays in the kernel's backlog.  The default logs
        the first failure of a run of them (``log_info``, type "error") and
        calls :meth:`pause_accepting` for :attr:`accept_pause` seconds, after
        which accepting resumes by itself.  Override it to free descriptors
        first (close idle connections) or to pause for longer; an exception
        raised here goes to ``handle_error`` as from any handler.
        """
        if not self._accept_failing:
            self._accept_failing = True
            self.log_info(
                f"accept() failed on {self!r}: {exc}; pausing accepts for "
                f"{self.accept_pause:g}s at a time until one succeeds",
                "error",
            )
        self.pause_accepting(self.accept_pause)

    def pause_accepting(self, seconds: float) -> None:
        """Stop waiting for connections for ``seconds``, then resume by itself.

        While paused the loop does not watch this fd at all (a level-triggered
        poller would otherwise report the waiting connection on every pass).
        A new call replaces a pause in progress; ``close()`` ends it.  Uses
        the timers of the channel's map, so the pause ends whatever serves
        the map: ``loop()``, ``poll()``/``poll2()``, the asyncio bridge or
        Tk.  Raises TypeError for a ``seconds`` that is not a number (a bool
        included), ValueError for a negative, NaN or infinite one.
        """
        seconds = _validation.seconds(seconds, "seconds")
        self._end_accept_pause()
        self.accept_paused = True
        self.interest_changed()
        when = time.monotonic() + seconds
        self._accept_resume = _loop.loop_for(self._map).timers.schedule(when, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._accept_resume = None
        self.accept_paused = False
        self.interest_changed()

    def _end_accept_pause(self) -> None:
        if self._accept_resume is not None:
            self._accept_resume.cancel()
            self._accept_resume = None
        self.accept_paused = False

    def send(self, data: Any) -> int:
        """Send what the socket takes now; returns the count (0 when it would block).

        A disconnected peer calls ``handle_close`` and returns 0.
        """
        try:
            return self.socket.send(data)  # type: ignore[no-any-return]
        except OSError as exc:
            if exc.errno == EWOULDBLOCK:
                return 0
            if exc.errno in DISCONNECTED:
                self.handle_close()
                return 0
            raise

    def recv(self, buffer_size: int) -> bytes:
        """Receive up to ``buffer_size`` bytes.

        End of stream or a disconnection calls ``handle_close`` and returns b''.
        """
        try:
            data = self.socket.recv(buffer_size)
        except OSError as exc:
            if exc.errno in DISCONNECTED:
                self.handle_close()
                return b""
            raise
        if not data:
            self.handle_close()
            return b""
        return data  # type: ignore[no-any-return]

    def close(self) -> None:
        """Leave the map and close the socket.  Calling it twice is harmless."""
        self.connected = self.accepting = self.connecting = False
        if self._accept_resume is not None:
            # a pending resume timer would keep loop() running for nothing
            self._end_accept_pause()
        try:
            self.del_channel()
        finally:  # the socket is closed whatever a subclass's del_channel() did
            if self.socket is not None:
                try:
                    self.socket.close()
                except OSError as exc:
                    if exc.errno not in (ENOTCONN, EBADF):
                        raise

    # -- logging ---------------------------------------------------------------

    def log(self, message: Any) -> None:
        """'Hit' logging: writes ``log: message`` to stderr."""
        sys.stderr.write(f"log: {message}\n")

    def log_info(self, message: Any, type: str = "info") -> None:
        """Print ``type: message`` unless ``type`` is in ``ignore_log_types``."""
        if type not in self.ignore_log_types:
            print(f"{type}: {message}")

    # -- events from the loop -------------------------------------------------------

    def handle_read_event(self) -> None:
        if self.accepting:
            # a listening socket is readable when a connection waits
            self.handle_accept()
            return
        if not self.connected and self.connecting:
            self.handle_connect_event()
        self.handle_read()

    def handle_connect_event(self) -> None:
        """Finish a connect: raises OSError if it failed, else calls handle_connect."""
        failure = self._socket_error()
        if failure:
            raise OSError(failure, _strerror(failure))
        self.handle_connect()
        self.connected = True
        self.connecting = False

    def handle_write_event(self) -> None:
        if self.accepting:
            # listening sockets have nothing to write: ignore the event
            return
        if not self.connected and self.connecting:
            self.handle_connect_event()
        self.handle_write()

    def handle_expt_event(self) -> None:
        """Urgent data, or an error on the socket (which closes the channel)."""
        if self._socket_error():
            self.handle_close()
        else:
            self.handle_expt()

    def _socket_error(self) -> int:
        """The socket's pending error (SO_ERROR), 0 for none."""
        return int(self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def handle_error(self) -> None:
        """Log the exception being handled with a compact traceback and close."""
        _, exc_type, exc_value, tbinfo = compact_traceback()
        try:
            self_repr = repr(self)
        except BaseException:
            self_repr = f"<__repr__(self) failed for object at {id(self):x}>"
        self.log_info(
            f"uncaptured python exception, closing channel {self_repr} "
            f"({exc_type}:{exc_value} {tbinfo})",
            "error",
        )
        self.handle_close()

    def handle_expt(self) -> None:
        self.log_info("unhandled incoming priority event", "warning")

    def handle_read(self) -> None:
        self.log_info("unhandled read event", "warning")

    def handle_write(self) -> None:
        self.log_info("unhandled write event", "warning")

    def handle_connect(self) -> None:
        self.log_info("unhandled connect event", "warning")

    def handle_accept(self) -> None:
        """Accept one connection and pass it to ``handle_accepted``."""
        pair = self.accept()
        if pair is not None:
            self.handle_accepted(*pair)

    def handle_accepted(self, sock: Any, addr: Any) -> None:
        """Called with each accepted connection; the default closes it."""
        sock.close()
        self.log_info("unhandled accepted event", "warning")

    def handle_close(self) -> None:
        self.log_info("unhandled close event", "warning")
        self.close()


# Largest slice dispatcher_with_send hands to one send() call.
_SEND_SLICE = 65536


class dispatcher_with_send(dispatcher):
    """A dispatcher with an output buffer: ``send()`` queues, the loop drains."""

    __module__ = "asyncore"

    def __init__(self, sock: Optional[socket.socket] = None, map: Optional[SocketMapType] = None) -> None:
        super().__init__(sock, map)
        self.out_buffer = b""

    def initiate_send(self) -> None:
        """Send as much of ``out_buffer`` as the socket takes now."""
        sent = dispatcher.send(self, self.out_buffer[:_SEND_SLICE])
        self.out_buffer = self.out_buffer[sent:]

    def handle_write(self) -> None:
        self.initiate_send()

    @pushes_interest
    def writable(self) -> bool:
        return (not self.connected) or bool(len(self.out_buffer))

    def send(self, data: bytes) -> None:  # type: ignore[override]
        """Queue ``data`` and try to send at once; returns nothing (as in 3.11)."""
        if self.debug:
            self.log_info(f"sending {data!r}")
        self.out_buffer = self.out_buffer + data
        self.initiate_send()
        if self.out_buffer:
            # WRITE is wanted now.  (A buffer that drained needs no call: a
            # stale WRITE costs one spare event, after which the loop looks
            # at this channel again.)
            self.interest_changed()


def _dispatcher_interest(obj: dispatcher) -> int:
    if obj.accepting:
        return listener_events(obj, _INPUT)
    return _ALL


def _with_send_interest(obj: dispatcher_with_send) -> int:
    if obj.accepting:
        return listener_events(obj, _INPUT)
    return _ALL if (obj.out_buffer or not obj.connected) else _INPUT


# one call instead of readable() + writable() + accepting, on the hot path
register_fast_interest(dispatcher.readable, dispatcher.writable, _dispatcher_interest)
register_fast_interest(dispatcher.readable, dispatcher_with_send.writable, _with_send_interest)


def _maps_to_check_at_exit() -> List[Any]:
    maps = _loop.served_maps()
    if all(found is not socket_map for found in maps):
        maps.append(socket_map)
    return maps


# debug mode: channels with open sockets still in a map at exit are reported
_debug.report_unclosed_at_exit(_maps_to_check_at_exit)


_TracebackSummary = Tuple[Tuple[str, str, str], Optional[Type[BaseException]], Optional[BaseException], str]


def compact_traceback() -> _TracebackSummary:
    """``((file, function, line), type, value, info)`` for the exception being handled.

    ``info`` lists every frame as ``[file|function|line]``.  Raises
    AssertionError when no exception is being handled.
    """
    exc_type, exc_value, tb = sys.exc_info()
    if not tb:
        raise AssertionError("traceback does not exist")
    frames = []
    while tb:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, str(tb.tb_lineno)))
        tb = tb.tb_next
    info = " ".join("[%s|%s|%s]" % frame for frame in frames)
    return frames[-1], exc_type, exc_value, info


def close_all(map: Optional[SocketMapType] = None, ignore_all: bool = False) -> None:
    """Close every channel of ``map`` and empty it.

    EBADF from a close is ignored; other errors propagate unless
    ``ignore_all``.  ExitNow, KeyboardInterrupt and SystemExit always propagate.
    """
    target = map_or_default(map)
    for channel in list(target.values()):
        try:
            channel.close()
        except OSError as exc:
            if exc.errno != EBADF and not ignore_all:
                raise
        except RERAISED:
            raise
        except BaseException:
            if not ignore_all:
                raise
    target.clear()
    _loop.forget(target)


if os.name == "posix":

    class file_wrapper:
        """Makes an fd look enough like a socket for a dispatcher.

        The fd passed in is duplicated; ``close()`` closes the duplicate.
        """

        __module__ = "asyncore"

        def __init__(self, fd: int) -> None:
            self.fd = os.dup(fd)

        def __del__(self) -> None:
            if self.fd >= 0:
                warnings.warn(f"unclosed file {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()

        def recv(self, *args: Any) -> bytes:
            return os.read(self.fd, *args)

        def send(self, *args: Any) -> int:
            return os.write(self.fd, *args)

        def getsockopt(self, level: int, optname: int, buflen: Optional[int] = None) -> int:
            """Only SO_ERROR (always 0) is supported; anything else raises NotImplementedError."""
            if level == socket.SOL_SOCKET and optname == socket.SO_ERROR and not buflen:
                return 0
            raise NotImplementedError("Only asyncore specific behaviour implemented.")

        read = recv
        write = send

        def close(self) -> None:
            if self.fd < 0:
                return
            fd, self.fd = self.fd, -1
            os.close(fd)

        def fileno(self) -> int:
            return self.fd

    class file_dispatcher(dispatcher):
        """A dispatcher over a pipe, terminal or file descriptor."""

        __module__ = "asyncore"

        def __init__(self, fd: Any, map: Optional[SocketMapType] = None) -> None:
            super().__init__(None, map)
            self.connected = True
            if hasattr(fd, "fileno"):  # a file object rather than a number
                fd = fd.fileno()
            self.set_file(fd)
            os.set_blocking(fd, False)

        def set_file(self, fd: int) -> None:
            """Wrap ``fd`` (duplicated) and add this channel to its map."""
            self.socket = file_wrapper(fd)
            self._fileno = self.socket.fileno()
            self.add_channel()


__all__ = [
    "dispatcher", "dispatcher_with_send", "loop", "poll", "poll2", "poll3",
    "readwrite", "read", "write", "close_all", "compact_traceback", "ExitNow",
    "socket_map", "SocketMap",
]
if os.name == "posix":
    __all__ += ["file_wrapper", "file_dispatcher"]
