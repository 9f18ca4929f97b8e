"""The release artifacts as PyPI and a distribution packager receive them.

Both are built offline (``python -m build --no-isolation``: the sdist from a
copy of the source tree, then the wheel from that sdist, as a release does)
and their contents checked: the sdist is the whole project, able to run its
own tests; the wheel holds only what ``import`` needs.  ``twine check
--strict`` runs on both.  Each check skips, saying why, where ``build``,
``twine`` or a new enough setuptools is missing (the test extra has them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from fnmatch import fnmatch
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import List, Set, Tuple

import pytest

import asyncio_compat

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# what never belongs in either artifact
JUNK = ("__pycache__", "*.pyc", ".git", ".tox", ".venv", "build", "dist", "*.egg-info",
        "_build", "results", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")
# the folders the sdist must carry whole, and the files beside them
SDIST_FOLDERS = ("asyncio_compat", "pollers", "shims", "tests", "docs", "examples", "benchmarks",
                 ".ci", "build_backend")
SDIST_FILES = ("LICENSE", "README.md", "CHANGELOG.md", "CONTRIBUTING.md", "pyproject.toml", "tox.ini",
               "MANIFEST.in")
WHEEL_TOP_LEVEL = {"asyncio_compat", "pollers", "asyncore.py", "asynchat.py", "smtpd.py"}


def _setuptools_is_too_old() -> bool:
    try:
        major = int(re.findall(r"\d+", version("setuptools"))[0])
    except PackageNotFoundError:
        return True
    return major < 77  # the first to read PEP 639 licence metadata


def _run(cmd: List[str], cwd: Path, timeout: float) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    """``(sdist, wheel)``, built offline from a copy of the tree (so that no
    build folder lands in the working tree and two builds cannot race)."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("the `build` package is not installed (install the test extra)")
    if _setuptools_is_too_old():
        pytest.skip("needs setuptools>=77, the build backend of pyproject.toml (install the test extra)")
    source = tmp_path_factory.mktemp("source")
    for name in SDIST_FILES + SDIST_FOLDERS:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns(*JUNK))
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
         cwd=source, timeout=300)
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, f"built: {sorted(out.iterdir())}"
    return sdists[0], wheels[0]


def _sdist_names(sdist: Path) -> Set[str]:
    """The sdist's member files, relative to its top folder."""
    with tarfile.open(sdist) as archive:
        members = [m.name for m in archive.getmembers() if m.isfile()]
    return {str(PurePosixPath(*PurePosixPath(name).parts[1:])) for name in members}


def _tree_files(folder: str) -> Set[str]:
    """The files under ``ROOT/folder`` that the sdist must carry."""
    found = set()
    for path in (ROOT / folder).rglob("*"):
        relative = path.relative_to(ROOT)
        junk = any(fnmatch(part, pattern) for part in relative.parts for pattern in JUNK)
        if path.is_file() and not junk:
            found.add(relative.as_posix())
    return found


def _wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode("utf-8"))


@pytest.mark.timeout(400)
def test_sdist_carries_the_whole_project(artifacts: Tuple[Path, Path]) -> None:
    sdist, _ = artifacts
    names = _sdist_names(sdist)
    for expected in SDIST_FILES + ("PKG-INFO", "tests/helpers.py", "tests/conftest.py"):
        assert expected in names, f"{expected} missing from {sdist.name}"
    for folder in SDIST_FOLDERS:
        missing = sorted(_tree_files(folder) - names)
        assert not missing, f"{folder}/ files missing from {sdist.name}: {missing}"
    junk = sorted(n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/_build/" in n)
    assert not junk, f"build leftovers in {sdist.name}: {junk}"


@pytest.mark.timeout(400)
def test_wheel_carries_only_the_importable_code_and_the_licence(artifacts: Tuple[Path, Path]) -> None:
    _, wheel = artifacts
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == WHEEL_TOP_LEVEL
    for expected in ("asyncio_compat/py.typed", "pollers/py.typed"):
        assert expected in names
    dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
    assert f"{dist_info}/licenses/LICENSE" in names  # PEP 639's place for it
    with zipfile.ZipFile(wheel) as archive:
        licence = archive.read(f"{dist_info}/licenses/LICENSE").decode("utf-8")
    assert licence == (ROOT / "LICENSE").read_text(encoding="utf-8")


@pytest.mark.timeout(400)
def test_metadata_states_licence_version_urls_and_pythons(artifacts: Tuple[Path, Path]) -> None:
    _, wheel = artifacts
    metadata = _wheel_metadata(wheel)
    assert metadata["Version"] == asyncio_compat.__version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = {entry.split(",", 1)[0] for entry in metadata.get_all("Project-URL") or []}
    assert urls >= {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    classifiers = set(metadata.get_all("Classifier") or [])
    for minor in range(9, 16):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Development Status :: 5 - Production/Stable" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression only


@pytest.mark.timeout(400)
def test_twine_check_strict_passes_on_both(artifacts: Tuple[Path, Path]) -> None:
    if importlib.util.find_spec("twine") is None:
        pytest.skip("the `twine` package is not installed (install the test extra)")
    output = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, artifacts)],
                  cwd=artifacts[0].parent, timeout=120)
    assert output.count("PASSED") == 2, output


@pytest.mark.timeout(400)
def test_unpacked_sdist_collects_its_own_tests(artifacts: Tuple[Path, Path], tmp_path: Path) -> None:
    # what once failed: the sdist lacked tests/helpers.py and every module
    # importing it failed at collection.  The whole suite from the sdist is
    # run by hand at release time (CONTRIBUTING.md); collecting it here, with
    # the unpacked sources first on sys.path, catches a missing file.
    unpacked = _unpack(artifacts[0], tmp_path)
    # a collection error makes pytest exit 2, which _run reports with the output
    output = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                  cwd=unpacked, timeout=240)
    collected = re.search(r"(\d+) tests? collected", output)
    assert collected is not None and int(collected.group(1)) > 100, output[-3000:]


def _unpack(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):  # 3.12+ and the 3.9-3.11 security releases
            archive.extraction_filter = tarfile.data_filter
        archive.extractall(into)
    return next(into.iterdir())


def _git_files() -> Set[str]:
    """The files git tracks, or would (untracked, not ignored); skips outside a checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist): nothing to compare the sdist with")
    output = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, timeout=60)
    return {line for line in output.splitlines() if line and (ROOT / line).is_file()}


@pytest.mark.timeout(400)
def test_sdist_holds_nothing_git_does_not(artifacts: Tuple[Path, Path]) -> None:
    # what once shipped: setuptools' setup.cfg and shims/asyncio_compat.egg-info/,
    # which made importlib.metadata see an installed asyncio-compat on shims/
    names = _sdist_names(artifacts[0])
    stray = sorted(names - _git_files() - {"PKG-INFO"})
    assert stray == [], f"in the sdist but not in git: {stray}"


def _readme_commands(readme: Path) -> List[str]:
    text = readme.read_text(encoding="utf-8")
    start = text.index("```sh\n") + len("```sh\n")
    block = text[start:text.index("\n```", start)]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.timeout(400)
def test_readme_commands_work_in_the_unpacked_sdist(artifacts: Tuple[Path, Path], tmp_path: Path) -> None:
    # what once failed: the README said `bash .ci/run` and the sdist had no .ci/.
    # The full test command runs from the unpacked sdist in .ci/run's last stage;
    # here: the demo runs, and the test command plans its run (--dry-run).
    unpacked = _unpack(artifacts[0], tmp_path)
    demo, tests = _readme_commands(unpacked / "README.md")
    env = dict(os.environ, PYTHONPATH="")
    program, script = demo.split()
    assert program == "python3"
    done = subprocess.run([sys.executable, script], cwd=unpacked, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "the reply matches" in done.stdout, done.stdout + done.stderr
    assert tests.split()[:2] == ["bash", ".ci/run"] and os.access(unpacked / ".ci" / "run", os.X_OK)
    planned = _run(["bash", ".ci/run", "--dry-run"], cwd=unpacked, timeout=120)
    assert re.search(r"tox run-parallel .* -e \S*py3\d+", planned), planned[-3000:]


@pytest.mark.parametrize("config", ["tox.ini", ".github/workflows/ci.yml", ".ci/run"])
def test_the_test_files_ci_names_exist(config: str) -> None:
    # a renamed or split test module must not leave a CI job running nothing
    path = ROOT / config
    if not path.exists():
        pytest.skip(f"{config} is not in this tree (an unpacked sdist leaves .github out)")
    named = set(re.findall(r"\b(test_[a-z0-9_]+\.py)\b", path.read_text(encoding="utf-8")))
    missing = sorted(name for name in named if not (ROOT / "tests" / name).exists())
    assert missing == [], f"{config} names test files that do not exist"
