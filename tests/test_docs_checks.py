"""The docs show what the code does today, in blocks that fit the page.

* No version of asyncio-compat is typed into the docs: samples that show one
  are rendered from the code at build time (docs/_ext/diagnose_samples.py).
* Those samples come from ``asyncio_compat.diagnose`` itself, with this
  release's version, wrapped so that each warning's fix is on view.
* docs/check_layout.py, run on the built pages by ``tox -e docs``, finds a
  code block wider than its box (checked here on a page made to overflow).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import List

import pytest

# the docs are built and checked on Linux; diagnose imports resource, which Windows lacks
pytest.importorskip("resource", reason="no resource module (Windows): the docs are checked on POSIX")

import asyncio_compat  # noqa: E402
from asyncio_compat import diagnose  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))  # check_layout
sys.path.insert(0, str(DOCS / "_ext"))  # diagnose_samples

import check_layout  # noqa: E402
import diagnose_samples  # noqa: E402

# asyncio-compat's own version, typed: "asyncio_compat  0.1.0", "asyncio-compat 1.0",
# a JSON "version": "0.1.0", or the current version anywhere
_TYPED_VERSION = [
    re.compile(r"asyncio[-_]compat[\s:=(]{1,4}v?\d+\.\d+"),
    re.compile(r'"version":\s*"\d'),
    re.compile(r"(?<![\w.])" + re.escape(asyncio_compat.__version__) + r"(?![\w.])"),
]


def typed_versions(text: str) -> List[str]:
    return [m.group(0) for pattern in _TYPED_VERSION for m in pattern.finditer(text)]


def test_no_version_is_typed_into_the_docs() -> None:
    pages = sorted(DOCS.glob("*.rst")) + [ROOT / "README.md"]
    found = {p.name: typed_versions(p.read_text(encoding="utf-8")) for p in pages}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_the_version_finder_finds_what_the_debugging_page_once_had() -> None:
    old = 'asyncio_compat  0.1.0  (/tmp/venv)\n  "version": "0.1.0",\n'
    assert typed_versions(old) == ["asyncio_compat  0.1", '"version": "0']
    assert typed_versions(f"release {asyncio_compat.__version__} notes") == [asyncio_compat.__version__]
    assert typed_versions("Python 3.13.0, pyasyncore 1.0.5") == []


@pytest.mark.parametrize("name", sorted(diagnose_samples.SAMPLES))
def test_debugging_samples_are_the_commands_output_with_this_version(name: str) -> None:
    text = diagnose_samples.render(name)
    assert text.startswith(f"asyncio_compat  {asyncio_compat.__version__}  (")
    assert text == diagnose.render_text(diagnose_samples.SAMPLES[name])
    for line in text.splitlines():
        # only a path too long for a line of its own may pass the width
        assert len(line) <= diagnose.TEXT_WIDTH or " " not in line.strip().split("  ")[-1], line
    json_text = diagnose_samples.render(name, as_json=True)
    assert f'"version": "{asyncio_compat.__version__}"' in json_text


def test_each_warning_shows_its_fix_on_lines_of_its_own() -> None:
    lines = diagnose_samples.render("frozen").splitlines()
    warnings = [i for i, line in enumerate(lines) if line.startswith("warning: ")]
    fixes = [i for i, line in enumerate(lines) if line.startswith("    fix: pip uninstall ")]
    assert len(warnings) == len(fixes) == 2
    assert all(len(line) <= diagnose.TEXT_WIDTH for line in lines[warnings[0]:])
    assert "fix:" not in "".join(lines[w] for w in warnings)


def _chromium() -> str:
    browser = check_layout.find_browser()
    if browser is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium): the layout check cannot run")
    return browser


@pytest.mark.timeout(180)
def test_layout_check_finds_a_code_block_wider_than_the_page(tmp_path: Path) -> None:
    browser = _chromium()
    site = tmp_path / "html"
    site.mkdir()
    page = """<!doctype html><html><body style="width: 600px">
        <pre style="overflow: auto">short line</pre>
        <pre style="overflow: auto">{}</pre></body></html>"""
    (site / "fits.html").write_text(page.format("also short"))
    (site / "wide.html").write_text(page.format("x" * 300))
    problems = check_layout.check(site, 1280, browser)
    assert len(problems) == 1 and problems[0].startswith("wide.html: a code block needs "), problems
    assert "'" + "x" * 80 + "'" in problems[0]
    assert sorted(p.name for p in site.iterdir()) == ["fits.html", "wide.html"]  # the build is untouched
    assert "</script>" not in (site / "wide.html").read_text()


def test_layout_check_without_a_browser_says_it_skipped(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CHROMIUM", raising=False)
    assert check_layout.main([str(tmp_path)]) == 0
    assert "skipped: no Chromium found" in capsys.readouterr().out
    assert check_layout.main([str(tmp_path), "--require-browser"]) == 2
