"""The benchmark suite works: a ``--quick`` run end to end, and its checking parts.

No figure is asserted: speed is never a unit-test matter.  What is asserted
is that every scenario ran against every contender, that the client catches
a wrong byte, and that the line splitters agree on what they were sent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import zlib
from pathlib import Path
from typing import List

import pytest

import pollers

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import clients, protocol, report, scenarios  # noqa: E402
from benchmarks.clients import Window  # noqa: E402
from benchmarks.other_servers import LineSplitter  # noqa: E402
from benchmarks.processes import BenchError, Implementation, ServerProcess, cpu_seconds, find_python311  # noqa: E402
from benchmarks.scenarios import SCENARIOS, Context, Row  # noqa: E402
from benchmarks.settings import QUICK  # noqa: E402

needs_posix = pytest.mark.skipif(os.name != "posix", reason="the suite forks and uses resource limits")


@needs_posix
@pytest.mark.timeout(300)
def test_quick_run_covers_every_scenario(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    plot = tmp_path / "idle.png"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(results), "--plot", str(plot)],
        cwd=str(REPO), capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(results.read_text())["rows"]
    assert {row["scenario"] for row in rows} >= {"echo", "idle", "memory", "lines", "bulk in",
                                                  "bulk out", "latency", "workers"}
    failed = [(row["label"], row["case"], row["error"]) for row in rows if row["error"]]
    assert failed == []  # the quick sizes stay below every select() limit
    assert all(row["value"] > 0 for row in rows)
    # every figure is the median of the quick run's two rounds, which the row keeps
    assert all(len(row["round_values"]) == 2 for row in rows)
    assert any(row["case"].startswith("one sendall() of 1 MiB, CRLF") for row in rows
               if row["scenario"] == "bulk in")
    labels = {row["label"] for row in rows}
    ours = {f"ours {name}" for name in pollers.available()}
    assert {"selectors loop (floor)", "asyncio Protocol"} | ours <= labels
    if find_python311():
        assert {"3.11 asyncore select", "3.11 asyncore poll"} <= labels
    assert "Targets" in done.stdout
    _check_plot(plot, done.stderr)


def _check_plot(plot: Path, stderr: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in stderr
        assert not plot.exists()
    else:
        assert plot.read_bytes().startswith(b"\x89PNG")


def test_only_rejects_an_unknown_scenario() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "echo,nonsense"],
        cwd=str(REPO), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "unknown scenario nonsense" in done.stderr


# -- the checking parts, without servers ------------------------------------------------


def test_client_rejects_a_wrong_echo() -> None:
    mine, server_side = socket.socketpair()
    try:
        message = protocol.echo_messages()[0]
        server_side.sendall(message[:-2] + b"?\n")  # waiting before the client even sends
        mine.setblocking(False)
        with pytest.raises(BenchError, match="wrong echo"):
            clients.exchange_all([mine], [message])
    finally:
        mine.close()
        server_side.close()


def test_client_accepts_an_echo_split_in_pieces() -> None:
    mine, server_side = socket.socketpair()
    try:
        message = protocol.echo_messages()[5]
        mine.setblocking(False)
        server_side.sendall(message[:10])
        server_side.sendall(message[10:])
        clients.exchange_all([mine], [message])
        assert server_side.recv(100) == message  # what the client sent
    finally:
        mine.close()
        server_side.close()


def test_read_exactly_reports_an_early_close() -> None:
    mine, server_side = socket.socketpair()
    try:
        server_side.sendall(b"abc")
        server_side.close()
        with pytest.raises(BenchError, match="closed"):
            clients.read_exactly(mine, b"abcdef")
    finally:
        mine.close()


def _split_everywhere(payload: bytes, step: int) -> List[bytes]:
    return [payload[i:i + step] for i in range(0, len(payload), step)]


@pytest.mark.parametrize("step", [1, 7, 100, 4096])
def test_splitter_summary_matches_the_expected_one(step: int) -> None:
    payload = protocol.lines_payload(300, 100)
    splitter = LineSplitter()
    replies = [r for chunk in _split_everywhere(payload + b"END\n", step) for r in splitter.feed(chunk)]
    assert replies == [protocol.expected_summary(payload.replace(b"\n", b""), 300)]


def test_sink_commands() -> None:
    sink = protocol.LineSink()
    assert sink.on_line(b"E123") == b"E123\n"
    assert sink.on_line(b"PREP 1000") == b"OK\n"
    assert sink.on_line(b"PUSH") == protocol.pattern(1000)
    assert sink.on_line(b"data") is None
    assert sink.on_line(b"END") == b"1 %d\n" % zlib.crc32(b"data")
    assert sink.on_line(b"END") == b"0 0\n"  # counters were reset


def test_payloads_have_the_asked_shape() -> None:
    payload = protocol.lines_payload(50, 100)
    lines = payload.split(b"\n")[:-1]
    assert len(lines) == 50 and {len(line) for line in lines} == {99}
    assert len(set(lines)) == 50  # distinct, so a lost or repeated line changes the CRC
    assert b"\n" not in protocol.pattern(100_000) and len(protocol.pattern(100_000)) == 100_000
    with pytest.raises(ValueError, match="at least 13 bytes"):
        protocol.lines_payload(1, 12)
    noise = protocol.random_payload(200_000)
    assert len(noise) == 200_000 and b"\r\n" not in noise and noise == protocol.random_payload(200_000)
    assert noise.count(b"\r") > 500 and noise.count(b"\n") > 500  # the terminator's bytes, often


def test_ratios_and_verdicts() -> None:
    def row(scenario: str, label: str, family: str, value: float, **kw: object) -> Row:
        return Row(scenario, "case", label, family, "unit", value=value, **kw)  # type: ignore[arg-type]

    rows = [
        row("echo", "floor", "floor", 100.0, per_cpu=200.0, basis="per_cpu"),
        row("echo", "ours epoll", "ours", 90.0, per_cpu=190.0, basis="per_cpu"),
        row("echo", "3.11 asyncore poll", "stdlib", 50.0, per_cpu=150.0, basis="per_cpu"),
        row("echo", "3.11 asyncore select", "stdlib", 40.0, per_cpu=180.0, basis="per_cpu"),
        row("lines", "floor", "floor", 100.0, per_cpu=100.0, basis="per_cpu"),
        row("lines", "ours epoll", "ours", 60.0, per_cpu=50.0, basis="per_cpu"),
        row("memory", "ours epoll", "ours", 36.0, higher_is_better=False),
        row("memory", "3.11 asyncore select", "stdlib", 20.0, higher_is_better=False),
        row("memory", "3.11 asyncore poll", "stdlib", 30.0, higher_is_better=False),
    ]
    results = {v.target: (v.measured, v.verdict) for v in report.targets(rows, "ours epoll")}

    def verdict(prefix: str) -> object:
        return next(found for text, found in results.items() if text.startswith(prefix))

    assert verdict("echo: ours >= 0.95") == (pytest.approx(0.95), "met")
    assert verdict("echo: ours >= 1.00") == (pytest.approx(190 / 180), "met")  # best 3.11: select
    assert verdict("lines") == (pytest.approx(0.5), "NOT met")
    assert verdict("memory") == (pytest.approx(1.2), "met")  # held against poll, not select
    assert not any(text.startswith("idle") for text in results)  # not measured: not judged
    text = report.table(rows)
    assert "failed" not in text and "0.95" in text


def test_targets_of_the_performance_issue() -> None:
    def row(scenario: str, label: str, value: float, **kw: object) -> Row:
        family = "ours" if label.startswith("ours") else "stdlib"
        case = kw.pop("case", "case")
        return Row(scenario, case, label, family, "unit", value=value, **kw)  # type: ignore[arg-type]

    rows = [
        # bulk in: ahead per CPU-second, behind on the wall clock
        row("bulk in", "ours epoll", 90.0, per_cpu=120.0, basis="per_cpu"),
        row("bulk in", "3.11 asyncore poll", 100.0, per_cpu=100.0, basis="per_cpu"),
        row("bulk memory", "ours epoll", 210.0, higher_is_better=False, case="bulk in, one"),
        row("bulk memory", "3.11 asyncore poll", 200.0, higher_is_better=False, case="bulk in, one"),
        # ours on poll and select against 3.11 on the same backend
        row("echo", "ours poll", 110.0, per_cpu=110.0, basis="per_cpu"),
        row("echo", "3.11 asyncore poll", 100.0, per_cpu=100.0, basis="per_cpu"),
        row("echo", "ours select", 99.0, per_cpu=99.0, basis="per_cpu"),
        row("echo", "3.11 asyncore select", 100.0, per_cpu=100.0, basis="per_cpu"),
        row("latency", "ours epoll", 2.0, higher_is_better=False),
        row("latency", "ours poll", 50.0, higher_is_better=False),
        row("latency", "3.11 asyncore poll", 200.0, higher_is_better=False),
        row("latency", "ours select", 210.0, higher_is_better=False),
        row("latency", "3.11 asyncore select", 160.0, higher_is_better=False),
    ]
    results = {v.target: (v.measured, v.verdict) for v in report.targets(rows, "ours epoll")}

    def verdict(prefix: str) -> object:
        return next(found for text, found in results.items() if text.startswith(prefix))

    assert verdict("bulk in: ours >= 1.00 x CPython 3.11 (per server CPU-s)") == (pytest.approx(1.2), "met")
    assert verdict("bulk in: ours >= 1.00 x CPython 3.11 (wall time)") == (pytest.approx(0.9), "NOT met")
    assert verdict("bulk in: peak RSS") == (pytest.approx(1.05), "NOT met")
    assert not any(text.startswith("bulk out") for text in results)  # not measured: not judged
    # poll: ahead in echo (1.10) and latency (200/50): the worst is echo
    assert verdict("poll: ours >= 1.00") == (pytest.approx(1.1), "met")
    assert "worst: echo" in next(text for text in results if text.startswith("poll:"))
    # select: echo 0.99, latency 160/210 = 0.76 (a lower-is-better figure, inverted)
    assert verdict("select: ours >= 1.00") == (pytest.approx(160 / 210), "NOT met")
    assert "worst: latency" in next(text for text in results if text.startswith("select:"))
    assert verdict("latency: ") == (pytest.approx(2.0), "met")


def test_cpu_time_of_this_process_is_read() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc here")
    used = cpu_seconds([os.getpid()])
    assert used is not None and used > 0


def test_every_scenario_is_documented() -> None:
    page = (REPO / "docs" / "performance.rst").read_text()
    for name in SCENARIOS:
        assert f"``{name}``" in page


# -- rounds: interleaved, medians, spreads, and verdicts that say why --------------------------


def _impl(label: str, family: str = "ours") -> Implementation:
    return Implementation(label, "ours", sys.executable, family=family)


def test_rounds_interleave_the_implementations_and_keep_every_window() -> None:
    ran: List[str] = []

    def measure(impl: Implementation) -> Window:
        ran.append(impl.label)
        if impl.label == "b" and ran.count("b") == 2:
            raise BenchError("b broke")
        return Window(count=len(ran), seconds=1.0, cpu=0.5)

    ctx = Context(dataclasses.replace(QUICK, rounds=3), [], progress=lambda _: None)
    found = scenarios.interleaved_rounds(ctx, [_impl("a"), _impl("b"), _impl("c")], measure)
    # a, b and c take turns; b is not run again once it failed
    assert ran == ["a", "b", "c", "a", "b", "c", "a", "c"]
    assert found["b"] == "b broke"
    assert [w.count for w in found["a"]] == [1, 4, 7]  # type: ignore[union-attr]


def test_a_row_is_the_median_of_its_rounds_and_keeps_them() -> None:
    windows = [Window(300, 1.0, 1.0), Window(100, 1.0, 0.5), Window(200, 1.0, 0.25)]
    row = scenarios.window_row("echo", "case", _impl("ours epoll"), windows, "msg/s", 1.0)
    assert row.value == 200 and row.per_cpu == 300  # medians of 300/100/200 and 300/200/800
    assert row.round_per_cpu == [300, 200, 800] and row.spread() == (200, 800)
    assert report.spread_text(row) == "200-800"
    # a round without a CPU figure: the result itself is compared
    windows[1] = Window(100, 1.0, None)
    row = scenarios.window_row("echo", "case", _impl("ours epoll"), windows, "msg/s", 1.0)
    assert row.basis == "value" and row.per_cpu is None and row.spread() == (100, 300)
    failed = scenarios.window_row("echo", "case", _impl("ours epoll"), "it broke", "msg/s", 1.0)
    assert failed.error == "it broke" and failed.spread() is None


def _rounds_row(label: str, family: str, values: List[float], scenario: str = "echo") -> Row:
    return Row(scenario, "case", label, family, "msg/s", value=sorted(values)[len(values) // 2],
               basis="value", round_values=values)


def test_ratios_are_shown_with_the_spread_of_the_per_round_ratios() -> None:
    ours = _rounds_row("ours epoll", "ours", [90.0, 100.0, 120.0])
    theirs = _rounds_row("3.11 asyncore poll", "stdlib", [100.0, 100.0, 100.0])
    assert report.ratio_spread(ours, theirs) == (pytest.approx(0.9), pytest.approx(1.2))
    assert report.csv_rows([ours, theirs])[1] == ["ours epoll", "100 msg/s", "90\u2011120",
                                                  "1.00 (0.90\u20111.20)"]
    one_round = _rounds_row("ours epoll", "ours", [90.0])
    assert report.ratio_spread(one_round, theirs) is None and report.spread_text(one_round) == ""


def test_a_verdict_says_why_it_is_not_met_or_when_the_rounds_cannot_tell() -> None:
    rows = [
        _rounds_row("selectors loop (floor)", "floor", [100.0, 100.0, 100.0]),
        _rounds_row("ours epoll", "ours", [90.0, 94.0, 97.0]),
        _rounds_row("3.11 asyncore poll", "stdlib", [100.0, 100.0, 100.0]),
        _rounds_row("selectors loop (floor)", "floor", [100.0, 100.0, 100.0], "lines"),
        _rounds_row("ours epoll", "ours", [70.0, 75.0, 80.0], "lines"),
    ]
    found = {v.target.split(" (")[0]: v for v in report.targets(rows, "ours epoll")}
    echo_floor = found["echo: ours >= 0.95 x selectors loop"]
    assert echo_floor.verdict == "NOT met" and echo_floor.spread == (pytest.approx(0.9), pytest.approx(0.97))
    assert echo_floor.why.startswith("within the spread: the rounds gave 0.900 to 0.970")
    lines = found["lines: ours >= 0.95 x linear splitter"]
    assert lines.verdict == "NOT met" and "within the spread" not in lines.why
    assert "found_terminator()" in lines.why  # the cost behind it
    rows[2] = _rounds_row("3.11 asyncore poll", "stdlib", [92.0, 93.0, 95.0])
    verdicts = report.targets(rows, "ours epoll")
    echo_311 = next(v for v in verdicts if v.target.startswith("echo: ours >= 1.00"))
    assert echo_311.verdict == "met" and echo_311.why.startswith("met at the median")
    assert "NOT met" in report.targets_text(report.targets(rows, "ours epoll"))


def test_a_channel_exception_in_the_servers_last_words_keeps_its_reason() -> None:
    line = ("error: uncaptured python exception, closing channel <benchmarks.asyncore_servers.ChatHandler "
            "connected 127.0.0.1:51760 at 0x7fd6651101d0> (<class 'ValueError'>:fd 1044 is out of range "
            "for select() (at or above FD_SETSIZE, 1024 on most systems); use the poll, epoll or kqueue "
            "backend [/x/_loop.py|_apply_interest|387] [/x/_base.py|set_mask|232])")
    assert scenarios.last_words(line) == (
        "ValueError: fd 1044 is out of range for select() (at or above FD_SETSIZE, 1024 on most "
        "systems); use the poll, epoll or kqueue backend")
    plain = "ValueError: filedescriptor out of range in select()"
    assert scenarios.last_words(plain) == plain


@needs_posix
@pytest.mark.timeout(60)
def test_the_bulk_server_answers_with_the_length_and_the_crc_of_what_it_got() -> None:
    server_impl = Implementation("ours", "ours", sys.executable, ("--poller", pollers.available()[0]), "ours")
    message = protocol.pattern(300_000)
    with ServerProcess(server_impl, "bulk") as server:
        window = clients.send_bulk(server.address, message + b"\r\n", zlib.crc32(message), server.cpu_time)
        assert window.count == len(message) + 2
        with pytest.raises(BenchError, match="other bytes than sent"):
            clients.send_bulk(server.address, message + b"\r\n", zlib.crc32(message) ^ 1, server.cpu_time)


@needs_posix
@pytest.mark.timeout(60)
@pytest.mark.parametrize("workload", ["lines 200", "bulk 20", "idle 50 --channels 10"])
def test_engine_instruction_workloads_run(workload: str) -> None:
    # the workloads behind docs/performance.rst's instruction counts finish
    # and do the work asked (a count, not a figure)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "engine_instructions.py"), *workload.split()],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == workload.split()[:2]
