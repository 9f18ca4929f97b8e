"""``python -m asyncio_compat``, run as users run it: in a subprocess, in text and --json modes.

Every field is checked against a value this file works out on its own (the
version from the package's source text, the standard library from where
``os`` lives, the backends from the ``select`` module, the limits from
``resource``), and the situations that need a warning are built for real: a
frozen copy on ``sys.path`` with its dist-info, select as the default under a
raised descriptor limit.
"""

from __future__ import annotations

import json
import os
import platform
import re
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIMS = ROOT / "shims"
STDLIB = Path(os.__file__).resolve().parent
TIMEOUT = 60.0
HAS_STDLIB_ASYNCORE = sys.version_info < (3, 12)

resource = pytest.importorskip("resource", reason="no resource module (Windows): limits not settable")
# the command runs in a subprocess, outside the rules: it reports the pollers and limits Linux has
pytestmark = pytest.mark.posix_only("descriptor limits (resource), which Windows lacks")


# -- running the command -----------------------------------------------------


def run(
    *args: str,
    path: Sequence[Path] = (ROOT, SHIMS),
    env: Optional[Dict[str, str]] = None,
    preexec: Optional[Callable[[], None]] = None,
    code: Optional[str] = None,
    no_site: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``python -m asyncio_compat *args`` from the worktree root with PYTHONPATH=``path``
    (or ``python -c code``); the caller's poller choice is not inherited.
    ``no_site`` runs ``python -S``: no site-packages, where tox installs our
    drop-in modules."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASYNCIO_COMPAT_POLLER")}
    child_env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    child_env.update(env or {})
    command = ["-c", code] if code is not None else ["-m", "asyncio_compat", *args]
    flags = ["-S"] if no_site else []
    return subprocess.run(
        [sys.executable, *flags, *command], cwd=ROOT, env=child_env, capture_output=True,
        text=True, timeout=TIMEOUT, preexec_fn=preexec,
    )


def run_ok(*args: str, **kwargs: Any) -> str:
    """The command's stdout, after checking it exited 0 and said nothing on stderr."""
    proc = run(*args, **kwargs)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stderr == ""
    return proc.stdout


def run_json(**kwargs: Any) -> Dict[str, object]:
    report = json.loads(run_ok("--json", **kwargs))
    assert isinstance(report, dict)
    return report


def text_fields(output: str) -> Tuple[Dict[str, str], List[str]]:
    """The ``label  value`` rows and the warnings of the text output, their
    wrapped lines joined again (a warning's ``fix:`` lines after ``"; "``)."""
    rows: Dict[str, str] = {}
    warnings: List[str] = []
    label = ""
    for line in output.splitlines():
        if line.startswith("warning: "):
            warnings.append(line[len("warning: "):])
        elif line.startswith("    fix: "):
            warnings[-1] += "; fix: " + line[len("    fix: "):]
        elif line.startswith(" ") and warnings:
            warnings[-1] += " " + line.strip()
        elif line.startswith(" "):
            rows[label] += "  " + line.strip()
        else:
            label, rows[label] = re.split(r"\s{2,}", line, maxsplit=1)
    return rows, warnings


# -- the truth, worked out here ------------------------------------------------


def expected_version() -> str:
    source = (ROOT / "asyncio_compat" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"$', source, re.MULTILINE)
    assert found is not None
    return found.group(1)


def expected_available() -> List[str]:
    names = ("epoll", "kqueue", "devpoll", "poll", "select")
    return [n for n in names if n == "select" or hasattr(select, n)]


def expected_best() -> str:
    for name in expected_available():
        if name in ("poll", "select"):  # nothing to create: they always work
            return name
        try:
            getattr(select, name)().close()
        except OSError:
            continue
        return name
    raise AssertionError("select is always available")


def expected_limits() -> Tuple[Optional[int], Optional[int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    return (None if soft == unlimited else soft, None if hard == unlimited else hard)


def module_entry(report: Dict[str, object], name: str) -> Dict[str, object]:
    modules = report["modules"]
    assert isinstance(modules, dict)
    entry = modules[name]
    assert isinstance(entry, dict)
    return entry


# -- the plain report ----------------------------------------------------------


def test_json_reports_package_python_pollers_and_limits() -> None:
    report = run_json()
    assert report["version"] == expected_version()
    assert report["location"] == str(ROOT / "asyncio_compat")
    assert report["python"] == {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }
    assert report["pollers"] == {
        "available": expected_available(), "default": expected_best(),
        "environment": None, "error": None,
    }
    soft, hard = expected_limits()
    assert report["limits"] == {"supported": True, "soft": soft, "hard": hard, "fd_setsize": 1024}
    assert report["warnings"] == []


@pytest.mark.parametrize("name", ["asyncore", "asynchat"])
def test_json_the_drop_in_on_the_path_is_ours(name: str) -> None:
    # PYTHONPATH comes before the standard library, so shims/ wins on every version
    assert module_entry(run_json(), name) == {
        "kind": "asyncio_compat", "origin": str(SHIMS / f"{name}.py"),
        "distributions": [], "shared_file": False,
    }


@pytest.mark.parametrize("name", ["asyncore", "asynchat"])
def test_json_without_the_drop_in(name: str) -> None:
    report = run_json(path=[ROOT], no_site=True)
    entry = module_entry(report, name)
    if HAS_STDLIB_ASYNCORE:
        assert entry["kind"] == "stdlib"
        assert entry["origin"] == str(STDLIB / f"{name}.py")
        assert report["warnings"] == []
    else:
        assert entry == {"kind": "missing", "origin": None, "distributions": [], "shared_file": False}
        assert f"import {name} fails on this Python: pip install asyncio-compat" in str(report["warnings"])


def test_json_after_install_resolves_to_the_package_module() -> None:
    code = (
        "import asyncio_compat; asyncio_compat.install()\n"
        "from asyncio_compat.diagnose import main; main(['--json'])\n"
    )
    report = json.loads(run_ok(path=[ROOT], code=code))
    for name in ("asyncore", "asynchat"):
        entry = module_entry(report, name)
        assert entry["kind"] == "asyncio_compat"
        assert entry["origin"] == str(ROOT / "asyncio_compat" / f"{name}.py")
    assert report["warnings"] == []


def test_text_shows_each_field() -> None:
    rows, warnings = text_fields(run_ok())
    assert rows["asyncio_compat"] == f"{expected_version()}  ({ROOT / 'asyncio_compat'})"
    assert rows["python"] == (
        f"{platform.python_version()} {platform.python_implementation()}  ({sys.executable})"
    )
    for name in ("asyncore", "asynchat"):
        assert rows[name] == f"{SHIMS / (name + '.py')}  [asyncio_compat]"
    assert rows["pollers"] == ", ".join(expected_available())
    assert rows["default poller"] == f"{expected_best()}  (best available)"
    soft, hard = expected_limits()
    shown = ["unlimited" if v is None else str(v) for v in (soft, hard)]
    assert rows["descriptors"] == f"soft {shown[0]}, hard {shown[1]}"
    assert warnings == []


@pytest.mark.skipif(not HAS_STDLIB_ASYNCORE, reason="no standard library asyncore after 3.11")
def test_text_names_the_standard_library() -> None:
    rows, _ = text_fields(run_ok(path=[ROOT]))
    assert rows["asyncore"] == (
        f"{STDLIB / 'asyncore.py'}  [the standard library (asyncio_compat.install() replaces it)]"
    )


def test_bad_arguments_exit_nonzero_with_usage() -> None:
    proc = run("--no-such-option")
    assert proc.returncode == 2
    assert "usage: python -m asyncio_compat" in proc.stderr
    assert proc.stdout == ""


# -- the default poller ----------------------------------------------------------


@pytest.mark.parametrize("name", ["poll", "select"])
def test_environment_variable_chooses_the_default(name: str) -> None:
    if name not in expected_available():
        pytest.skip(f"{name} poller not available on this platform")
    env = {"ASYNCIO_COMPAT_POLLER": name}
    pollers = run_json(env=env)["pollers"]
    assert isinstance(pollers, dict)
    assert (pollers["default"], pollers["environment"]) == (name, name)
    rows, _ = text_fields(run_ok(env=env))
    assert rows["default poller"] == f"{name}  (ASYNCIO_COMPAT_POLLER={name})"


def test_unknown_poller_in_the_environment_is_a_warning_not_a_crash() -> None:
    env = {"ASYNCIO_COMPAT_POLLER": "carrier-pigeon"}
    report = run_json(env=env)
    pollers = report["pollers"]
    assert isinstance(pollers, dict)
    assert pollers["default"] is None
    assert "'carrier-pigeon' is unknown" in str(pollers["error"])
    rows, warnings = text_fields(run_ok(env=env))
    assert rows["default poller"] == "none (see the warning)"
    assert len(warnings) == 1 and warnings[0].startswith("ASYNCIO_COMPAT_POLLER='carrier-pigeon': ")


# -- a frozen copy shadowing us ----------------------------------------------------


NOT_TO_IMPORT = "raise RuntimeError('the diagnostic must not import this file')\n"


def write_module(site: Path, module: str, as_package: bool, source: str = NOT_TO_IMPORT) -> Path:
    """``site/<module>.py`` or ``site/<module>/__init__.py`` holding ``source``; returns it."""
    origin = site / module / "__init__.py" if as_package else site / f"{module}.py"
    origin.parent.mkdir(exist_ok=True)
    origin.write_text(source)
    return origin


def write_dist_info(site: Path, distribution: str, version: str, record: Sequence[Path] = ()) -> None:
    """A dist-info in ``site`` as pip leaves it (METADATA, and a RECORD listing ``record``
    relative to ``site`` when given; a dist-info without RECORD is claimed by directory)."""
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    if record:
        lines = [f"{p.relative_to(site).as_posix()},," for p in record] + [f"{info.name}/METADATA,,"]
        (info / "RECORD").write_text("\n".join(lines) + "\n")


def frozen_warning(module: str, copies: str, origin: Path, uninstall: str, reinstall: bool) -> str:
    then = " then pip install --force-reinstall asyncio-compat," if reinstall else ""
    return (
        f"import {module} gives the frozen copy from {copies} ({origin}), which shadows "
        f"asyncio_compat; fix: pip uninstall {uninstall},{then} or call asyncio_compat.install() "
        f"before anything imports {module}"
    )


FROZEN_CASES = [
    # (distribution, module, installed as a package with a RECORD?)
    ("pyasyncore", "asyncore", False),
    ("standard-asyncore", "asyncore", True),
    ("standard-asynchat", "asynchat", True),
    ("standard-smtpd", "smtpd", True),
]


@pytest.mark.parametrize("distribution, module, with_record", FROZEN_CASES)
def test_frozen_copy_on_the_path_is_named_with_its_fix(
    tmp_path: Path, distribution: str, module: str, with_record: bool
) -> None:
    origin = write_module(tmp_path, module, as_package=with_record)
    write_dist_info(tmp_path, distribution, "1.0.4", [origin] if with_record else [])
    path = [tmp_path, ROOT, SHIMS]
    report = run_json(path=path)
    assert module_entry(report, module) == {
        "kind": "frozen", "origin": str(origin),
        "distributions": [{"name": distribution, "version": "1.0.4"}], "shared_file": False,
    }
    other = "asynchat" if module == "asyncore" else "asyncore"
    assert module_entry(report, other)["kind"] == "asyncio_compat"
    rows, warnings = text_fields(run_ok(path=path))
    assert rows[module] == f"{origin}  [frozen copy from {distribution} 1.0.4]"
    expected = frozen_warning(module, f"{distribution} 1.0.4", origin, distribution, reinstall=False)
    assert warnings == report["warnings"] == [expected]


def test_every_frozen_copy_holding_the_file_is_named(tmp_path: Path) -> None:
    # as pip leaves pyasyncore next to standard-asynchat, which pulls in standard-asyncore
    origin = write_module(tmp_path, "asyncore", as_package=True)
    write_dist_info(tmp_path, "pyasyncore", "1.0.5", [origin])
    write_dist_info(tmp_path, "standard-asyncore", "3.13.0", [origin])
    report = run_json(path=[tmp_path, ROOT, SHIMS])
    entry = module_entry(report, "asyncore")
    assert entry["distributions"] == [
        {"name": "pyasyncore", "version": "1.0.5"}, {"name": "standard-asyncore", "version": "3.13.0"},
    ]
    assert report["warnings"] == [frozen_warning(
        "asyncore", "pyasyncore 1.0.5, standard-asyncore 3.13.0", origin,
        "pyasyncore standard-asyncore", reinstall=False,
    )]


def test_frozen_copy_over_our_file_asks_for_a_reinstall(tmp_path: Path) -> None:
    # asyncio-compat installed asyncore.py, then pyasyncore overwrote it
    origin = write_module(tmp_path, "asyncore", as_package=False)
    write_dist_info(tmp_path, "asyncio-compat", "0.1.0", [origin])
    write_dist_info(tmp_path, "pyasyncore", "1.0.4", [origin])
    report = run_json(path=[tmp_path, ROOT, SHIMS])
    assert module_entry(report, "asyncore")["shared_file"] is True
    assert report["warnings"] == [
        frozen_warning("asyncore", "pyasyncore 1.0.4", origin, "pyasyncore", reinstall=True)
    ]


def test_our_drop_in_over_a_frozen_copys_file_warns_about_uninstalling(tmp_path: Path) -> None:
    # pyasyncore installed asyncore.py, then asyncio-compat overwrote it
    origin = write_module(tmp_path, "asyncore", False, (SHIMS / "asyncore.py").read_text())
    write_dist_info(tmp_path, "pyasyncore", "1.0.4", [origin])
    report = run_json(path=[tmp_path, ROOT, SHIMS])
    assert module_entry(report, "asyncore") == {
        "kind": "asyncio_compat", "origin": str(origin),
        "distributions": [{"name": "pyasyncore", "version": "1.0.4"}], "shared_file": True,
    }
    assert report["warnings"] == [
        f"pyasyncore 1.0.4 also installed {origin}: pip uninstall pyasyncore deletes it; "
        f"then run pip install --force-reinstall asyncio-compat"
    ]


def test_unknown_file_shadowing_us_is_named_with_its_fix(tmp_path: Path) -> None:
    origin = write_module(tmp_path, "asyncore", as_package=False)
    report = run_json(path=[tmp_path, ROOT, SHIMS])
    assert module_entry(report, "asyncore")["kind"] == "other"
    assert report["warnings"] == [
        f"import asyncore gives a file that is neither asyncio_compat nor the standard library "
        f"({origin}), which shadows asyncio_compat; fix: rename or remove {origin}, or call "
        f"asyncio_compat.install() before anything imports asyncore"
    ]


def test_a_dist_info_elsewhere_does_not_claim_the_file(tmp_path: Path) -> None:
    # pyasyncore's dist-info (no RECORD) in one directory, an unrelated asyncore.py in another
    site, other = tmp_path / "site", tmp_path / "other"
    site.mkdir()
    other.mkdir()
    write_dist_info(site, "pyasyncore", "1.0.4")
    write_module(other, "asyncore", as_package=False)
    report = run_json(path=[other, site, ROOT, SHIMS])
    assert module_entry(report, "asyncore")["kind"] == "other"


# -- select with more descriptors than it can watch --------------------------------


def _raised_soft_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard RLIMIT_NOFILE is {hard}: cannot raise the soft limit above 1024")
    return 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)


def _soft_limit_setter(soft: int) -> Callable[[], None]:
    def set_in_child() -> None:  # runs in the child between fork and exec
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return set_in_child


def test_select_default_with_a_limit_above_fd_setsize_warns() -> None:
    soft = _raised_soft_limit()
    kwargs: Dict[str, Any] = {"env": {"ASYNCIO_COMPAT_POLLER": "select"}, "preexec": _soft_limit_setter(soft)}
    report = run_json(**kwargs)
    limits = report["limits"]
    assert isinstance(limits, dict)
    assert limits["soft"] == soft
    others = ", ".join(n for n in expected_available() if n != "select")
    expected = (
        f"the default poller is select and the soft descriptor limit is {soft}, above FD_SETSIZE "
        f"(1024): sockets numbered 1024 and above cannot be watched; use another poller ({others}) "
        f"or lower the limit to 1024 (ulimit -n 1024)"
    )
    assert report["warnings"] == [expected]
    _, warnings = text_fields(run_ok(**kwargs))
    assert warnings == [expected]


def test_select_default_within_fd_setsize_does_not_warn() -> None:
    report = run_json(env={"ASYNCIO_COMPAT_POLLER": "select"}, preexec=_soft_limit_setter(1024))
    assert report["warnings"] == []


def test_a_high_limit_with_another_default_does_not_warn() -> None:
    soft = _raised_soft_limit()
    if expected_best() == "select":
        pytest.skip("select is the best backend here")
    report = run_json(preexec=_soft_limit_setter(soft))
    assert report["warnings"] == []
