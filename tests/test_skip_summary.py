"""The closing summary of a run (tests/skip_summary.py, printed by conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from skip_summary import dropin_verdict, grouped_reasons, summary_lines

TESTS = Path(__file__).resolve().parent


def _skip(nodeid: str, reason: str) -> Any:
    return SimpleNamespace(nodeid=nodeid, longrepr=("x.py", 1, f"Skipped: {reason}"))


def _passed(nodeid: str) -> Any:
    return SimpleNamespace(nodeid=nodeid, longrepr=None)


def test_reasons_are_counted_and_the_commonest_comes_first() -> None:
    skipped = [_skip(f"t.py::a[{i}]", "kqueue poller not available") for i in range(3)]
    skipped += [_skip("t.py::b", "no test.support"), _skip("t.py::c", "kqueue poller not available")]
    assert grouped_reasons(skipped) == [(4, "kqueue poller not available"), (1, "no test.support")]


def test_dropin_skipped_on_every_new_python_is_said_plainly() -> None:
    skipped = [_skip("tests/test_dropin.py::test_legacy[3.12]", "no Python 3.12 found"),
               _skip("tests/test_dropin.py::test_legacy[3.13]", "no Python 3.13 found")]
    verdict = dropin_verdict([_passed("tests/test_dropin.py::test_wheel_metadata")], skipped, [])
    assert verdict is not None and verdict.startswith("NOT TESTED")
    assert "no Python 3.12 found; no Python 3.13 found" in verdict


def test_dropin_that_ran_names_the_versions() -> None:
    passed = [_passed("tests/test_dropin.py::test_legacy[3.13]"),
              _passed("tests/test_dropin.py::test_top_level[3.13-asynchat]")]
    skipped = [_skip("tests/test_dropin.py::test_legacy[3.12]", "no Python 3.12 found")]
    verdict = dropin_verdict(passed, skipped, [])
    assert verdict == "drop-in (import asyncore from the installed wheel) exercised on Python 3.13"


def test_nothing_is_said_of_the_dropin_when_its_tests_did_not_run() -> None:
    stats = {"skipped": [_skip("tests/test_engine_map_loop.py::x[kqueue]", "kqueue poller not available")]}
    assert summary_lines(stats) == ["    1  kqueue poller not available"]


def test_a_run_prints_the_summary(tmp_path: Path) -> None:
    (tmp_path / "test_some.py").write_text(textwrap.dedent("""\
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_skips(n):
            pytest.skip("an expected reason")

        def test_other():
            pytest.skip("the reason to look at")
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tail = proc.stdout[proc.stdout.index("skipped tests by reason"):]
    assert "    3  an expected reason\n    1  the reason to look at\n" in tail
