"""README.md is also the package's page on the index: it must read right there.

It starts with the two commands the project promises work on a fresh machine
(the demo, the tests), both runnable from a clone and from the unpacked sdist;
it says what the package is and how to install it before the checkout path;
and every link is absolute (the index has no repository to resolve
``CONTRIBUTING.md`` against), into this repository where it names one of its
files, and the documentation link goes to built pages, not .rst sources.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, List

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - tomllib is 3.11+
    tomllib = None

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def project_urls() -> Dict[str, str]:
    if tomllib is None:
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11+)")
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return dict(tomllib.load(handle)["project"]["urls"])


def first_commands() -> List[str]:
    """The commands of the README's first block, which must come before any prose."""
    body = README.split("\n", 1)[1].lstrip("\n")  # after the title
    assert body.startswith("```sh\n"), "the README must start with its commands"
    block = body[len("```sh\n"):body.index("\n```")]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_starts_with_the_demo_and_the_test_command() -> None:
    demo, tests = first_commands()
    assert re.fullmatch(r"python3 examples/\w+\.py", demo), demo
    assert tests == "bash .ci/run"
    for command in (demo, tests):
        assert (ROOT / command.split()[1]).is_file(), command


def test_index_page_says_what_it_is_and_how_to_install_before_the_checkout() -> None:
    order = [README.index("## What it is"), README.index("pip install asyncio-compat"),
             README.index("asyncio_compat.install()"), README.index("## From a checkout")]
    assert order == sorted(order)


def test_links_are_absolute_and_name_files_that_exist() -> None:
    home = project_urls()["Homepage"].rstrip("/")
    targets = re.findall(r"\]\(([^)]+)\)", README) + re.findall(r"<(https?://[^>]+)>", README)
    assert targets, "no links found"
    relative = [t for t in targets if not t.startswith("https://")]
    assert relative == []
    for target in targets:
        inside = re.match(re.escape(home) + r"/blob/main/(.+)$", target)
        if inside:
            assert (ROOT / inside.group(1)).is_file(), target


def test_documentation_url_is_the_built_pages_and_the_readme_gives_it() -> None:
    docs = project_urls()["Documentation"]
    assert docs.startswith("https://") and not re.search(r"\.rst$|/(tree|blob)/", docs), docs
    assert docs in README
