"""``python -m benchmarks``: run the suite, print the table, write JSON, a plot and the docs' files."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pollers

from . import report
from .processes import (
    CODE_ROOT,
    BenchError,
    Implementation,
    find_python311,
    interpreter_version,
    raise_fd_limit,
)
from .scenarios import SCENARIOS, Context, Row
from .settings import DEFAULT, MIB, QUICK, Settings

RESULTS = CODE_ROOT / "benchmarks" / "results"
#: descriptors the largest idle run needs in the client: connections plus slack
_FD_SLACK = 64


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark asyncio-compat against CPython 3.11's asyncore, asyncio and a "
                    "minimal selectors loop; servers and client in separate processes on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a few seconds in all")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only these scenarios (repeat or comma-separate): {', '.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per measurement: each figure is "
                        "their median, shown with their lowest and highest (default 5; --quick: 2)")
    parser.add_argument("--bulk-in-mib", type=float, metavar="MIB",
                        help="size of the bulk-in message in MiB (default 80; --quick: 1)")
    parser.add_argument("--python311", metavar="PATH", help="CPython 3.11 for the stdlib baseline "
                        "(default: this interpreter if 3.11, else pyenv's newest 3.11)")
    parser.add_argument("--server-python", metavar="PATH", help="interpreter of the other servers "
                        "(default: the same 3.11, so that every ratio compares code, not interpreters)")
    parser.add_argument("--pollers", help="our backends to run, comma-separated (default: all available)")
    parser.add_argument("--pin", choices=["same", "split", "none"], default="same",
                        help="same: client and server share one CPU (default); split: one CPU each")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json",
                        help="where to write the raw figures")
    parser.add_argument("--plot", type=Path, default=RESULTS / "idle_scaling.png",
                        help="where to draw the idle-scaling plot")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    parser.add_argument("--docs-dir", type=Path, metavar="DIR",
                        help="also write the run for the docs into DIR: reST and CSV tables, one PNG "
                             "plot per scenario and the machine and date (docs/performance.rst "
                             "includes docs/_generated/benchmarks)")
    parser.add_argument("--debug-mode", action="store_true",
                        help="add a contender: ours on the best poller with ASYNCIO_COMPAT_DEBUG=1, "
                             "to show what debug mode costs")
    return parser


def _selected(only: Optional[List[str]]) -> List[str]:
    if not only:
        return list(SCENARIOS)
    names = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return names


def _our_pollers(spec: Optional[str]) -> List[str]:
    available = pollers.available()
    if not spec:
        return available
    names = [name.strip() for name in spec.split(",") if name.strip()]
    missing = [name for name in names if name not in available]
    if missing:
        raise SystemExit(f"poller {', '.join(missing)} not available here; available: {', '.join(available)}")
    return names


def implementations(server_python: str, python311: Optional[str], our_pollers: Sequence[str],
                    worker_counts: Sequence[int], debug_mode: bool = False) -> List[Implementation]:
    """Every contender of a run, floor first; ``debug_mode`` adds ours on the
    best poller with debug mode on."""
    found = [
        Implementation("selectors loop (floor)", "selectors", server_python, family="floor"),
        Implementation("asyncio Protocol", "asyncio", server_python, family="asyncio"),
    ]
    found += [Implementation(f"ours {name}", "ours", server_python, ("--poller", name), "ours", name)
              for name in our_pollers]
    if python311:
        found += [
            Implementation("3.11 asyncore select", "stdlib", python311, (), "stdlib", "select"),
            Implementation("3.11 asyncore poll", "stdlib", python311, ("--use-poll",), "stdlib", "poll"),
        ]
    best = our_pollers[0]
    found += [Implementation(f"ours {best}, {n} worker{'s' if n > 1 else ''}", "workers", server_python,
                             ("--poller", best, "--workers", str(n)), "workers", best, n)
              for n in worker_counts]
    if debug_mode:
        found.append(Implementation(f"ours {best}, debug mode", "ours", server_python,
                                    ("--poller", best, "--debug"), "ours", best))
    return found


def _pin(mode: str) -> Optional[int]:
    """Pin this (client) process as ``mode`` says; returns the server's CPU or None."""
    if mode == "none" or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1]
    client_cpu = cpus[-1] if mode == "same" or len(cpus) == 1 else cpus[0]
    os.sched_setaffinity(0, {client_cpu})
    return server_cpu


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _meta(args: argparse.Namespace, ctx: Context, pythons: Dict[str, str], started: float) -> Dict[str, Any]:
    return {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}, "
                   f"{os.cpu_count()} CPUs ({_cpu_model()})",
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "best_poller": ctx.best_poller,
        "pinning": _pin_text(args.pin, ctx.server_cpu),
        "interpreters": pythons,
        "settings": dataclasses.asdict(ctx.settings),
        "seconds": round(time.time() - started, 1),
        "notes": ctx.notes,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _pin_text(mode: str, server_cpu: Optional[int]) -> str:
    if server_cpu is None:
        return "not pinned"
    if mode == "same":
        return f"client and server pinned to CPU {server_cpu} (workers: unpinned)"
    return f"server pinned to CPU {server_cpu}, client to another (workers: unpinned)"


def _header(meta: Dict[str, Any]) -> str:
    pythons = "; ".join(f"{role}: {text}" for role, text in meta["interpreters"].items())
    lines = [
        f"asyncio-compat benchmarks: {meta['command'].strip()}",
        f"  {meta['date']}, {meta['machine']}",
        f"  {meta['pinning']}; {report.rounds_text(meta['settings']['rounds'])}",
        f"  {pythons}",
        f"  finished in {meta['seconds']} s",
    ]
    lines += [f"  note: {note}" for note in meta["notes"]]
    return "\n".join(lines)


def _interpreters(server_python: str, python311: Optional[str]) -> Dict[str, str]:
    found = {"client": f"Python {platform.python_version()}",
             "servers": f"Python {interpreter_version(server_python)} ({server_python})"}
    if python311 and python311 != server_python:
        found["stdlib baseline"] = f"Python {interpreter_version(python311)} ({python311})"
    return found


def _check_fd_limit(ctx: Context) -> None:
    limit = raise_fd_limit()
    needed = max(ctx.settings.idle_sizes) + _FD_SLACK
    if limit < needed:
        ctx.notes.append(f"RLIMIT_NOFILE is {limit}, below the {needed} the largest idle run needs; "
                         "raise the hard limit (ulimit -Hn) to run it")


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    names = _selected(args.only)
    settings: Settings = QUICK if args.quick else DEFAULT
    if args.rounds:
        settings = dataclasses.replace(settings, rounds=max(1, args.rounds))
    if args.bulk_in_mib:
        settings = dataclasses.replace(settings, bulk_in_size=max(16, int(args.bulk_in_mib * MIB)))
    python311 = find_python311(args.python311)
    server_python = args.server_python or python311 or sys.executable
    our_pollers = _our_pollers(args.pollers)
    try:
        pythons = _interpreters(server_python, python311)
    except BenchError as exc:
        raise SystemExit(str(exc)) from None
    contenders = implementations(server_python, python311, our_pollers, settings.worker_counts,
                                 args.debug_mode)
    ctx = Context(settings, contenders, progress=_progress, best_poller=our_pollers[0])
    if args.quick:
        ctx.notes.append("a --quick run (tiny sizes): it shows that every scenario works, "
                         "not how fast anything is")
    if not python311:
        ctx.notes.append("no CPython 3.11 found: the stdlib asyncore baseline was not run")
    _check_fd_limit(ctx)
    ctx.server_cpu = _pin(args.pin)
    started = time.time()
    rows = _run_scenarios(ctx, names)
    meta = _meta(args, ctx, pythons, started)
    _print_report(rows, meta, f"ours {our_pollers[0]}")
    report.write_json(args.json, rows, meta)
    _progress(f"raw figures written to {args.json}")
    if not args.no_plot:
        why_not = report.plot(args.plot, rows, "One active connection beside N idle ones")
        _progress(why_not or f"plot written to {args.plot}")
    if args.docs_dir:
        for message in report.write_docs(args.docs_dir, rows, meta):
            _progress(message)
    return 0


def _run_scenarios(ctx: Context, names: Sequence[str]) -> List[Row]:
    rows: List[Row] = []
    for name in names:
        _progress(f"{name}:")
        began = time.monotonic()
        rows.extend(SCENARIOS[name](ctx))
        _progress(f"{name}: {time.monotonic() - began:.1f} s")
    return rows


def _print_report(rows: Sequence[Row], meta: Dict[str, Any], ours: str) -> None:
    print(_header(meta))
    print()
    print(report.table(rows))
    verdicts = report.targets(rows, ours)
    if verdicts:
        print()
        print(report.targets_text(verdicts))
    sys.stdout.flush()


def main() -> None:
    sys.exit(run())
