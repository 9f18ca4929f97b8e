"""A Tk window that shows a download from a local server, served by Tk's own loop.

Run it from a checkout; it opens a window, so it needs a display (a desktop
session, or ``xvfb-run`` on a machine without one)::

    python3 examples/tk_idle_client.py [--size BYTES] [--close-when-done]

Without ``--close-when-done`` the window stays open after the download, and
the program exits only when you close it; with it, the window closes itself.
Without a display (or without tkinter, which Debian and Ubuntu ship apart, in
``python3-tk``) it prints why it cannot start and exits with status 2.

Everything runs in one thread, in one socket map.  A server on 127.0.0.1
(port 0: the kernel picks a free port) sends ``--size`` bytes, announced by
an 8-byte length, in slices on a timer (``asyncio_compat.call_every``), so
the progress is slow enough to watch.  A dispatcher client downloads them.
``asyncio_compat.tk.attach(root)`` lets Tk's ``mainloop()`` serve both: there
is no ``asyncore.loop()`` call and no thread.  On Linux Tk watches the
poller's epoll fd; with the select or poll backend (``ASYNCIO_COMPAT_POLLER``)
a short ``after()`` tick runs the passes instead.

When the download ends the window (and stdout) says whether the bytes match
what the server sent.  Exit status 0 when they do, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import socket
import struct
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

try:
    import tkinter
    from tkinter import ttk
except ImportError as exc:  # Debian and Ubuntu ship tkinter apart from python3
    print(f"tk_idle_client: this Python has no tkinter ({exc}); on Debian or Ubuntu: "
          "apt install python3-tk", file=sys.stderr)
    sys.exit(2)

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

import asyncio_compat.tk
from asyncio_compat import asyncore

SLICE = 32 * 1024  # bytes the server sends per tick
TICK = 0.01  # seconds between slices
HEADER = struct.Struct("!Q")  # the length of the download, before the data


def make_data(size: int) -> bytes:
    """Reproducible bytes that no compression or off-by-one would get right by luck."""
    return random.Random(size).getrandbits(8 * size).to_bytes(size, "little") if size else b""


class SliceSender(asyncore.dispatcher_with_send):
    """One download: the length, then a slice per tick; closes once all is sent."""

    def __init__(self, sock: socket.socket, socket_map: Any, data: bytes) -> None:
        super().__init__(sock, map=socket_map)
        self.data = data
        self.offset = 0
        self.finishing = False
        self.send(HEADER.pack(len(data)))
        self.timer = asyncio_compat.call_every(TICK, self.send_slice, map=socket_map, first=0)

    def send_slice(self) -> None:
        if self.out_buffer:
            return  # the client is slower than the timer: let it catch up
        piece = self.data[self.offset : self.offset + SLICE]
        self.offset += len(piece)
        self.send(piece)
        if self.offset >= len(self.data):
            self.timer.cancel()
            self.finishing = True
            self.close_when_sent()

    def handle_write(self) -> None:
        super().handle_write()
        self.close_when_sent()

    def close_when_sent(self) -> None:
        if self.finishing and not self.out_buffer:
            self.close()

    def handle_read(self) -> None:
        self.recv(4096)  # the client sends nothing; read so a hang-up is seen

    def handle_close(self) -> None:
        self.timer.cancel()
        self.close()


class Server(asyncore.dispatcher):
    """Listens on 127.0.0.1, serves one download, then stops listening."""

    def __init__(self, socket_map: Any, data: bytes) -> None:
        super().__init__(map=socket_map)
        self.data = data
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(1)
        self.port: int = self.socket.getsockname()[1]

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        SliceSender(sock, self._map, self.data)
        self.close()


class Downloader(asyncore.dispatcher_with_send):
    """Reads the length, then the data; reports progress and the end."""

    def __init__(
        self,
        socket_map: Any,
        port: int,
        on_progress: Callable[[int, int], None],
        on_done: Callable[[bytes], None],
    ) -> None:
        super().__init__(map=socket_map)
        self.on_progress = on_progress
        self.on_done = on_done
        self.buffer = bytearray()
        self.total: Optional[int] = None
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(("127.0.0.1", port))

    def handle_connect(self) -> None:
        pass

    def handle_read(self) -> None:
        data = self.recv(65536)
        if not data:
            return  # end of stream: recv() has called handle_close
        self.buffer += data
        if self.total is None and len(self.buffer) >= HEADER.size:
            (self.total,) = HEADER.unpack_from(self.buffer)
            del self.buffer[: HEADER.size]
        if self.total is not None:
            self.on_progress(len(self.buffer), self.total)

    def handle_close(self) -> None:
        self.close()
        self.on_done(bytes(self.buffer))


class Window:
    """The progress bar, the byte count and the verdict."""

    def __init__(self, root: tkinter.Tk, expected: bytes, close_when_done: bool) -> None:
        self.root = root
        self.expected = expected
        self.close_when_done = close_when_done
        self.ok = False
        self.reported: List[int] = []  # quarters already printed
        root.title("asyncio-compat: download")
        frame = ttk.Frame(root, padding=12)
        frame.pack(fill="both", expand=True)
        self.bar = ttk.Progressbar(frame, length=320, maximum=max(1, len(expected)))
        self.bar.pack(fill="x")
        self.label = ttk.Label(frame, text="connecting...", width=48)
        self.label.pack(pady=(8, 0))

    def progress(self, received: int, total: int) -> None:
        self.bar.configure(maximum=max(1, total), value=received)
        self.label.configure(text=f"received {received:,} of {total:,} bytes")
        quarter = 4 * received // total if total else 4
        if quarter and quarter not in self.reported:
            self.reported.append(quarter)
            print(f"progress: {25 * quarter}% ({received} of {total} bytes)", flush=True)

    def done(self, received: bytes) -> None:
        self.ok = hashlib.sha256(received).digest() == hashlib.sha256(self.expected).digest()
        verdict = "SHA-256 matches the data served" if self.ok else "DIFFERS from the data served"
        print(f"received {len(received)} bytes; {verdict}", flush=True)
        self.label.configure(text=f"done: {len(received):,} bytes, {verdict}")
        if self.close_when_done:
            self.root.after(100, self.root.destroy)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2_000_000, help="bytes to download")
    parser.add_argument("--close-when-done", action="store_true",
                        help="close the window at the end (by default it stays open until you close it)")
    args = parser.parse_args(argv)

    try:
        root = tkinter.Tk()
    except tkinter.TclError as exc:
        print(f"tk_idle_client: cannot open a window ({exc}).\n"
              "It needs a display: run it in a desktop session, or without one under xvfb-run:\n"
              "    xvfb-run python3 examples/tk_idle_client.py --close-when-done", file=sys.stderr)
        return 2
    data = make_data(args.size)
    socket_map = asyncore.SocketMap()
    window = Window(root, data, args.close_when_done)
    server = Server(socket_map, data)
    Downloader(socket_map, server.port, window.progress, window.done)
    attachment = asyncio_compat.tk.attach(root, socket_map)
    how = "Tk watches the poller's fd" if attachment.uses_file_handler else "an after() tick runs the passes"
    print(f"poller: {asyncio_compat.get_default_poller().name} ({how})")
    print(f"serving {len(data)} bytes on 127.0.0.1:{server.port}", flush=True)
    try:
        root.mainloop()
    finally:
        attachment.detach()  # already done if the window was destroyed
        asyncore.close_all(socket_map)
    return 0 if window.ok else 1


if __name__ == "__main__":
    sys.exit(main())
