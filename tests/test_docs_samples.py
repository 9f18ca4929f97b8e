"""Every Python sample in docs/*.rst and README.md runs.

A sample is a ``.. code-block:: python`` (or ``py``, ``python3``, ``pycon``),
a literal ``::`` block (Sphinx shows those as Python), or a fenced
```` ```python ```` block in README.md.  Each runs in a fresh interpreter,
from a scratch folder, with the checkout on ``PYTHONPATH``: a script must exit
0; a block of ``>>>`` lines runs under doctest and its output must match.
Shell commands and program output are marked as such in the docs
(``code-block:: sh`` / ``text``) and are not run.

Two markers, written on the line above the block (or above the paragraph that
ends in ``::``), as an reST comment or, in Markdown, an HTML comment:

``.. sample: continue`` / ``<!-- sample: continue -->``
    the block goes on from the previous sample of the same file (it uses its
    names), so the two run as one script.
``.. sample: skip -- <why>``
    the block is a fragment that cannot run by itself (it needs a display,
    or serves a fixed port until stopped).  The reason is required, and the
    list of skips is kept short by ``test_opt_outs_are_few_and_say_why``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    os.name != "posix", reason="the samples are written for POSIX (workers fork; sockets on loopback)"
)

_PYTHON = {"python", "py", "python3", "pycon"}
_DIRECTIVE = re.compile(r"^(\s*)\.\. (?:code-block|code|sourcecode)::\s*(\S*)\s*$")
_RST_MARKER = re.compile(r"^\s*\.\. sample: (skip|continue)\b\s*(?:--\s*)?(.*)$")
_MD_MARKER = re.compile(r"^<!-- sample: (skip|continue)\b\s*(?:--\s*)?(.*?)\s*-->$")


@dataclass
class Sample:
    """One block of code, where it is, and what its marker says."""

    path: Path
    line: int  #: 1-based line of the directive, the ``::`` line or the fence
    code: str
    marker: str = ""  #: "", "skip" or "continue"
    reason: str = ""
    previous: Optional[Sample] = None  #: for "continue": the sample it goes on from

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def is_doctest(self) -> bool:
        return self.code.lstrip().startswith(">>>")

    def script(self) -> str:
        """The code to run: the samples it continues, then its own."""
        before = self.previous.script() + "\n" if self.marker == "continue" and self.previous else ""
        return before + self.code


# -- finding the samples ---------------------------------------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block(lines: List[str], start: int, indent: int, options: bool) -> List[str]:
    """The indented block after line ``start`` (directive options skipped when ``options``)."""
    i = start + 1
    while options and i < len(lines) and lines[i].strip().startswith(":") and _indent(lines[i]) > indent:
        i += 1
    block = []
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        block.append(lines[i])
        i += 1
    return block


def _marker_above(lines: List[str], start: int, pattern: re.Pattern[str]) -> Optional[re.Match[str]]:
    """The marker right above line ``start``, or above the paragraph that holds it."""
    above = _nearest_text_above(lines, start)
    if above is None or pattern.match(lines[above]):
        return None if above is None else pattern.match(lines[above])
    i = start
    while i > 0 and lines[i - 1].strip():
        i -= 1
    above = _nearest_text_above(lines, i)
    return None if above is None else pattern.match(lines[above])


def _nearest_text_above(lines: List[str], start: int) -> Optional[int]:
    i = start - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    return i if i >= 0 else None


def _rst_samples(path: Path) -> List[Sample]:
    lines = path.read_text().splitlines()
    found: List[Sample] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        literal = line.rstrip().endswith("::") and not line.lstrip().startswith("..")
        if not (directive or literal):
            i += 1
            continue
        block = _block(lines, i, _indent(line), options=bool(directive))
        if literal or (directive and directive.group(2) in _PYTHON):
            found.append(_sample(path, lines, i, block, _RST_MARKER))
        i += 1 + len(block)
    return found


def _sample(path: Path, lines: List[str], i: int, block: List[str], pattern: re.Pattern[str]) -> Sample:
    marker = _marker_above(lines, i, pattern)
    code = textwrap.dedent("\n".join(block)).strip("\n") + "\n"
    if marker is None:
        return Sample(path, i + 1, code)
    return Sample(path, i + 1, code, marker.group(1), marker.group(2).strip())


def _markdown_samples(path: Path) -> List[Sample]:
    lines = path.read_text().splitlines()
    found: List[Sample] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if lines[i][3:].strip() in _PYTHON:
            found.append(_sample(path, lines, i, lines[i + 1:end], _MD_MARKER))
        i = end + 1
    return found


def _chain(samples: List[Sample]) -> List[Sample]:
    """Link each "continue" to the nearest earlier sample of its file that runs."""
    runnable: Optional[Sample] = None
    for sample in samples:
        if sample.marker == "continue":
            sample.previous = runnable
        if sample.marker != "skip":
            runnable = sample
    return samples


def all_samples() -> List[Sample]:
    found: List[Sample] = []
    for path in sorted((REPO / "docs").glob("*.rst")) + [REPO / "README.md"]:
        reader = _markdown_samples if path.suffix == ".md" else _rst_samples
        found += _chain(reader(path))
    return found


SAMPLES = all_samples()


# -- running them ------------------------------------------------------------------------------


def _run(command: List[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))  # the checkout, as if installed
    return subprocess.run(command, cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.marker != "skip"], ids=lambda s: s.name)
def test_sample_runs(sample: Sample, tmp_path: Path) -> None:
    if sample.is_doctest:
        if not sys.platform.startswith("linux"):
            pytest.skip("the doctest shows Linux's list of backends")
        target = tmp_path / "sample.txt"
        target.write_text(sample.code)
        command = [sys.executable, "-m", "doctest", "-o", "ELLIPSIS", str(target)]
    else:
        target = tmp_path / "sample.py"
        target.write_text(sample.script())
        command = [sys.executable, str(target)]
    done = _run(command, tmp_path)
    assert done.returncode == 0, (
        f"{sample.name} failed ({done.returncode})\n--- code\n{target.read_text()}"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


def test_the_samples_are_found() -> None:
    """The finder sees the samples of the pages and the README (not none, silently)."""
    pages = {sample.path.name for sample in SAMPLES}
    assert {"README.md", "asyncio-migration.rst", "timers.rst", "pollers.rst"} <= pages
    assert sum(s.is_doctest for s in SAMPLES) >= 2
    assert len(SAMPLES) >= 15


def test_opt_outs_are_few_and_say_why() -> None:
    skipped = [s for s in SAMPLES if s.marker == "skip"]
    assert all(len(s.reason) >= 20 for s in skipped), [s.name for s in skipped if len(s.reason) < 20]
    # a new skip is a sample nobody checks: make it runnable instead where it can be
    assert len(skipped) <= 3, [s.name for s in skipped]
    orphans = [s.name for s in SAMPLES if s.marker == "continue" and s.previous is None]
    assert orphans == [], "a 'continue' sample with nothing before it"


def test_markers_are_found(tmp_path: Path) -> None:
    page = tmp_path / "page.rst"
    page.write_text(textwrap.dedent("""\
        Title
        =====

        .. sample: skip -- needs a display that tests do not have

        .. code-block:: python
           :caption: first

           import tkinter

        Text then::

            x = 1

        .. sample: continue

        Goes on, with a paragraph
        of two lines::

            print(x)

        .. code-block:: text

            not:: a sample
    """))
    first, second, third = _chain(_rst_samples(page))
    assert (first.line, first.marker, first.code) == (6, "skip", "import tkinter\n")
    assert first.reason.startswith("needs a display")
    assert (second.marker, second.code) == ("", "x = 1\n")
    assert third.marker == "continue" and third.previous is second
    assert third.script() == "x = 1\n\nprint(x)\n"
