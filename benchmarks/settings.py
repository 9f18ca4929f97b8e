"""Sizes and durations of a run: the default one and ``--quick``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Tuple

MIB = 1 << 20


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def scaled_worker_counts(cores: int) -> Tuple[int, ...]:
    """Worker counts for the ``workers`` scenario: 1, 2, 4, ... up to half of ``cores``.

    The other half is left to the client processes, which need as much CPU
    as the server; with fewer than 4 cores only ``(1,)`` remains.
    """
    counts = [1]
    while counts[-1] * 2 <= cores // 2:
        counts.append(counts[-1] * 2)
    return tuple(counts)


def _default_worker_counts() -> Tuple[int, ...]:
    return scaled_worker_counts(usable_cores())


@dataclass(frozen=True)
class Settings:
    """Every bound of a run: each measurement stops at its duration or count."""

    #: interleaved rounds; each figure is their median, shown with their lowest and highest
    rounds: int = 5
    echo_connections: int = 100
    echo_duration: float = 1.0
    echo_max_messages: int = 1_000_000
    idle_sizes: Tuple[int, ...] = (100, 1_000, 10_000)
    idle_duration: float = 0.3  #: one window; a round keeps the median of ``idle_windows``
    idle_windows: int = 1
    idle_max_round_trips: int = 100_000
    line_count: int = 500_000
    line_size: int = 100
    bulk_size: int = 100 * MIB  #: bulk out: one push() of this many bytes
    bulk_in_size: int = 80 * MIB  #: bulk in: one sendall() of this many bytes, CRLF included
    latency_dispatchers: int = 1_000
    latency_duration: float = 0.3
    #: workers scenario: 1, 2, 4, ... workers, up to half the cores (see scaled_worker_counts)
    worker_counts: Tuple[int, ...] = field(default_factory=_default_worker_counts)


DEFAULT = Settings()

#: a run of seconds that exercises every code path (the smoke test uses it)
QUICK = Settings(
    rounds=2,
    echo_connections=10,
    echo_duration=0.1,
    echo_max_messages=20_000,
    idle_sizes=(10, 50),
    idle_duration=0.1,
    idle_windows=1,
    idle_max_round_trips=5_000,
    line_count=10_000,
    bulk_size=1 * MIB,
    bulk_in_size=1 * MIB,
    latency_dispatchers=100,
    latency_duration=0.02,
)
