"""The measurements: each runs its implementations and returns table rows.

A failure (a server that dies, refuses 10,000 connections, or echoes a
wrong byte) becomes a row with an error instead of a number; the run goes on.
"""

from __future__ import annotations

import os
import socket
import zlib
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Set, TypeVar

from . import clients
from .clients import Window
from .processes import BenchError, Implementation, ServerProcess
from .protocol import expected_summary, lines_payload, pattern
from .settings import MIB, Settings

T = TypeVar("T")


@dataclass
class Row:
    """One figure of the table."""

    scenario: str  #: echo, idle, memory, lines, bulk in, bulk out, latency, workers
    case: str  #: e.g. "100 conns x 64 B"
    label: str  #: implementation
    family: str  #: ours, stdlib, floor, asyncio, workers
    unit: str
    value: Optional[float] = None
    per_cpu: Optional[float] = None  #: per server CPU-second, where it applies
    basis: str = "value"  #: the figure ratios compare: "value" or "per_cpu"
    higher_is_better: bool = True
    error: str = ""
    x: Optional[int] = None  #: idle connections (for the plot)

    def compared(self) -> Optional[float]:
        return self.per_cpu if self.basis == "per_cpu" else self.value


@dataclass
class Context:
    """What every scenario needs: the bounds, the contenders and the CPUs."""

    settings: Settings
    implementations: List[Implementation]
    server_cpu: Optional[int] = None
    progress: Callable[[str], None] = print
    best_poller: str = "epoll"
    notes: List[str] = field(default_factory=list)

    def pick(self, families: Sequence[str], best_only: bool = False) -> List[Implementation]:
        """Implementations of ``families``; ``best_only`` keeps only our best poller."""
        chosen = [impl for impl in self.implementations if impl.family in families]
        if best_only:
            chosen = [i for i in chosen if i.family != "ours" or i.poller == self.best_poller]
        return chosen


def _failed(scenario: str, case: str, impl: Implementation, unit: str, error: str, **kw: object) -> Row:
    return Row(scenario, case, impl.label, impl.family, unit, error=error, **kw)  # type: ignore[arg-type]


def _with_server(
    ctx: Context, impl: Implementation, kind: str, body: Callable[[ServerProcess], T],
    args: Sequence[str] = (), pin: bool = True,
) -> T:
    """Run ``body`` against a fresh server; a server crash adds its last words to the error."""
    with ServerProcess(impl, kind, cpu=ctx.server_cpu if pin else None, args=args) as server:
        try:
            return body(server)
        except (BenchError, OSError) as exc:
            raise BenchError(_explained(exc, server)) from None


def _explained(exc: Exception, server: ServerProcess, limit: int = 160) -> str:
    """The error, with the server's last words when it said anything."""
    said = server.log_tail(1)
    text = f"{exc} (server: {said})" if said and said != "(no output)" else str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _best_rounds(
    ctx: Context, impls: List[Implementation], measure: Callable[[Implementation], Window],
    key: Callable[[Window], float],
) -> Dict[str, object]:
    """Run ``measure`` for every implementation, round after round (interleaved).

    Returns the best window per label, or the error text of its failure.
    """
    best: Dict[str, object] = {}
    for round_number in range(ctx.settings.rounds):
        for impl in impls:
            if isinstance(best.get(impl.label), str):
                continue  # failed once: it will fail again
            ctx.progress(f"  {impl.label}: round {round_number + 1}/{ctx.settings.rounds}")
            try:
                window = measure(impl)
            except BenchError as exc:
                best[impl.label] = str(exc)
                continue
            previous = best.get(impl.label)
            if not isinstance(previous, Window) or key(window) > key(previous):
                best[impl.label] = window
    return best


def _by_cpu(window: Window) -> float:
    return window.per_cpu if window.per_cpu is not None else window.rate


# -- echo -------------------------------------------------------------------------------


def _echo_rows(
    ctx: Context, scenario: str, case: str, impls: List[Implementation], pin: bool,
) -> List[Row]:
    s = ctx.settings

    def measure(impl: Implementation) -> Window:
        def body(server: ServerProcess) -> Window:
            load = clients.EchoLoad(server.address, s.echo_connections)
            try:
                return load.run(s.echo_duration, s.echo_max_messages, server.cpu_time)
            finally:
                load.close()

        return _with_server(ctx, impl, "echo", body, pin=pin)

    best = _best_rounds(ctx, impls, measure, _by_cpu)
    return [_window_row(scenario, case, impl, best[impl.label], "msg/s", 1.0) for impl in impls]


def _window_row(
    scenario: str, case: str, impl: Implementation, outcome: object, unit: str, scale: float,
    basis: str = "per_cpu",
) -> Row:
    """A row from a window (its count divided by ``scale``) or from an error text."""
    if not isinstance(outcome, Window):
        return _failed(scenario, case, impl, unit, str(outcome), basis=basis)
    per_cpu = outcome.per_cpu
    return Row(
        scenario, case, impl.label, impl.family, unit, value=outcome.rate / scale,
        per_cpu=None if per_cpu is None else per_cpu / scale, basis=basis,
    )


def run_echo(ctx: Context) -> List[Row]:
    """Echo: N connections, one 64-byte message in flight on each."""
    case = f"{ctx.settings.echo_connections} conns x 64 B"
    impls = ctx.pick(["floor", "asyncio", "ours", "stdlib"])
    return _echo_rows(ctx, "echo", case, impls, pin=True)


def run_workers(ctx: Context) -> List[Row]:
    """Echo against 1, 2, 4, ... worker processes, from client processes on the other cores.

    Unpinned: the workers and the clients need the cores.  msg/s and the
    ratio to one worker are reported; with fewer than 4 cores there is no
    core for a second worker beside the clients, and a note says that
    scaling cannot be shown instead of giving a ratio.
    """
    impls = ctx.pick(["workers"])
    cores = os.cpu_count() or 1  # not this process's affinity: it is pinned to one CPU
    clients_count = max(1, cores - max((impl.workers for impl in impls), default=1))
    case = f"{ctx.settings.echo_connections} conns x 64 B, {clients_count} client process(es), unpinned"
    rows = _unpinned(lambda: _worker_rows(ctx, impls, case, clients_count))
    ctx.notes.append(_scaling_note(rows, cores))
    return rows


def _all_cpus() -> Set[int]:
    return set(range(os.cpu_count() or 1))


def _unpinned(body: Callable[[], T]) -> T:
    """Run ``body`` with this process (and the client processes it forks) on every CPU."""
    if not hasattr(os, "sched_setaffinity"):
        return body()
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, _all_cpus())
    try:
        return body()
    finally:
        os.sched_setaffinity(0, own)


def _worker_rows(ctx: Context, impls: List[Implementation], case: str, processes: int) -> List[Row]:
    s = ctx.settings

    def measure(impl: Implementation) -> Window:
        def body(server: ServerProcess) -> Window:
            return clients.echo_load_processes(server.address, s.echo_connections, processes,
                                               s.echo_duration, s.echo_max_messages, server.cpu_time)

        return _with_server(ctx, impl, "echo", body, pin=False)

    best = _best_rounds(ctx, impls, measure, lambda window: window.rate)
    return [_window_row("workers", case, impl, best[impl.label], "msg/s", 1.0, "value") for impl in impls]


def _scaling_note(rows: List[Row], cores: int) -> str:
    """What the workers rows show: the ratios to one worker, or why there are none."""
    if cores < 4:
        return (f"workers: this machine has {cores} core(s); the client processes need about as much "
                "CPU as the server, so no core is left for a second worker and scaling cannot be "
                "shown here (only the 1-worker figure is given)")
    one = rows[0].value if rows and not rows[0].error else None
    if not one:
        return "workers: the 1-worker run failed, so no ratio to it can be given"
    ratios = [f"{row.label.split(', ')[-1]} {row.value / one:.2f}x"
              for row in rows[1:] if row.value is not None]
    return f"workers ({cores} cores): msg/s relative to 1 worker: " + ", ".join(ratios)


# -- idle scaling and memory ----------------------------------------------------------------


def _kind_for_idle(impl: Implementation) -> str:
    # the asyncore contenders serve async_chat channels; the others echo
    return "lines" if impl.family in ("ours", "stdlib") else "echo"


def run_idle(ctx: Context) -> List[Row]:
    """One ping-pong connection beside 100, 1,000, 10,000 idle ones; peak RSS at the end."""
    rows: List[Row] = []
    for impl in ctx.pick(["floor", "asyncio", "ours", "stdlib"]):
        ctx.progress(f"  {impl.label}")
        try:
            rows.extend(_with_server(ctx, impl, _kind_for_idle(impl), partial(_idle_steps, ctx, impl)))
        except BenchError as exc:
            rows.append(_failed("idle", "setup", impl, "round trips/s", str(exc)))
    return rows


def _idle_steps(ctx: Context, impl: Implementation, server: ServerProcess) -> List[Row]:
    rows: List[Row] = []
    idle: List[socket.socket] = []
    active = clients.connect(server.address)
    try:
        for size in ctx.settings.idle_sizes:
            row = _idle_step(ctx, impl, server, active, idle, size)
            rows.append(row)
            if row.error:
                break
        if not rows[-1].error:
            server.stop()  # first: TIME_WAIT then lands on the server's side
            rows.append(_memory_row(impl, server, ctx.settings.idle_sizes[-1]))
    finally:
        server.stop()
        active.close()
        for sock in idle:
            sock.close()
    return rows


def _idle_step(
    ctx: Context, impl: Implementation, server: ServerProcess, active: socket.socket,
    idle: List[socket.socket], size: int,
) -> Row:
    s = ctx.settings
    case = f"{size:,} idle"
    try:
        clients.open_idle(server.address, size - len(idle), idle)
        windows = [
            clients.ping_pong(active, s.idle_duration, s.idle_max_round_trips, server.cpu_time)
            for _ in range(s.idle_windows)
        ]
    except (BenchError, OSError) as exc:
        return _failed("idle", case, impl, "round trips/s", _explained(exc, server), basis="value", x=size)
    row = _window_row("idle", case, impl, max(windows, key=lambda w: w.rate), "round trips/s", 1.0, "value")
    row.x = size
    return row


def _memory_row(impl: Implementation, server: ServerProcess, size: int) -> Row:
    case = f"{size:,} idle"
    if server.peak_rss is None:
        return _failed("memory", case, impl, "MiB peak RSS", "ru_maxrss unavailable", higher_is_better=False)
    return Row("memory", case, impl.label, impl.family, "MiB peak RSS",
               value=server.peak_rss / MIB, higher_is_better=False)


# -- asynchat throughput ---------------------------------------------------------------------


def run_lines(ctx: Context) -> List[Row]:
    """Many short lines, each handed to found_terminator (the floor: a linear splitter)."""
    s = ctx.settings
    payload = lines_payload(s.line_count, s.line_size)
    expected = expected_summary(payload.replace(b"\n", b""), s.line_count)
    case = f"{s.line_count:,} lines x {s.line_size} B"
    # every backend of ours: poll and select are held against 3.11 on them
    impls = ctx.pick(["floor", "ours", "stdlib"])

    def measure(impl: Implementation) -> Window:
        return _with_server(ctx, impl, "lines", partial(_summarised, payload, expected))

    best = _best_rounds(ctx, impls, measure, _by_cpu)
    bytes_per_line = float(s.line_size)
    return [_window_row("lines", case, impl, best[impl.label], "lines/s", bytes_per_line) for impl in impls]


def _summarised(payload: bytes, expected: bytes, server: ServerProcess) -> Window:
    return clients.send_and_summarise(server.address, payload, expected, server.cpu_time)


def run_bulk(ctx: Context) -> List[Row]:
    """One message of ``bulk_size`` bytes in, and one ``push()`` of that size out.

    Besides the rates, each server's peak RSS (the highest over the rounds).
    """
    s = ctx.settings
    body = pattern(s.bulk_size)
    expected = b"1 %d\n" % zlib.crc32(body)
    payload = body + b"\n"
    impls = ctx.pick(["ours", "stdlib"])  # every backend, as in run_lines
    size_text = f"{s.bulk_size // MIB} MiB"
    peaks: Dict[str, Dict[str, int]] = {"bulk in": {}, "bulk out": {}}

    def inbound(impl: Implementation) -> Window:
        return _peak_noted(ctx, impl, partial(_summarised, payload, expected), peaks["bulk in"])

    def outbound(impl: Implementation) -> Window:
        def body(srv: ServerProcess) -> Window:
            return clients.receive_push(srv.address, s.bulk_size, srv.cpu_time)

        return _peak_noted(ctx, impl, body, peaks["bulk out"])

    rows = []
    for scenario, measure in (("bulk in", inbound), ("bulk out", outbound)):
        best = _best_rounds(ctx, impls, measure, _by_cpu)
        case = f"one {size_text} message" if scenario == "bulk in" else f"push() of {size_text}"
        rows += [_window_row(scenario, case, impl, best[impl.label], "MiB/s", MIB) for impl in impls]
        rows += [_peak_row(f"{scenario}, {case}", impl, peaks[scenario].get(impl.label)) for impl in impls]
    return rows


def _peak_noted(
    ctx: Context, impl: Implementation, body: Callable[[ServerProcess], Window], peaks: Dict[str, int],
) -> Window:
    """Run ``body`` against a ``lines`` server; keep the highest peak RSS per label in ``peaks``."""
    servers: List[ServerProcess] = []

    def noting(server: ServerProcess) -> Window:
        servers.append(server)
        return body(server)

    window = _with_server(ctx, impl, "lines", noting)
    rss = servers[0].peak_rss  # known now: the server has been stopped
    if rss is not None:
        peaks[impl.label] = max(rss, peaks.get(impl.label, 0))
    return window


def _peak_row(case: str, impl: Implementation, rss: Optional[int]) -> Row:
    if rss is None:
        return _failed("bulk memory", case, impl, "MiB peak RSS", "no peak RSS", higher_is_better=False)
    return Row("bulk memory", case, impl.label, impl.family, "MiB peak RSS",
               value=rss / MIB, higher_is_better=False)


# -- loop(0, count=1) latency -------------------------------------------------------------------


def run_latency(ctx: Context) -> List[Row]:
    """Cost of one ``loop(0, count=1)`` call beside idle dispatchers, in microseconds."""
    s = ctx.settings
    case = f"loop(0, count=1), {s.latency_dispatchers:,} idle"
    args = ["--dispatchers", str(s.latency_dispatchers), "--duration", str(s.latency_duration)]
    rows = []
    for impl in ctx.pick(["ours", "stdlib"]):
        ctx.progress(f"  {impl.label}")
        try:
            best = min(_latency_once(ctx, impl, args) for _ in range(s.rounds))
        except BenchError as exc:
            rows.append(_failed("latency", case, impl, "us/call", str(exc), higher_is_better=False))
            continue
        rows.append(Row("latency", case, impl.label, impl.family, "us/call",
                        value=best * 1e6, higher_is_better=False))
    return rows


def _latency_once(ctx: Context, impl: Implementation, args: Sequence[str]) -> float:
    def body(server: ServerProcess) -> float:
        if not server.result:
            raise BenchError("no result")
        return float(server.result[0])

    return _with_server(ctx, impl, "latency", body, args=args)


SCENARIOS: Dict[str, Callable[[Context], List[Row]]] = {
    "echo": run_echo,
    "idle": run_idle,
    "lines": run_lines,
    "bulk": run_bulk,
    "latency": run_latency,
    "workers": run_workers,
}


def first_error(rows: Sequence[Row]) -> Optional[str]:
    """The first error among ``rows`` (for a caller that wants a quick verdict)."""
    return next((row.error for row in rows if row.error), None)
