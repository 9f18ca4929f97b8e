"""The names our drop-in classes add to the standard library's, computed live.

A subclass written for CPython may use, for its own ends, any public name
that CPython's class does not have.  For each class users subclass
(``dispatcher``, ``dispatcher_with_send``, ``async_chat``, the servers and
mix-ins, the request handlers), these tests compare its public names (of
the class and of a fresh instance) with those of CPython's class: 3.11's
asyncore and asynchat (loaded from an installed 3.11 where this interpreter
has none, through a subprocess of 3.11), this interpreter's socketserver.  Every extra name must be listed
in docs/reserved-names.csv with its reason; a subclass then defines each one
as an instance attribute and as a method, and a real exchange must still
work unless the CSV says that the name may not be reused.
"""

from __future__ import annotations

import csv
import glob
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import pytest

from asyncio_compat import asynchat, asyncore, socketserver

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
NAMES_CSV = Path(__file__).resolve().parent.parent / "docs" / "reserved-names.csv"
# what 1.0.0 reserved on the servers; a subclass must be free to use them
FORMERLY_RESERVED = ("attach", "attached", "detach", "poller")
PASSES = 50  # loop passes an exchange may take (each waits at most 20 ms): a few suffice


# -- CPython's classes -------------------------------------------------------------


# Run under CPython 3.11 itself (isolated: its own stdlib, not this checkout):
# prints, per channel class, the public names of the class and of a fresh instance.
_DUMP_311 = """
import asynchat, asyncore, json, warnings
warnings.simplefilter("ignore")
out = {}
for cls in (asyncore.dispatcher, asyncore.dispatcher_with_send, asynchat.async_chat):
    instance = cls(map={})
    out[cls.__name__] = sorted(set(dir(cls)) | set(vars(instance)))
print(json.dumps(out))
"""


def _python_311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3.11")))
    if not found:
        pytest.skip("no CPython 3.11 installed to compare asyncore/asynchat with")
    return found[-1]


def _names_311() -> Dict[str, Set[str]]:
    """CPython 3.11's public names of dispatcher, dispatcher_with_send and async_chat."""
    result = subprocess.run(
        [_python_311(), "-I", "-c", _DUMP_311], capture_output=True, text=True, timeout=60, check=True
    )
    return {cls: public(iter(names)) for cls, names in json.loads(result.stdout).items()}


def _stdlib_socketserver() -> types.ModuleType:
    return importlib.import_module("socketserver")


def public(names: Iterator[str]) -> Set[str]:
    return {name for name in names if not name.startswith("_")}


def class_and_instance_names(cls: type, make: Callable[[type], Any]) -> Set[str]:
    names = public(iter(dir(cls)))
    instance = make(cls)
    try:
        names |= public(iter(vars(instance)))
    finally:
        _dispose(instance)
    return names


def _dispose(instance: Any) -> None:
    if isinstance(instance, (socketserver.BaseServer, _stdlib_socketserver().BaseServer)):
        instance.server_close()
    elif hasattr(instance, "close"):
        instance.close()


def _make_channel(cls: type) -> Any:
    return cls(map={})


def _make_server(cls: type) -> Any:
    return cls((HOST, 0), _stdlib_socketserver().BaseRequestHandler, False)


def _make_base_server(cls: type) -> Any:
    return cls((HOST, 0), _stdlib_socketserver().BaseRequestHandler)


def _make_stream_handler(cls: type) -> Any:
    mine, peer = socket.socketpair()
    try:
        peer.close()
        return cls(mine, "peer", None)
    finally:
        mine.close()


def _make_datagram_handler(cls: type) -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return cls((b"datagram", sock), sock.getsockname(), None)


def _pairs() -> List[Tuple[str, type, type, Callable[[type], Any]]]:
    """(label, our class, the standard library's, how to make an instance) for socketserver."""
    std_ss = _stdlib_socketserver()
    pairs: List[Tuple[str, type, type, Callable[[type], Any]]] = [
        ("BaseServer", socketserver.BaseServer, std_ss.BaseServer, _make_base_server),
        ("TCPServer", socketserver.TCPServer, std_ss.TCPServer, _make_server),
        ("UDPServer", socketserver.UDPServer, std_ss.UDPServer, _make_server),
        ("ThreadingMixIn", socketserver.ThreadingMixIn, std_ss.ThreadingMixIn, lambda cls: None),
        ("BaseRequestHandler", socketserver.BaseRequestHandler, std_ss.BaseRequestHandler,
         _make_stream_handler),
        ("StreamRequestHandler", socketserver.StreamRequestHandler, std_ss.StreamRequestHandler,
         _make_stream_handler),
        ("DatagramRequestHandler", socketserver.DatagramRequestHandler, std_ss.DatagramRequestHandler,
         _make_datagram_handler),
    ]
    if hasattr(socket, "AF_UNIX"):
        pairs += [
            ("UnixStreamServer", socketserver.UnixStreamServer, std_ss.UnixStreamServer, lambda cls: None),
            ("UnixDatagramServer", socketserver.UnixDatagramServer, std_ss.UnixDatagramServer,
             lambda cls: None),
        ]
    if hasattr(os, "fork"):
        pairs.append(("ForkingMixIn", socketserver.ForkingMixIn, std_ss.ForkingMixIn, lambda cls: None))
    return pairs


def _names(cls: type, make: Callable[[type], Any]) -> Set[str]:
    if cls.__name__.endswith("MixIn") or cls.__name__.startswith("Unix"):
        return public(iter(dir(cls)))  # no instance of its own: its bases' are compared
    return class_and_instance_names(cls, make)


def compute_extras() -> Dict[str, Set[str]]:
    """Class name -> the public names ours has and CPython's has not."""
    found = {
        label: _names(ours, make) - _names(theirs, make)
        for label, ours, theirs, make in _pairs()
    }
    theirs_311 = _names_311()
    for ours in (asyncore.dispatcher, asyncore.dispatcher_with_send, asynchat.async_chat):
        label = ours.__name__
        found[label] = class_and_instance_names(ours, _make_channel) - theirs_311[label]
    return found


@pytest.fixture(scope="module")
def extras() -> Dict[str, Set[str]]:
    return compute_extras()


@pytest.fixture(scope="module")
def documented() -> Dict[Tuple[str, str], Dict[str, str]]:
    with NAMES_CSV.open(newline="") as table:
        return {(row["class"], row["name"]): row for row in csv.DictReader(table)}


def test_every_extra_name_is_documented_with_its_reason(
    extras: Dict[str, Set[str]], documented: Dict[Tuple[str, str], Dict[str, str]]
) -> None:
    missing = sorted(
        (cls, name) for cls, names in extras.items() for name in names if (cls, name) not in documented
    )
    assert missing == [], "add these to docs/reserved-names.csv with the reason"
    stale = sorted(
        key for key, row in documented.items() if applies(row) and key[1] not in extras.get(key[0], set())
    )
    assert stale == [], "docs/reserved-names.csv lists names the class no longer adds"
    for row in documented.values():
        assert row["reason"].strip() and row["reuse"].split(":")[0] in ("yes", "no")


def applies(row: Dict[str, str]) -> bool:
    """Whether a row of the CSV is an extra on this Python (``until``: the
    CPython version that added the name itself)."""
    until = row["until"].strip()
    return not until or sys.version_info[:2] < tuple(int(part) for part in until.split("."))


def test_servers_and_handlers_add_no_public_name(
    extras: Dict[str, Set[str]], documented: Dict[Tuple[str, str], Dict[str, str]]
) -> None:
    """A drop-in adds nothing to what socketserver subclasses may use, save
    BaseServer's two documented hooks (CPython documents both as what a
    subclass of BaseServer must provide) and, before 3.11, the names of
    later CPythons that the drop-in serves on every version."""
    added = {
        cls: {name for name in names if not documented[(cls, name)]["until"]}
        for cls, names in extras.items()
        if cls not in _CHANNELS
    }
    assert {cls: names for cls, names in added.items() if names} == {"BaseServer": {"fileno", "get_request"}}


# -- subclasses that use the names for themselves ----------------------------------------


class Theirs:
    """What a subclass stores under a name: nothing of ours can use it."""

    def __repr__(self) -> str:
        return "<the subclass's own object>"


def _their_method(self: Any, *args: Any, **kwargs: Any) -> str:
    return "the subclass's own method"


def with_name(base: type, name: str, as_method: bool) -> type:
    """A subclass of ``base`` using ``name`` for itself (a method, or an instance attribute)."""
    if as_method:
        return type(f"Own_{name}", (base,), {name: _their_method})

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, **kwargs)
        setattr(self, name, Theirs())

    return type(f"Own_{name}", (base,), {"__init__": init})


def _run(socket_map: Dict[int, Any], done: Callable[[], bool]) -> bool:
    for _ in range(PASSES):
        if done():
            return True
        asyncore.loop(timeout=0.02, map=socket_map, count=1, use_poll=True)
    return done()


def _drain(sock: socket.socket, got: bytearray) -> Callable[[], bool]:
    def check() -> bool:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return False
        got.extend(data)
        return b"\n" in got or not data

    return check


class EchoMixin:
    def handle_read(self: Any) -> None:
        data = self.recv(4096)
        if data:
            self.send(data)

    def handle_close(self: Any) -> None:
        self.close()


class LineChat(asynchat.async_chat):
    def __init__(self, sock: socket.socket, map: Dict[int, Any]) -> None:  # noqa: A002 (asyncore's name)
        super().__init__(sock, map=map)
        self.set_terminator(b"\n")
        self.line = bytearray()

    def collect_incoming_data(self, data: bytes) -> None:
        self.line += data

    def found_terminator(self) -> None:
        self.push(bytes(self.line) + b"\n")
        self.line.clear()


def exchange_with_channel(base: str, name: str, as_method: bool) -> bool:
    """A listener of the subclass accepts, a handler of the subclass answers one line."""
    if base == "async_chat":
        handler_cls = with_name(LineChat, name, as_method)
        listener_base: type = asyncore.dispatcher
    else:
        plain = asyncore.dispatcher if base == "dispatcher" else asyncore.dispatcher_with_send
        handler_cls = with_name(type("Echo", (EchoMixin, plain), {}), name, as_method)
        listener_base = with_name(plain, name, as_method)
    socket_map: Dict[int, Any] = asyncore.SocketMap()
    handlers: List[Any] = []

    class Listener(listener_base):  # type: ignore[valid-type,misc]
        def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
            handlers.append(handler_cls(sock, map=socket_map))

    listener = Listener(map=socket_map)
    client = None
    try:
        listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((HOST, 0))
        listener.listen(5)
        client = socket.create_connection(listener.socket.getsockname(), timeout=10)
        client.sendall(b"line\n")
        client.setblocking(False)
        got = bytearray()
        return _run(socket_map, _drain(client, got)) and bytes(got) == b"line\n"
    except Exception:  # the subclass's name broke something of ours
        return False
    finally:
        if client is not None:
            client.close()
        asyncore.close_all(socket_map, ignore_all=True)
        asyncore.loop(timeout=0, map=socket_map, count=1)  # releases the map's loop


_CHANNELS = ("dispatcher", "dispatcher_with_send", "async_chat")


def _channel_cases(extras: Dict[str, Set[str]]) -> Iterator[Tuple[str, str]]:
    for base in _CHANNELS:
        for name in sorted(extras[base]):
            yield base, name


def test_a_subclass_may_reuse_every_extra_channel_name_or_it_is_documented(
    extras: Dict[str, Set[str]], documented: Dict[Tuple[str, str], Dict[str, str]]
) -> None:
    assert exchange_with_channel("dispatcher", "a_name_nobody_has", True)  # the exchange itself works
    broken = []
    for base, name in _channel_cases(extras):
        for as_method in (False, True):
            if not exchange_with_channel(base, name, as_method):
                broken.append((base, name, "method" if as_method else "attribute"))
    undocumented = [case for case in broken if not documented[case[:2]]["reuse"].startswith("no")]
    assert undocumented == [], "a subclass using these names breaks: fix, or document in reserved-names.csv"


class LineHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


def serve_with_name(server_base: type, name: str, as_method: bool, handler: type = LineHandler) -> None:
    """handle_request(), serve_forever()/shutdown(), attach/loop and server_close()
    on a subclass of ``server_base`` that uses ``name`` for itself."""
    cls = with_name(server_base, name, as_method)
    server = cls((HOST, 0), handler)
    try:
        with socket.create_connection(server.server_address, timeout=10) as client:
            client.sendall(b"one\n")
            server.handle_request()
            assert client.recv(100) == b"one\n"
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        try:
            with socket.create_connection(server.server_address, timeout=10) as client:
                client.sendall(b"two\n")
                assert client.makefile("rb").readline() == b"two\n"
        finally:
            server.shutdown()
            thread.join()
        socket_map: Dict[int, Any] = asyncore.SocketMap()
        socketserver.attach(server, socket_map)
        assert socketserver.is_attached(server)
        socketserver.detach(server)
        assert not socket_map and not socketserver.is_attached(server)
        socketserver.attach(server, socket_map)
    finally:
        server.server_close()
    assert not socketserver.is_attached(server)
    if name in ("attached",) and not as_method:
        assert isinstance(getattr(server, name), Theirs)  # left alone


@pytest.mark.parametrize("as_method", [False, True], ids=["attribute", "method"])
def test_a_server_subclass_may_use_any_name_cpython_leaves_free(
    extras: Dict[str, Set[str]], as_method: bool
) -> None:
    names = set(FORMERLY_RESERVED) | extras["TCPServer"] | extras["ThreadingMixIn"]
    for name in sorted(names):
        serve_with_name(socketserver.TCPServer, name, as_method)
        serve_with_name(socketserver.ThreadingTCPServer, name, as_method)


@pytest.mark.parametrize("as_method", [False, True], ids=["attribute", "method"])
def test_a_handler_subclass_may_use_any_name_cpython_leaves_free(
    extras: Dict[str, Set[str]], as_method: bool
) -> None:
    names = extras["StreamRequestHandler"] | extras["BaseRequestHandler"] | {"a_name_nobody_has"}
    for name in sorted(names):
        handler = with_name(LineHandler, name, as_method)
        serve_with_name(socketserver.TCPServer, "a_name_nobody_has", False, handler)


def test_the_comparison_sees_a_name_added_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extras are computed, not listed: a name added to a class shows up."""
    std = _stdlib_socketserver()
    monkeypatch.setattr(socketserver.TCPServer, "brand_new_method", _their_method, raising=False)
    ours = _names(socketserver.TCPServer, _make_server)
    assert "brand_new_method" in ours - _names(std.TCPServer, _make_server)
