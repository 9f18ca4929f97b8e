"""The ``workers`` benchmark scenario: worker counts scaled to the cores, the
echo load from several client processes, and an honest note on 2 cores.

No figure is asserted (speed is not a unit-test matter); what is asserted is
that the scenario runs tiny end to end and says what its figures can show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import clients  # noqa: E402
from benchmarks.processes import Implementation, ServerProcess  # noqa: E402
from benchmarks.scenarios import Row, _scaling_note  # noqa: E402
from benchmarks.settings import scaled_worker_counts  # noqa: E402

needs_posix = pytest.mark.skipif(os.name != "posix", reason="the suite forks servers and clients")


@pytest.mark.parametrize(("cores", "counts"), [
    (1, (1,)), (2, (1,)), (3, (1,)), (4, (1, 2)), (7, (1, 2)), (8, (1, 2, 4)), (64, (1, 2, 4, 8, 16, 32)),
])
def test_worker_counts_leave_half_the_cores_to_the_clients(cores: int, counts: tuple) -> None:  # type: ignore[type-arg]
    assert scaled_worker_counts(cores) == counts


def _row(workers: int, value: float) -> Row:
    label = f"ours epoll, {workers} worker{'s' if workers > 1 else ''}"
    return Row("workers", "case", label, "workers", "msg/s", value=value, basis="value")


def test_the_note_gives_ratios_to_one_worker_only_where_cores_allow() -> None:
    rows = [_row(1, 100.0), _row(2, 180.0), _row(4, 300.0)]
    assert _scaling_note(rows, 8) == ("workers (8 cores): msg/s relative to 1 worker: "
                                      "2 workers 1.80x, 4 workers 3.00x")
    two_cores = _scaling_note(rows[:1], 2)
    assert "cannot be shown" in two_cores and "relative" not in two_cores


@needs_posix
@pytest.mark.timeout(120)
def test_client_processes_share_the_echo_load() -> None:
    floor = Implementation("floor", "selectors", sys.executable, family="floor")
    with ServerProcess(floor, "echo") as server:
        window = clients.echo_load_processes(server.address, 6, 2, 0.2, 2_000, server.cpu_time)
    assert window.count > 0 and window.seconds > 0


@needs_posix
@pytest.mark.timeout(200)
def test_a_tiny_workers_run_reports_msgs_and_what_they_can_show(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "workers", "--json", str(results),
         "--no-plot"],
        cwd=str(REPO), capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(results.read_text())
    rows = [row for row in data["rows"] if row["scenario"] == "workers"]
    assert rows and all(not row["error"] and row["value"] > 0 for row in rows)
    assert [row["label"] for row in rows][0].endswith("1 worker")
    notes = [note for note in data["meta"]["notes"] if note.startswith("workers")]
    assert len(notes) == 1
    if (os.cpu_count() or 1) < 4:
        assert len(rows) == 1 and "cannot be shown" in notes[0]
    else:
        assert len(rows) >= 2 and "relative to 1 worker" in notes[0]
