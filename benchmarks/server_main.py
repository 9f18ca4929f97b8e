"""Entry point of a benchmark server process: ``python -m benchmarks.server_main``.

Started by the suite, never by hand.  It listens on loopback, writes
``READY <port> [<worker pid>...]`` to the fd given by ``--ready-fd`` and
serves until it is killed with SIGTERM.  With ``--kind latency`` it instead
measures ``asyncore.loop(0, count=1)`` in-process and writes
``RESULT <seconds per call> <calls>``.

``--impl`` picks what serves:

``ours``      asyncio-compat, installed as ``asyncore``/``asynchat``
``stdlib``    the interpreter's own asyncore/asynchat (CPython 3.11 or older)
``workers``   ours, in ``--workers`` processes (``asyncio_compat.workers``)
``selectors`` the hand-written floor (:mod:`benchmarks.other_servers`)
``asyncio``   an asyncio Protocol echo server

``--debug`` runs ours (or the workers) with debug mode on.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional

Announce = Callable[[str], None]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_main")
    parser.add_argument("--impl", required=True,
                        choices=["ours", "stdlib", "workers", "selectors", "asyncio"])
    parser.add_argument("--kind", required=True, choices=["echo", "lines", "bulk", "latency"])
    parser.add_argument("--poller", help="our backend (ours, workers)")
    parser.add_argument("--use-poll", action="store_true", help="stdlib: loop(use_poll=True)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--dispatchers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=0.5)
    parser.add_argument("--debug", action="store_true",
                        help="ours, workers: run with ASYNCIO_COMPAT_DEBUG=1 (debug mode on)")
    return parser


def _announcer(fd: int) -> Announce:
    def announce(line: str) -> None:
        os.write(fd, line.encode() + b"\n")

    return announce


def _import_asyncore(impl: str) -> None:
    """Make ``import asyncore``/``asynchat`` give ``impl``'s modules.

    Raises RuntimeError when ``stdlib`` is asked of an interpreter whose
    ``asyncore`` is not the standard library's (3.12+, or one shadowed).
    """
    if impl in ("ours", "workers"):
        import asyncio_compat

        asyncio_compat.install()
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import asynchat
        import asyncore
    stdlib = os.path.dirname(os.__file__)
    for module in (asyncore, asynchat):
        if os.path.dirname(module.__file__ or "") != stdlib:
            raise RuntimeError(f"{module.__name__} is not the standard library's: {module.__file__}")


def _loop_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    if args.impl == "stdlib":
        return {"timeout": 30.0, "use_poll": args.use_poll}
    return {"timeout": 30.0, "use_poll": True, "poller": args.poller}


def _serve_workers(args: argparse.Namespace, announce: Announce) -> None:
    from asyncio_compat.workers import WorkerPool, serve_workers

    from .asyncore_servers import HANDLERS, Listener

    handler = HANDLERS[args.kind]

    def make_server(sock: Any) -> None:
        Listener(handler, sock)

    def on_ready(pool: WorkerPool) -> None:
        announce(" ".join(["READY", str(pool.address[1])] + [str(pid) for pid in pool.pids]))  # type: ignore[index]

    serve_workers(make_server, args.workers, poller=args.poller, on_ready=on_ready)


def run(args: argparse.Namespace) -> None:
    """Serve (or measure) as ``args`` say; returns only for ``latency`` and ``workers``."""
    announce = _announcer(args.ready_fd)
    if args.impl in ("selectors", "asyncio"):
        from . import other_servers

        serve = other_servers.serve_selectors if args.impl == "selectors" else other_servers.serve_asyncio
        serve(args.kind, announce)
        return
    if args.debug:
        # before asyncio_compat is imported; worker processes inherit it
        os.environ["ASYNCIO_COMPAT_DEBUG"] = "1"
    _import_asyncore(args.impl)
    if args.impl == "workers":
        _serve_workers(args, announce)
        return
    from . import asyncore_servers

    if args.kind == "latency":
        seconds, calls = asyncore_servers.loop_latency(args.dispatchers, args.duration, _loop_kwargs(args))
        announce(f"RESULT {seconds!r} {calls}")
        return
    asyncore_servers.serve(args.kind, announce, _loop_kwargs(args))


def main(argv: Optional[List[str]] = None) -> None:
    from .processes import raise_fd_limit

    raise_fd_limit()
    run(_parser().parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
