"""The closing summary of a test run: why tests skipped, grouped by reason,
and whether the drop-in was exercised on a Python without a stdlib asyncore.

conftest.py's ``pytest_terminal_summary`` prints :func:`summary_lines`.
A run that skips hundreds of tests for an expected reason (kqueue on Linux)
must not hide the few that skipped for a reason somebody can fix (no CPython
test suite installed, no Python 3.12 found).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, List, Optional, Tuple

DROPIN_FILE = "test_dropin.py"
# test_dropin's fresh-venv tests carry the minor version as their parameter id
_VENV_MINOR = re.compile(r"\[(?:[^\]]*-)?3\.(\d+)(?:-[^\]]*)?\]$")


def skip_reason(report: Any) -> str:
    """The reason a skipped report gives, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(reason).replace("Skipped: ", "", 1).strip()


def grouped_reasons(skipped: Iterable[Any]) -> List[Tuple[int, str]]:
    """``(count, reason)`` pairs, most frequent first (ties by reason)."""
    counts = Counter(skip_reason(report) for report in skipped)
    return sorted(((n, reason) for reason, n in counts.items()), key=lambda item: (-item[0], item[1]))


def _dropin_minors(reports: Iterable[Any]) -> List[int]:
    found = []
    for report in reports:
        if DROPIN_FILE in report.nodeid:
            match = _VENV_MINOR.search(report.nodeid)
            if match:
                found.append(int(match.group(1)))
    return found


def dropin_verdict(passed: Iterable[Any], skipped: Iterable[Any], failed: Iterable[Any]) -> Optional[str]:
    """A line saying whether ``import asyncore`` from the wheel ran on 3.12 or later;
    None when test_dropin's fresh-venv tests were not part of the run."""
    skipped = list(skipped)
    ran = sorted(set(m for m in _dropin_minors(passed) if m >= 12))
    tried = _dropin_minors(skipped) + _dropin_minors(failed)
    if ran:
        return "drop-in (import asyncore from the installed wheel) exercised on " + ", ".join(
            f"Python 3.{m}" for m in ran)
    if not tried:
        return None
    reasons = sorted({skip_reason(r) for r in skipped if _dropin_minors([r])})
    why = "; ".join(reasons) if reasons else "those tests failed"
    return ("NOT TESTED: the drop-in (import asyncore from the installed wheel) was not exercised "
            f"on any Python >= 3.12, the versions it exists for ({why})")


def summary_lines(stats: Any) -> List[str]:
    """The lines to print for a terminal reporter's ``stats``."""
    skipped = list(stats.get("skipped", []))
    lines = [f"{n:5d}  {reason}" for n, reason in grouped_reasons(skipped)]
    verdict = dropin_verdict(stats.get("passed", []), skipped, stats.get("failed", []))
    if verdict is not None:
        lines.append(verdict)
    return lines
