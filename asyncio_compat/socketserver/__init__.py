"""A drop-in ``socketserver``: CPython 3.13's framework, waiting on pluggable pollers.

The classes, hooks and attributes are those of the standard library's
``socketserver`` (3.13 surface on every supported Python), so existing
servers and request handlers run unchanged.  What differs is underneath:

* ``serve_forever()`` and ``handle_request()`` wait on a backend of the
  ``pollers`` package: the process default (see
  :func:`asyncio_compat.set_default_poller`), or the one given by the
  constructor's ``poller`` keyword or :func:`set_poller`;
* ``shutdown()`` wakes the serving loop at once instead of waiting for the
  next ``poll_interval`` tick; it still blocks until ``serve_forever()``
  has returned, and it still deadlocks when called from the serving thread
  itself, as CPython documents;
* :func:`attach` puts a server into an asyncore socket map, so one
  ``asyncore.loop()`` serves it beside dispatchers.

The classes add no public attribute or method to CPython's: these
extensions are functions of this module that take the server
(:func:`attach`, :func:`detach`, :func:`is_attached`, :func:`set_poller`,
:func:`get_poller`), and a server keeps their state in one attribute with
a private (name-mangled) name, so no subclass can collide with them.

Class hierarchy, as in CPython::

    BaseServer -> TCPServer -> UDPServer -> UnixDatagramServer
                            -> UnixStreamServer

with ``ThreadingMixIn`` and (where ``os.fork`` exists) ``ForkingMixIn``
placed first in the bases to serve each request in a thread or a process.
"""

# The capitalised argument name RequestHandlerClass is CPython's public API;
# it keeps its spelling for compatibility.
# ruff: noqa: N803

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import threading
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Callable, List, NoReturn, Optional, Set, Tuple, Type, TypeVar

from pollers import NVAL, READ, Poller, fd_of

from .._config import PollerSpec, resolve_poller
from .._validation import seconds
from ._channel import ServerChannel
from ._wait import ShutdownWaker, fd_reported, wait_for_request

# The stdlib module's version string, unchanged for decades.  Python 3.15
# deprecates reading it (removal planned for 3.20); each version's surface is
# followed, so from 3.15 on it is served by a warning module __getattr__.
_STDLIB_VERSION = "0.4"

if sys.version_info >= (3, 15):

    def __getattr__(name: str) -> str:
        if name == "__version__":
            warnings.warn(
                "'__version__' is deprecated and slated for removal in Python 3.20",
                DeprecationWarning,
                stacklevel=2,  # the line that read the attribute
            )
            return _STDLIB_VERSION
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

else:
    __version__ = _STDLIB_VERSION

_HAS_FORK = hasattr(os, "fork")
_HAS_UNIX = hasattr(socket, "AF_UNIX")

__all__ = [
    "BaseServer", "TCPServer", "UDPServer", "ThreadingUDPServer", "ThreadingTCPServer",
    "BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler",
    "ThreadingMixIn", "ServerChannel",
]
if _HAS_FORK:
    __all__ += ["ForkingUDPServer", "ForkingTCPServer", "ForkingMixIn"]
if _HAS_UNIX:
    __all__ += [
        "UnixStreamServer", "UnixDatagramServer",
        "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer",
    ]
    if _HAS_FORK:
        __all__ += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]

# A request is whatever get_request() returns first: a connected socket for
# stream servers, a (data, socket) pair for datagram servers.
Request = Any
HandlerFactory = Callable[..., Any]
_ServerT = TypeVar("_ServerT", bound="BaseServer")


class _ServerState:
    """What this module keeps for one server, in its single attribute (see BaseServer.__init__)."""

    __slots__ = ("channel", "poller", "serving")

    def __init__(self, poller: Optional[Type[Poller]]) -> None:
        self.poller = poller  # the backend to wait on; None: the process default at each wait
        self.serving = False  # inside serve_forever()
        self.channel: Optional[ServerChannel] = None  # while attached to a socket map

    def forget_channel(self) -> None:
        """The channel left its map (``on_detach`` of :class:`ServerChannel`)."""
        self.channel = None

    def refuse_while_attached(self, server: BaseServer, what: str) -> None:
        if self.channel is not None:
            raise RuntimeError(
                f"{what}() on {server!r}, which is attached to a socket map: the map's loop "
                "serves it; call socketserver.detach(server) first"
            )


class BaseServer:
    """The request loop shared by every server, independent of sockets.

    Subclasses provide ``fileno()`` (what the poller waits on),
    ``get_request()`` and, usually, ``server_close()``.  The hooks run in
    this order for each request: ``get_request``, ``verify_request``,
    ``process_request`` (which calls ``finish_request``, instantiating
    ``RequestHandlerClass``), then ``shutdown_request``.

    ``timeout`` (a class attribute that subclasses or instances may change)
    is the number of seconds ``handle_request()`` waits before calling
    ``handle_timeout()``; None waits for ever.  The public names are
    CPython's; this module's extensions are functions that take the server.
    """

    __module__ = "socketserver"

    timeout: Optional[float] = None

    socket: Any  # set by socket-based subclasses

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: HandlerFactory,
        *,
        poller: PollerSpec = None,
    ) -> None:
        """Remember the address and handler class; do not override, extend.

        ``poller`` is the backend ``serve_forever()`` and
        ``handle_request()`` wait on: a name such as ``"poll"``, a
        :class:`pollers.Poller` subclass, or None for the process default
        at the time of each wait (see :func:`set_poller`).  Raises
        pollers.UnknownPollerError for a backend name that is unknown or not
        available here, and TypeError for a value that is neither a name nor
        a Poller subclass.
        """
        # all of this module's own state, under one name-mangled attribute
        # (_BaseServer__compat) that no subclass can collide with
        self.__compat = _ServerState(None if poller is None else resolve_poller(poller))
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        # set when a serve_forever() has ended; shutdown() waits for it.  It
        # starts clear, so a shutdown() issued before the loop starts waits
        # for that loop.  The mangled names match CPython's, which some code
        # pokes directly.
        self.__is_shut_down = threading.Event()
        self.__shutdown_request = False
        self.__waker = ShutdownWaker()

    def server_activate(self) -> None:
        """Called by the constructor after binding; does nothing here."""

    # -- the serving loops -------------------------------------------------

    def serve_forever(self, poll_interval: Optional[float] = 0.5) -> None:
        """Handle requests one after another until :meth:`shutdown` is called.

        ``service_actions()`` runs after every wake-up, which happens at least
        every ``poll_interval`` seconds (None: only when a request comes).
        ``self.timeout`` is not used.  Raises RuntimeError while the server
        is attached to a socket map (see :func:`attach`), and
        pollers.UnknownPollerError when the configured backend does not exist.
        """
        compat = self.__compat
        compat.refuse_while_attached(self, "serve_forever")
        self.__is_shut_down.clear()
        compat.serving = True
        try:
            self.__serve_until_shutdown(poll_interval)
        finally:
            compat.serving = False
            self.__shutdown_request = False
            self.__is_shut_down.set()

    def __serve_until_shutdown(self, poll_interval: Optional[float]) -> None:
        with self.__new_poller() as poller, self.__waker.armed() as wake:
            server_fd = fd_of(self)
            poller.register(server_fd, READ)
            poller.register(wake, READ)
            while not self.__stop_requested():
                ready = poller.poll(poll_interval)
                if self.__stop_requested():
                    break  # shutdown() during the wait: no more requests
                flags = fd_reported(ready, server_fd)
                if flags & NVAL:
                    # closed under us (server_close() from another thread):
                    # CPython would spin here; we stop watching and idle
                    poller.unregister(server_fd)
                elif flags:
                    self._handle_request_noblock()
                self.service_actions()

    def __stop_requested(self) -> bool:
        # a call, not the attribute: shutdown() sets it from another thread
        return self.__shutdown_request

    def shutdown(self) -> None:
        """Make ``serve_forever()`` return, and wait until it has.

        Call it from another thread than the one serving: called from the
        serving thread (for instance from a handler) it waits for itself and
        never returns, as in CPython.  Called while no ``serve_forever()``
        runs, it blocks until a later ``serve_forever()`` has started and
        returned (that one returns at once, having served nothing), as in
        CPython 3.11 and 3.13.
        """
        self.__shutdown_request = True
        self.__waker.ring()
        self.__is_shut_down.wait()

    def service_actions(self) -> None:
        """Periodic work; called by the serving loop after each wake-up.

        Also called by a server attached to a socket map (see :func:`attach`).
        Does nothing here; ForkingMixIn reaps its children in it.
        """

    def handle_request(self) -> None:
        """Wait for one request and handle it, or call ``handle_timeout()``.

        Waits for the smaller of ``self.timeout`` and the socket's own
        timeout (None for both: for ever).  Raises RuntimeError while the
        server is attached to a socket map, ValueError when its socket is
        closed, and whatever a handler raises that is not an Exception.
        """
        self.__compat.refuse_while_attached(self, "handle_request")
        timeout = self.__request_timeout()
        with self.__new_poller() as poller:
            arrived = wait_for_request(poller, self, timeout)
        if arrived:
            self._handle_request_noblock()
        else:
            self.handle_timeout()

    def __request_timeout(self) -> Optional[float]:
        # socket.settimeout() predates self.timeout as the way to bound
        # handle_request(), so both are honoured
        sock = getattr(self, "socket", None)
        sock_timeout = None if sock is None else sock.gettimeout()
        if sock_timeout is None:
            return self.timeout
        if self.timeout is None:
            return float(sock_timeout)
        return float(min(sock_timeout, self.timeout))

    def __new_poller(self) -> Poller:
        return resolve_poller(self.__compat.poller)()

    def _handle_request_noblock(self) -> None:
        """Take one request that is known to be waiting, verify it and process it.

        A failing ``get_request()`` (OSError) is ignored.  An Exception from
        ``process_request`` goes to ``handle_error``; anything else (such as
        SystemExit) propagates.  Whatever happens, a request that is not
        handed on is shut down.
        """
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        try:
            accepted = self.verify_request(request, client_address)
        except BaseException:
            self.shutdown_request(request)
            raise
        if accepted:
            self.__process_guarded(request, client_address)
        else:
            self.shutdown_request(request)

    def __process_guarded(self, request: Request, client_address: Any) -> None:
        try:
            self.process_request(request, client_address)
            return
        except Exception:
            self.handle_error(request, client_address)
        except BaseException:
            self.shutdown_request(request)
            raise
        # process_request() failed, and may not have closed the request
        self.shutdown_request(request)

    # -- hooks ---------------------------------------------------------------

    def get_request(self) -> Tuple[Request, Any]:
        """Return ``(request, client_address)``; socket-based subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define get_request()")

    def fileno(self) -> int:
        """The descriptor the poller waits on; socket-based subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define fileno()")

    def handle_timeout(self) -> None:
        """Called when ``handle_request()`` waited ``timeout`` seconds in vain."""

    def verify_request(self, request: Request, client_address: Any) -> bool:
        """Return False to refuse a request (it is then shut down unhandled)."""
        return True

    def process_request(self, request: Request, client_address: Any) -> None:
        """Finish the request in this thread, then shut it down.

        The mix-ins replace this to hand the request to a thread or a process.
        """
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def server_close(self) -> None:
        """Release the server's resources; detaches it from a socket map."""
        detach(self)

    def finish_request(self, request: Request, client_address: Any) -> None:
        """Handle the request by instantiating ``RequestHandlerClass``."""
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request: Request) -> None:
        """End one request: calls ``close_request``."""
        self.close_request(request)

    def close_request(self, request: Request) -> None:
        """Release one request's resources; nothing to do here."""

    def handle_error(self, request: Request, client_address: Any) -> None:
        """Report an exception raised while processing a request, then carry on.

        Prints the traceback to stderr between two rules.  Override it to log
        elsewhere or to re-raise.
        """
        rule = "-" * 40
        print(rule, file=sys.stderr)
        print("Exception occurred during processing of request from", client_address, file=sys.stderr)
        traceback.print_exc()
        print(rule, file=sys.stderr)

    def __enter__(self: _ServerT) -> _ServerT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server_close()


def _finish_or_report(server: BaseServer, request: Request, client_address: Any) -> bool:
    """Run ``finish_request``; False (after ``handle_error``) when it raised an Exception.

    Used by the mix-ins in their threads and children.
    """
    try:
        server.finish_request(request, client_address)
    except Exception:
        server.handle_error(request, client_address)
        return False
    return True


# -- this module's extensions: functions that take the server --------------------------


# How Python spells BaseServer's ``self.__compat`` (this module's own state)
# outside the class body, where name mangling does not apply.
_STATE_ATTRIBUTE = "_BaseServer__compat"


def _state_of(server: BaseServer) -> _ServerState:
    """The state BaseServer.__init__ stored under its name-mangled attribute.

    Raises TypeError for an object that is not one of this module's servers
    (or whose ``BaseServer.__init__`` has not run).
    """
    state = getattr(server, _STATE_ATTRIBUTE, None)
    if not isinstance(state, _ServerState):
        raise TypeError(
            f"{server!r} is not a server of asyncio_compat.socketserver "
            "(or BaseServer.__init__ has not run on it)"
        )
    return state


def attach(server: BaseServer, map: Optional[Any] = None, poll_interval: float = 0.5) -> ServerChannel:
    """Serve ``server`` from ``asyncore.loop()`` on ``map`` (default: asyncore's).

    Returns the :class:`ServerChannel` put in the map: whenever the
    server's socket is readable, the loop handles one request, in the
    loop's thread unless a mix-in hands it to a thread or a process.
    ``service_actions()`` runs after each request and, when the server's
    class overrides it, every ``poll_interval`` seconds on the loop's
    timers.  The server's poller setting does not apply: the loop's
    backend does.  ``server_close()`` detaches the server.

    Raises RuntimeError when the server is already attached or inside
    ``serve_forever()``, ValueError when its socket is closed,
    TypeError/ValueError when ``poll_interval`` is not a positive number of
    seconds, TypeError when ``server`` is not a server of this module.
    """
    state = _state_of(server)
    if state.channel is not None:
        raise RuntimeError(f"{server!r} is already attached to a socket map")
    if state.serving:
        raise RuntimeError(f"{server!r} is running serve_forever(); shut it down before attach()")
    poll_interval = seconds(poll_interval, "poll_interval", positive=True)
    # the default service_actions() does nothing: no need to wake the loop for it
    periodic = type(server).service_actions is not BaseServer.service_actions
    interval = poll_interval if periodic else None
    state.channel = ServerChannel(server, map, interval, state.forget_channel)
    return state.channel


def detach(server: BaseServer) -> None:
    """Take ``server`` out of the socket map :func:`attach` put it in.

    The server's socket stays open.  Does nothing when not attached (nor
    for a server whose ``__init__`` failed before setting it up).  Call it
    from the loop's thread or while no loop runs on that map.
    """
    state = getattr(server, _STATE_ATTRIBUTE, None)
    if isinstance(state, _ServerState) and state.channel is not None:
        state.channel.detach()


def is_attached(server: BaseServer) -> bool:
    """True while ``server`` sits in a socket map (see :func:`attach`).

    Raises TypeError when ``server`` is not a server of this module.
    """
    return _state_of(server).channel is not None


def set_poller(server: BaseServer, poller: PollerSpec) -> None:
    """Make ``serve_forever()`` and ``handle_request()`` wait on ``poller`` from their next call.

    ``poller`` is a backend name, a :class:`pollers.Poller` subclass, or
    None for the process default at the time of each wait (the same as the
    constructor's ``poller`` keyword).  Raises pollers.UnknownPollerError
    for an unknown or unavailable name, TypeError for anything else or when
    ``server`` is not a server of this module.
    """
    _state_of(server).poller = None if poller is None else resolve_poller(poller)


def get_poller(server: BaseServer) -> Optional[Type[Poller]]:
    """The backend class ``server`` waits on, or None for the process default.

    Raises TypeError when ``server`` is not a server of this module.
    """
    return _state_of(server).poller


class TCPServer(BaseServer):
    """A synchronous server on a stream socket (IPv4 TCP by default).

    ``address_family``, ``socket_type``, ``request_queue_size`` (the listen
    backlog), ``allow_reuse_address`` (SO_REUSEADDR) and
    ``allow_reuse_port`` (SO_REUSEPORT, where the platform has it) are class
    attributes to override.  ``server_address`` becomes the bound address,
    so port 0 reads back as the port the kernel chose.
    """

    __module__ = "socketserver"

    address_family: int = socket.AF_INET
    socket_type: int = socket.SOCK_STREAM
    request_queue_size: int = 5
    allow_reuse_address: bool = False
    allow_reuse_port: bool = False

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: HandlerFactory,
        bind_and_activate: bool = True,
        *,
        poller: PollerSpec = None,
    ) -> None:
        """Create the socket and, unless told not to, bind and activate it.

        Raises what ``bind()``/``listen()`` raise (OSError, OverflowError for
        a port out of range...) after closing the socket, so a failed
        construction leaks nothing.  See BaseServer for ``poller``.
        """
        BaseServer.__init__(self, server_address, RequestHandlerClass, poller=poller)
        self.socket = socket.socket(self.address_family, self.socket_type)
        if not bind_and_activate:
            return
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        """Apply the reuse options, bind, and read back the bound address."""
        # an option the platform lacks is skipped, not an error
        for wanted, option_name in (
            (self.allow_reuse_address, "SO_REUSEADDR"),
            (self.allow_reuse_port, "SO_REUSEPORT"),
        ):
            option = getattr(socket, option_name, None)
            if wanted and option is not None:
                self.socket.setsockopt(socket.SOL_SOCKET, option, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """Start listening with a backlog of ``request_queue_size``."""
        self.socket.listen(self.request_queue_size)

    def server_close(self) -> None:
        """Detach from a socket map if attached, and close the listening socket."""
        detach(self)
        self.socket.close()

    def fileno(self) -> int:
        """The socket's descriptor (-1 once closed)."""
        return int(self.socket.fileno())

    def get_request(self) -> Tuple[Request, Any]:
        """Accept a connection: ``(connected socket, peer address)``."""
        return self.socket.accept()  # type: ignore[no-any-return]

    def shutdown_request(self, request: Request) -> None:
        """Send FIN on the connection, then close it.

        ``close()`` alone only drops our reference, and a copy held elsewhere
        (a forked child, a makefile() object) would keep the peer waiting.
        A peer that is already gone (ENOTCONN and the like) is ignored.
        """
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)
        self.close_request(request)

    def close_request(self, request: Request) -> None:
        """Close the connection's socket."""
        request.close()


class UDPServer(TCPServer):
    """A synchronous datagram server: each datagram is one request.

    The request is ``(data, server_socket)``; datagrams longer than
    ``max_packet_size`` bytes are truncated by the kernel.
    """

    __module__ = "socketserver"

    socket_type: int = socket.SOCK_DGRAM
    max_packet_size: int = 8192

    def get_request(self) -> Tuple[Request, Any]:
        """Receive one datagram: ``((data, socket), sender address)``."""
        data, sender = self.socket.recvfrom(self.max_packet_size)
        return (data, self.socket), sender

    def server_activate(self) -> None:
        """Datagram sockets do not listen: nothing to do."""

    def shutdown_request(self, request: Request) -> None:
        """Nothing to shut down: the socket is the server's own."""
        self.close_request(request)

    def close_request(self, request: Request) -> None:
        """Nothing to close: the socket is the server's own."""


# The mix-ins call BaseServer's methods through super(); for the type checker
# they derive from it, at run time from object so that they go first in the
# bases of a concrete server as CPython's do.
if TYPE_CHECKING:
    _MixInBase = BaseServer
else:
    _MixInBase = object


if _HAS_FORK:

    class ForkingMixIn(_MixInBase):
        """Serve each request in a child process (``os.fork()``).

        ``max_children`` bounds the children alive at once: past it, the
        server waits for some to exit before forking again.  Exited children
        are reaped in ``service_actions()`` and ``handle_timeout()``.
        ``server_close()`` waits for all of them when ``block_on_close`` is
        true (the default), else only reaps those already finished.
        """

        __module__ = "socketserver"

        timeout: Optional[float] = 300
        active_children: Optional[Set[int]] = None
        max_children: int = 40
        block_on_close: bool = True

        def collect_children(self, *, blocking: bool = False) -> None:
            """Reap exited children; with ``blocking``, wait for all of them."""
            if self.active_children is None:
                return
            self.__reap_down_to_limit(self.active_children)
            self.__reap_each(self.active_children, blocking)

        def __reap_down_to_limit(self, children: Set[int]) -> None:
            # waitpid(-1) reaps any child, one call per exit instead of one per
            # child, but may reap children we did not fork: only past the limit
            while len(children) >= self.max_children:
                try:
                    pid, _ = os.waitpid(-1, 0)
                except ChildProcessError:
                    children.clear()  # no child left at all
                except OSError:
                    return
                else:
                    children.discard(pid)

        @staticmethod
        def __reap_each(children: Set[int], blocking: bool) -> None:
            options = 0 if blocking else os.WNOHANG
            for pid in list(children):
                try:
                    reaped, _ = os.waitpid(pid, options)
                except ChildProcessError:
                    children.discard(pid)  # reaped by someone else
                except OSError:
                    continue
                else:
                    children.discard(reaped)  # 0 (still running) is never in the set

        def handle_timeout(self) -> None:
            """Reap finished children after ``timeout`` idle seconds."""
            self.collect_children()

        def service_actions(self) -> None:
            """Reap finished children on every turn of the serving loop."""
            self.collect_children()

        def process_request(self, request: Request, client_address: Any) -> None:
            """Fork; the child handles the request and exits, the parent moves on.

            The child exits with status 0 after a handled request, 1 after an
            exception (reported through ``handle_error`` when it is an
            Exception), and never returns into the caller's code.
            """
            pid = os.fork()
            if pid == 0:
                self.__run_child(request, client_address)
            children = self.active_children
            if children is None:
                children = self.active_children = set()
            children.add(pid)
            # the child has its own copy of the connection; the parent's goes
            self.close_request(request)

        def __run_child(self, request: Request, client_address: Any) -> NoReturn:
            # os._exit, never a return or an exception: the child must not go
            # back into the parent's serving loop (or its test runner)
            status = 1
            try:
                if _finish_or_report(self, request, client_address):
                    status = 0
            finally:
                try:
                    self.shutdown_request(request)
                finally:
                    os._exit(status)

        def server_close(self) -> None:
            """Close the server, then reap (or wait for) the children."""
            super().server_close()
            self.collect_children(blocking=self.block_on_close)


class _Threads:
    """The request threads ``server_close()`` must join (non-daemon ones only).

    Finished threads are dropped whenever one is added, so a long-running
    server keeps only the live ones.
    """

    def __init__(self) -> None:
        self._threads: List[threading.Thread] = []

    def append(self, thread: threading.Thread) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        if not thread.daemon:
            self._threads.append(thread)

    def join(self) -> None:
        """Wait for every recorded thread, forgetting them."""
        pending, self._threads = self._threads, []
        for thread in pending:
            thread.join()

    def __len__(self) -> int:
        return len(self._threads)


class _NoThreads(_Threads):
    """Records nothing: the server does not wait for its threads on close."""

    def append(self, thread: threading.Thread) -> None:
        pass


class ThreadingMixIn(_MixInBase):
    """Serve each request in a new thread.

    ``daemon_threads`` makes the request threads daemons (they then do not
    keep the process alive).  ``server_close()`` joins the non-daemon
    request threads when ``block_on_close`` is true (the default).
    """

    __module__ = "socketserver"

    daemon_threads: bool = False
    block_on_close: bool = True
    # shared, empty placeholder; each blocking server gets its own _Threads
    _threads: _Threads = _NoThreads()

    def process_request_thread(self, request: Request, client_address: Any) -> None:
        """The body of a request thread: finish the request, report an
        Exception through ``handle_error``, always shut the request down.

        Anything else (SystemExit...) ends the thread through
        ``threading.excepthook``.
        """
        try:
            _finish_or_report(self, request, client_address)
        finally:
            self.shutdown_request(request)

    def process_request(self, request: Request, client_address: Any) -> None:
        """Start a thread that runs :meth:`process_request_thread`."""
        if self.block_on_close and "_threads" not in vars(self):
            self._threads = _Threads()
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address)
        )
        thread.daemon = self.daemon_threads
        self._threads.append(thread)
        thread.start()

    def server_close(self) -> None:
        """Close the server, then wait for the request threads (see block_on_close)."""
        super().server_close()
        self._threads.join()


if _HAS_FORK:

    class ForkingUDPServer(ForkingMixIn, UDPServer):
        """UDPServer handling each datagram in a child process."""

        __module__ = "socketserver"

    class ForkingTCPServer(ForkingMixIn, TCPServer):
        """TCPServer handling each connection in a child process."""

        __module__ = "socketserver"


class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    """UDPServer handling each datagram in its own thread."""

    __module__ = "socketserver"


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    """TCPServer handling each connection in its own thread."""

    __module__ = "socketserver"


if _HAS_UNIX:

    class UnixStreamServer(TCPServer):
        """TCPServer's behaviour on an AF_UNIX stream socket (address: a path)."""

        __module__ = "socketserver"

        address_family: int = socket.AF_UNIX

    class UnixDatagramServer(UDPServer):
        """UDPServer's behaviour on an AF_UNIX datagram socket (address: a path)."""

        __module__ = "socketserver"

        address_family: int = socket.AF_UNIX

    class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
        """UnixStreamServer handling each connection in its own thread."""

        __module__ = "socketserver"

    class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
        """UnixDatagramServer handling each datagram in its own thread."""

        __module__ = "socketserver"

    if _HAS_FORK:

        class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
            """UnixStreamServer handling each connection in a child process."""

            __module__ = "socketserver"

        class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
            """UnixDatagramServer handling each datagram in a child process."""

            __module__ = "socketserver"


class BaseRequestHandler:
    """One request's handler: created per request, does all its work in ``__init__``.

    The constructor stores ``request``, ``client_address`` and ``server``,
    then calls ``setup()``, ``handle()`` and (even when ``handle()``
    raises) ``finish()``.  Subclasses override ``handle()``.
    """

    __module__ = "socketserver"

    def __init__(self, request: Request, client_address: Any, server: BaseServer) -> None:
        self.request, self.client_address, self.server = request, client_address, server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self) -> None:
        """Prepare for ``handle()``; does nothing here."""

    def handle(self) -> None:
        """Serve the request; does nothing here."""

    def finish(self) -> None:
        """Clean up after ``handle()``; does nothing here."""


class StreamRequestHandler(BaseRequestHandler):
    """A handler for stream connections, with file objects on the socket.

    ``rfile`` reads from the connection (buffered: ``rbufsize`` -1 is the
    default buffer size); ``wfile`` writes to it, unbuffered by default
    (``wbufsize`` 0: each ``write()`` sends at once).  ``timeout`` (seconds)
    is applied to the socket when not None; ``disable_nagle_algorithm`` sets
    TCP_NODELAY, useful only with a buffered ``wfile``.
    """

    __module__ = "socketserver"

    rbufsize: int = -1
    wbufsize: int = 0
    timeout: Optional[float] = None
    disable_nagle_algorithm: bool = False

    connection: Any
    rfile: Any
    wfile: Any

    def setup(self) -> None:
        conn = self.connection = self.request
        if self.timeout is not None:
            conn.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.rfile = conn.makefile("rb", self.rbufsize)
        unbuffered = self.wbufsize == 0
        self.wfile = _SocketWriter(conn) if unbuffered else conn.makefile("wb", self.wbufsize)

    def finish(self) -> None:
        """Flush ``wfile`` and close both files.

        A socket error while flushing (the peer left: ECONNABORTED, EPIPE...)
        is ignored, as there is no one left to tell.  Unlike CPython, the
        close that follows a failed flush (which retries the flush) is
        guarded too, so that error does not reach ``handle_error``.
        """
        if not self.wfile.closed:
            with contextlib.suppress(OSError):
                self.wfile.flush()
        try:
            self.wfile.close()
        except OSError:
            if not self.wfile.closed:
                raise
        finally:
            self.rfile.close()


class _SocketWriter(io.BufferedIOBase):
    """The unbuffered ``wfile``: every ``write()`` is one ``sendall()``.

    Holding no data, it never needs ``flush()``.  ``write()`` returns the
    full length, since ``sendall`` either sends everything (retrying after
    signals) or raises.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


class DatagramRequestHandler(BaseRequestHandler):
    """A handler for datagrams, with the same ``rfile``/``wfile`` interface.

    ``rfile`` reads the datagram; what ``handle()`` writes to ``wfile`` is
    sent back to the sender as one datagram by ``finish()`` (an empty one
    when nothing was written).
    """

    __module__ = "socketserver"

    packet: bytes
    socket: Any
    rfile: io.BytesIO
    wfile: io.BytesIO

    def setup(self) -> None:
        self.packet, self.socket = self.request
        self.rfile = io.BytesIO(self.packet)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        self.socket.sendto(self.wfile.getvalue(), self.client_address)
