"""``python -m benchmarks --docs-dir DIR`` writes what docs/performance.rst includes.

The files are checked for form, not for figures: the CSV tables are
rectangular and carry their header, the reST parses without a warning and
names only files that exist, the run's description names the machine and
the date, and a plot is a PNG (or, without matplotlib, absent with a message).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import report  # noqa: E402
from benchmarks.scenarios import Row  # noqa: E402

needs_posix = pytest.mark.skipif(os.name != "posix", reason="the suite forks and uses resource limits")


def _docs_dir(tmp_path: Path) -> Path:
    source = tmp_path / "docs"
    source.mkdir()
    (source / "conf.py").write_text("")  # what makes it a Sphinx source directory
    return source / "_generated" / "benchmarks"


def _rows() -> List[Row]:
    return [
        Row("echo", "10 conns x 64 B", "selectors loop (floor)", "floor", "msg/s", 100.0, 200.0, "per_cpu"),
        Row("echo", "10 conns x 64 B", "ours epoll", "ours", "msg/s", 90.0, 190.0, "per_cpu"),
        Row("echo", "10 conns x 64 B", "3.11 asyncore poll", "stdlib", "msg/s", 80.0, 150.0, "per_cpu"),
        Row("idle", "10 idle", "ours epoll", "ours", "round trips/s", 5000.0, 9000.0, x=10),
        Row("idle", "50 idle", "ours epoll", "ours", "round trips/s", 4900.0, 8800.0, x=50),
        Row("idle", "50 idle", "ours select", "ours", "round trips/s", error="server said *no* | `x`", x=50),
        Row("memory", "50 idle", "ours epoll", "ours", "MiB peak RSS", 20.0, higher_is_better=False),
    ]


def _meta() -> Dict[str, Any]:
    return {
        "command": "python -m benchmarks --quick", "date": "2026-11-30 12:00:00 UTC",
        "machine": "Linux 6.1 x86_64, 2 CPUs (Some CPU)", "cpu_model": "Some CPU", "cpus": 2,
        "system": "Linux 6.1 (x86_64)", "best_poller": "epoll", "pinning": "not pinned",
        "interpreters": {"client": "Python 3.11.7", "servers": "Python 3.11.7 (/x/python_3)"},
        "settings": {"rounds": 1}, "seconds": 1.5, "notes": ["a note with a_path_"],
    }


def _csv_files(directory: Path) -> Dict[str, List[List[str]]]:
    tables = {}
    for path in sorted(directory.glob("*.csv")):
        with path.open(newline="") as stream:
            tables[path.name] = list(csv.reader(stream))
    return tables


def check_csv(directory: Path) -> Dict[str, List[List[str]]]:
    tables = _csv_files(directory)
    assert tables, "no CSV table written"
    for name, cells in tables.items():
        assert len(cells) >= 2, f"{name}: a header and no rows"
        assert len({len(row) for row in cells}) == 1, f"{name}: rows of different lengths"
        assert cells[0][0] in ("Implementation", "Target"), name
    return tables


def check_rest(directory: Path) -> None:
    """Every file the reST names exists; where docutils is installed (with Sphinx),
    both files also parse without a warning."""
    try:
        import docutils.core as docutils_core
    except ImportError:  # the test extra does not pull docutils in; the docs extra does
        docutils_core = None
    for name in ("results.rst", "run.rst"):
        path = directory / name
        text = path.read_text()
        for line in text.splitlines():
            if line.strip().startswith(":file:"):
                assert (directory / line.split(":file:", 1)[1].strip()).is_file(), line
            if line.startswith(".. image:: /"):  # from the Sphinx source directory
                source = directory.parent.parent
                assert (source / line.split(":: /", 1)[1]).is_file(), line
        if docutils_core is None:
            continue
        docutils_core.publish_doctree(
            text, source_path=str(path),
            settings_overrides={"report_level": 2, "halt_level": 2, "warning_stream": False},
        )


_WRITE = """
import json, sys
from pathlib import Path
from benchmarks import report
from benchmarks.scenarios import Row
given = json.loads(sys.stdin.read())
rows = [Row(**row) for row in given["rows"]]
print("\\n".join(report.write_docs(Path(given["directory"]), rows, given["meta"])))
"""


def _write_in_a_subprocess(directory: Path) -> List[str]:
    """write_docs() on the rows above, in a child: matplotlib keeps its font files open."""
    given = {"directory": str(directory), "rows": [asdict(row) for row in _rows()], "meta": _meta()}
    done = subprocess.run([sys.executable, "-c", _WRITE], input=json.dumps(given), cwd=str(REPO),
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


@pytest.mark.timeout(120)
def test_written_files_are_valid(tmp_path: Path) -> None:
    directory = _docs_dir(tmp_path)
    messages = _write_in_a_subprocess(directory)
    tables = check_csv(directory)
    assert set(tables) == {"echo--10-conns-x-64-b.csv", "idle--10-idle.csv", "idle--50-idle.csv",
                           "memory--50-idle.csv", "targets.csv"}
    echo = tables["echo--10-conns-x-64-b.csv"]
    assert echo[0] == ["Implementation", "Result", "Per server CPU-second", "vs floor", "vs 3.11"]
    assert echo[2] == ["ours epoll", "90 msg/s", "190", "0.95", "1.27"]
    assert tables["memory--50-idle.csv"][0] == ["Implementation", "Result"]  # empty columns dropped
    assert ["ours select", "failed (see below)", ""] in tables["idle--50-idle.csv"]
    assert "* ours select failed: server said \\*no\\* \\| \\`x\\`" in (directory / "results.rst").read_text()
    check_rest(directory)
    run = (directory / "run.rst").read_text()
    for expected in ("2026-11-30 12:00:00 UTC", "Some CPU, 2 logical CPUs", "Linux 6.1", "Python 3.11.7"):
        assert expected in run
    _check_plots(directory, messages, ["echo", "idle", "memory"])


def _check_plots(directory: Path, messages: List[str], scenarios: List[str]) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert any("matplotlib is not installed" in m for m in messages)
        assert not list(directory.glob("*.png"))
        assert ".. image::" not in (directory / "results.rst").read_text()
        return
    for scenario in scenarios:
        assert (directory / f"{scenario}.png").read_bytes().startswith(b"\x89PNG")


def test_without_matplotlib_the_tables_are_still_written(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "_pyplot", lambda: None)
    directory = _docs_dir(tmp_path)
    messages = report.write_docs(directory, _rows(), _meta())
    assert sum("matplotlib is not installed" in m for m in messages) == 3  # one per scenario
    assert not list(directory.glob("*.png"))
    check_csv(directory)
    check_rest(directory)


def test_a_second_run_replaces_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "_pyplot", lambda: None)  # tables only: see _write_in_a_subprocess
    directory = _docs_dir(tmp_path)
    report.write_docs(directory, _rows(), _meta())
    report.write_docs(directory, [r for r in _rows() if r.scenario == "echo"], _meta())
    assert {p.name for p in directory.glob("*.csv")} == {"echo--10-conns-x-64-b.csv", "targets.csv"}


def test_slugs_are_file_names() -> None:
    assert report.slug("bulk in") == "bulk-in"
    assert report.slug("loop(0, count=1), 1,000 idle") == "loop-0-count-1-1-000-idle"
    assert report.slug("!!") == "unnamed"


@needs_posix
@pytest.mark.timeout(120)
def test_a_tiny_run_writes_the_docs_files(tmp_path: Path) -> None:
    directory = _docs_dir(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "echo,latency", "--pollers", "select",
         "--json", str(tmp_path / "run.json"), "--no-plot", "--docs-dir", str(directory)],
        cwd=str(REPO), capture_output=True, text=True, timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"written to {directory}" in done.stderr
    tables = check_csv(directory)
    assert any(name.startswith("echo--") for name in tables)
    assert any(name.startswith("latency--") for name in tables)
    check_rest(directory)
    run = (directory / "run.rst").read_text()
    assert f"{os.cpu_count()} logical CPUs" in run and "--docs-dir" in run
    _check_plots(directory, done.stderr.splitlines(), ["echo", "latency"])


def test_tables_show_the_rounds_and_the_targets_say_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "_pyplot", lambda: None)
    rows = [
        Row("lines", "9 lines", "selectors loop (floor)", "floor", "lines/s", 100.0, 100.0, "per_cpu",
            round_values=[100.0, 100.0, 100.0], round_per_cpu=[100.0, 100.0, 100.0]),
        Row("lines", "9 lines", "ours epoll", "ours", "lines/s", 80.0, 76.0, "per_cpu",
            round_values=[70.0, 80.0, 90.0], round_per_cpu=[75.0, 76.0, 96.0]),
    ]
    directory = _docs_dir(tmp_path)
    report.write_docs(directory, rows, dict(_meta(), settings={"rounds": 3}))
    tables = check_csv(directory)
    lines = tables["lines--9-lines.csv"]
    assert lines[0] == ["Implementation", "Result", "Per server CPU-second", "Rounds (lowest-highest)",
                        "vs floor"]
    # ranges do not break at their hyphen (U+2011), so a narrow column wraps at the space
    assert lines[2] == ["ours epoll", "80 lines/s", "76", "75\u201196", "0.76 (0.75\u20110.96)"]
    targets = tables["targets.csv"]
    assert targets[0] == ["Target", "Measured (median)", "Rounds (lowest-highest)", "Verdict", "Why"]
    assert targets[1][1:4] == ["0.760", "0.750\u20110.960", "NOT met"]
    assert targets[1][4].startswith("within the spread: the rounds gave 0.750 to 0.960; async_chat makes")
    assert ":class: benchmark-table benchmark-targets" in (directory / "results.rst").read_text()
    assert "median of 3 interleaved rounds" in (directory / "run.rst").read_text()
    check_rest(directory)


def test_the_verdict_column_does_not_wrap() -> None:
    css = (REPO / "docs" / "_static" / "benchmarks.css").read_text()
    rule = css.split("table.benchmark-targets td:nth-child(4)", 1)[1].split("}", 1)[0]
    assert "white-space: nowrap" in rule
