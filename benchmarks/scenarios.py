"""The measurements: each runs its implementations and returns table rows.

A failure (a server that dies, refuses 10,000 connections, or echoes a
wrong byte) becomes a row with an error instead of a number; the run goes on.
"""

from __future__ import annotations

import os
import re
import socket
import zlib
from dataclasses import dataclass, field
from functools import partial
from statistics import median
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar, Union

from . import clients
from .clients import Window
from .processes import BenchError, Implementation, ServerProcess
from .protocol import expected_summary, lines_payload, random_payload
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
    #: each round's result and figure per server CPU-second, in the order of
    #: the rounds; ``value`` and ``per_cpu`` are their medians
    round_values: List[float] = field(default_factory=list)
    round_per_cpu: List[float] = field(default_factory=list)

    def compared(self) -> Optional[float]:
        return self.per_cpu if self.basis == "per_cpu" else self.value

    def samples(self) -> List[float]:
        """The compared figure of each round (empty for a failed row)."""
        if self.error:
            return []
        return self.round_per_cpu if self.basis == "per_cpu" else self.round_values

    def spread(self) -> Optional[Tuple[float, float]]:
        """``(lowest, highest)`` compared figure over the rounds, or None without rounds."""
        samples = self.samples()
        return (min(samples), max(samples)) if samples else None


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


def _explained(exc: Exception, server: ServerProcess, limit: int = 300) -> str:
    """The error, with the server's last words when it said anything."""
    said = last_words(server.log_tail(1))
    text = f"{exc} (server: {said})" if said and said != "(no output)" else str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: asyncore's one-line report of an exception in a channel: the channel's
#: repr, then ``(<class 'Type'>:message [file|function|line] ...)``
_COMPACT_TRACEBACK = re.compile(
    r"uncaptured python exception.*\(<class '(?P<type>[\w.]+)'>:(?P<message>.*?)"
    r"(?: \[[^\[\]]*\|[^\[\]]*\])*\)$"
)


def last_words(line: str) -> str:
    """A server's last line, reduced to ``Type: message`` when it is asyncore's
    report of an exception in a channel (the reason, not the channel's repr)."""
    found = _COMPACT_TRACEBACK.search(line)
    if found is None:
        return line
    kind = found.group("type").rsplit(".", 1)[-1]
    return f"{kind}: {found.group('message').strip()}"


Outcome = Union[List[Window], str]  #: a window per round, or why it failed


def interleaved_rounds(
    ctx: Context, impls: List[Implementation], measure: Callable[[Implementation], Window],
) -> Dict[str, Outcome]:
    """Run ``measure`` for every implementation, round after round.

    The implementations take turns within each round (interleaved), so that
    a burst of foreign load or a change of the machine's state hits them all.
    Returns every round's window per label, or the error text of its failure.
    """
    found: Dict[str, Outcome] = {impl.label: [] for impl in impls}
    for round_number in range(ctx.settings.rounds):
        for impl in impls:
            windows = found[impl.label]
            if isinstance(windows, str):
                continue  # failed once: it will fail again
            ctx.progress(f"  {impl.label}: round {round_number + 1}/{ctx.settings.rounds}")
            try:
                windows.append(measure(impl))
            except BenchError as exc:
                found[impl.label] = str(exc)
    return found


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

    found = interleaved_rounds(ctx, impls, measure)
    return [window_row(scenario, case, impl, found[impl.label], "msg/s", 1.0) for impl in impls]


def window_row(
    scenario: str, case: str, impl: Implementation, outcome: Outcome, unit: str, scale: float,
    basis: str = "per_cpu",
) -> Row:
    """A row from the rounds' windows (counts divided by ``scale``) or from an error text.

    The figures are the medians of the rounds, whose own figures the row
    keeps.  Without a CPU figure in every round, the
    result itself is compared.
    """
    if isinstance(outcome, str) or not outcome:
        return _failed(scenario, case, impl, unit, str(outcome) or "no round ran", basis=basis)
    rates = [window.rate / scale for window in outcome]
    per_cpus = [window.per_cpu / scale for window in outcome if window.per_cpu is not None]
    if len(per_cpus) < len(rates):
        per_cpus = []
        basis = "value"
    return Row(
        scenario, case, impl.label, impl.family, unit, value=median(rates),
        per_cpu=median(per_cpus) if per_cpus else None, basis=basis, round_values=rates,
        round_per_cpu=per_cpus,
    )


def _median_row(
    scenario: str, case: str, impl: Implementation, values: List[float], unit: str,
    higher_is_better: bool = True,
) -> Row:
    """A row whose figure is the median of ``values`` (one per round)."""
    return Row(scenario, case, impl.label, impl.family, unit, value=median(values),
               higher_is_better=higher_is_better, round_values=list(values))


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

    found = interleaved_rounds(ctx, impls, measure)
    return [window_row("workers", case, impl, found[impl.label], "msg/s", 1.0, "value") for impl in impls]


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
    """One ping-pong connection beside 100, 1,000, 10,000 idle ones; peak RSS at the end.

    Each round starts a fresh server per implementation and steps through the
    sizes; an implementation that fails at a size is, in later rounds, only
    run at the sizes below it.
    """
    impls = ctx.pick(["floor", "asyncio", "ours", "stdlib"])
    progress = {impl.label: _IdleRounds() for impl in impls}
    for round_number in range(ctx.settings.rounds):
        for impl in impls:
            record = progress[impl.label]
            if record.setup_error:
                continue
            ctx.progress(f"  {impl.label}: round {round_number + 1}/{ctx.settings.rounds}")
            try:
                _with_server(ctx, impl, _kind_for_idle(impl), partial(_idle_round, ctx, record))
            except BenchError as exc:
                record.setup_error = str(exc)
    rows: List[Row] = []
    for impl in impls:
        rows.extend(progress[impl.label].rows(impl, ctx.settings.idle_sizes))
    return rows


@dataclass
class _IdleRounds:
    """What the rounds of one implementation gave in the ``idle`` scenario."""

    windows: Dict[int, List[Window]] = field(default_factory=dict)  #: per size, one per round
    failed_at: Optional[int] = None  #: the size that failed, and why
    error: str = ""
    setup_error: str = ""
    peaks: List[int] = field(default_factory=list)  #: bytes, one per round that reached the top

    def sizes(self, sizes: Sequence[int]) -> List[int]:
        """The sizes still to measure: those below a failed one."""
        return [size for size in sizes if self.failed_at is None or size < self.failed_at]

    def rows(self, impl: Implementation, sizes: Sequence[int]) -> List[Row]:
        if self.setup_error and not self.windows:
            return [_failed("idle", "setup", impl, "round trips/s", self.setup_error)]
        found = []
        for size in sizes:
            case = f"{size:,} idle"
            if size == self.failed_at:
                found.append(_failed("idle", case, impl, "round trips/s", self.error, basis="value", x=size))
                break
            if size in self.windows:
                row = window_row("idle", case, impl, self.windows[size], "round trips/s", 1.0, "value")
                row.x = size
                found.append(row)
        if self.failed_at is None and self.peaks:
            found.append(_memory_row(impl, self.peaks, sizes[-1]))
        return found


def _idle_round(ctx: Context, record: _IdleRounds, server: ServerProcess) -> None:
    idle: List[socket.socket] = []
    active = clients.connect(server.address)
    try:
        sizes = record.sizes(ctx.settings.idle_sizes)
        for size in sizes:
            outcome = _idle_window(ctx, server, active, idle, size)
            if isinstance(outcome, str):
                record.failed_at, record.error = size, outcome
                return
            record.windows.setdefault(size, []).append(outcome)
        if sizes and sizes[-1] == ctx.settings.idle_sizes[-1]:
            server.stop()  # first: TIME_WAIT then lands on the server's side
            if server.peak_rss is not None:
                record.peaks.append(server.peak_rss)
    finally:
        server.stop()
        active.close()
        for sock in idle:
            sock.close()


def _idle_window(
    ctx: Context, server: ServerProcess, active: socket.socket, idle: List[socket.socket], size: int,
) -> Union[Window, str]:
    """The median of ``idle_windows`` ping-pong windows beside ``size`` idle
    connections, or why it failed."""
    s = ctx.settings
    try:
        clients.open_idle(server.address, size - len(idle), idle)
        windows = [
            clients.ping_pong(active, s.idle_duration, s.idle_max_round_trips, server.cpu_time)
            for _ in range(s.idle_windows)
        ]
    except (BenchError, OSError) as exc:
        return _explained(exc, server)
    return sorted(windows, key=lambda w: w.rate)[len(windows) // 2]


def _memory_row(impl: Implementation, peaks: List[int], size: int) -> Row:
    return _median_row("memory", f"{size:,} idle", impl, [rss / MIB for rss in peaks], "MiB peak RSS",
                       higher_is_better=False)


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

    found = interleaved_rounds(ctx, impls, measure)
    bytes_per_line = float(s.line_size)  # the windows count bytes
    return [window_row("lines", case, impl, found[impl.label], "lines/s", bytes_per_line) for impl in impls]


def _summarised(payload: bytes, expected: bytes, server: ServerProcess) -> Window:
    return clients.send_and_summarise(server.address, payload, expected, server.cpu_time)


def run_bulk(ctx: Context) -> List[Row]:
    """One large message in, and one ``push()`` of ``bulk_size`` bytes out.

    ``bulk in`` is one ``sendall()`` of ``bulk_in_size`` bytes ending in
    CRLF, to an ``async_chat`` that appends each piece to a list and joins
    them at the terminator (:class:`benchmarks.asyncore_servers.BulkHandler`).
    Besides the rates, each server's peak RSS (the median over the rounds).
    """
    s = ctx.settings
    message = random_payload(s.bulk_in_size - 2)
    message_crc = zlib.crc32(message)
    payload = message + b"\r\n"
    del message  # one copy of it in memory is enough
    impls = ctx.pick(["ours", "stdlib"])  # every backend, as in run_lines
    peaks: Dict[str, Dict[str, List[int]]] = {"bulk in": {}, "bulk out": {}}

    def inbound(impl: Implementation) -> Window:
        def body(srv: ServerProcess) -> Window:
            return clients.send_bulk(srv.address, payload, message_crc, srv.cpu_time)

        return _peak_noted(ctx, impl, "bulk", body, peaks["bulk in"])

    def outbound(impl: Implementation) -> Window:
        def body(srv: ServerProcess) -> Window:
            return clients.receive_push(srv.address, s.bulk_size, srv.cpu_time)

        return _peak_noted(ctx, impl, "lines", body, peaks["bulk out"])

    cases = {"bulk in": f"one sendall() of {_mib(s.bulk_in_size)}, CRLF-terminated",
             "bulk out": f"push() of {_mib(s.bulk_size)}"}
    rows = []
    for scenario, measure in (("bulk in", inbound), ("bulk out", outbound)):
        found = interleaved_rounds(ctx, impls, measure)
        case = cases[scenario]
        rows += [window_row(scenario, case, impl, found[impl.label], "MiB/s", MIB) for impl in impls]
        rows += [_peak_row(f"{scenario}, {case}", impl, peaks[scenario].get(impl.label, []))
                 for impl in impls]
    return rows


def _mib(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size / MIB:.1f} MiB"


def _peak_noted(
    ctx: Context, impl: Implementation, kind: str, body: Callable[[ServerProcess], Window],
    peaks: Dict[str, List[int]],
) -> Window:
    """Run ``body`` against a ``kind`` server; add its peak RSS to ``peaks[label]``."""
    servers: List[ServerProcess] = []

    def noting(server: ServerProcess) -> Window:
        servers.append(server)
        return body(server)

    window = _with_server(ctx, impl, kind, noting)
    rss = servers[0].peak_rss  # known now: the server has been stopped
    if rss is not None:
        peaks.setdefault(impl.label, []).append(rss)
    return window


def _peak_row(case: str, impl: Implementation, peaks: List[int]) -> Row:
    if not peaks:
        return _failed("bulk memory", case, impl, "MiB peak RSS", "no peak RSS", higher_is_better=False)
    return _median_row("bulk memory", case, impl, [rss / MIB for rss in peaks], "MiB peak RSS",
                       higher_is_better=False)


# -- loop(0, count=1) latency -------------------------------------------------------------------


def run_latency(ctx: Context) -> List[Row]:
    """Cost of one ``loop(0, count=1)`` call beside idle dispatchers, in microseconds."""
    s = ctx.settings
    case = f"loop(0, count=1), {s.latency_dispatchers:,} idle"
    args = ["--dispatchers", str(s.latency_dispatchers), "--duration", str(s.latency_duration)]
    impls = ctx.pick(["ours", "stdlib"])
    found: Dict[str, Union[List[float], str]] = {impl.label: [] for impl in impls}
    for round_number in range(s.rounds):
        for impl in impls:
            seconds = found[impl.label]
            if isinstance(seconds, str):
                continue
            ctx.progress(f"  {impl.label}: round {round_number + 1}/{s.rounds}")
            try:
                seconds.append(_latency_once(ctx, impl, args))
            except BenchError as exc:
                found[impl.label] = str(exc)
    rows = []
    for impl in impls:
        seconds = found[impl.label]
        if isinstance(seconds, str) or not seconds:
            rows.append(_failed("latency", case, impl, "us/call", str(seconds) or "no round ran",
                                higher_is_better=False))
            continue
        rows.append(_median_row("latency", case, impl, [value * 1e6 for value in seconds], "us/call",
                                higher_is_better=False))
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
