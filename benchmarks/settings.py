"""Sizes and durations of a run: the default one and ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

MIB = 1 << 20


@dataclass(frozen=True)
class Settings:
    """Every bound of a run: each measurement stops at its duration or count."""

    rounds: int = 3  #: repetitions; the best one is kept (the VM is shared and noisy)
    echo_connections: int = 100
    echo_duration: float = 1.0
    echo_max_messages: int = 1_000_000
    idle_sizes: Tuple[int, ...] = (100, 1_000, 10_000)
    idle_duration: float = 0.3  #: one window; the best of ``idle_windows`` is kept
    idle_windows: int = 5
    idle_max_round_trips: int = 100_000
    line_count: int = 500_000
    line_size: int = 100
    bulk_size: int = 100 * MIB
    latency_dispatchers: int = 1_000
    latency_duration: float = 0.3
    worker_counts: Tuple[int, ...] = (1, 2)


DEFAULT = Settings()

#: a run of seconds that exercises every code path (the smoke test uses it)
QUICK = Settings(
    rounds=1,
    echo_connections=10,
    echo_duration=0.1,
    echo_max_messages=20_000,
    idle_sizes=(10, 50),
    idle_duration=0.1,
    idle_windows=1,
    idle_max_round_trips=5_000,
    line_count=10_000,
    bulk_size=1 * MIB,
    latency_dispatchers=100,
    latency_duration=0.02,
)
