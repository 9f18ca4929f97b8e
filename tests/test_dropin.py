"""The distribution as legacy code meets it: ``import asyncore`` after ``pip install``.

The wheel is built offline from a copy of the source tree, installed into a
fresh virtual environment of Python 3.12 and of 3.13 (the versions without a
standard library ``asyncore``), and a script written the 3.11 way runs there
with DeprecationWarning turned into an error.  ``asyncio_compat.install()``,
for 3.11 and older, is tested on the running interpreter in a subprocess,
because it rewrites ``sys.modules``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from email.parser import Parser
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import asyncio_compat

ROOT = Path(__file__).resolve().parent.parent
# what the wheel is built from; tests, docs and the rest stay out of it
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "asyncio_compat", "pollers", "shims",
           "build_backend")  # the in-tree build backend (pyproject.toml: backend-path)
VENV_VERSIONS = ("3.12", "3.13")


# -- finding interpreters ----------------------------------------------------


def _pyenv_root() -> Optional[Path]:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    try:
        proc = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        proc = None
    if proc is not None and proc.returncode == 0 and proc.stdout.strip():
        return Path(proc.stdout.strip())
    fallback = Path.home() / ".pyenv"
    return fallback if fallback.is_dir() else None


def _reports_version(python: str, minor: str) -> bool:
    # a pyenv shim or a stale link may exist without a working interpreter
    try:
        proc = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == minor


def _release_key(path: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in Path(path).parent.parent.name.split("."))


def find_interpreter(minor: str) -> Optional[str]:
    """The newest pyenv CPython ``minor`` (e.g. "3.12"), else ``pythonX.Y`` on PATH."""
    candidates: List[str] = []
    root = _pyenv_root()
    if root is not None:
        pattern = str(root / "versions" / f"{minor}.*" / "bin" / f"python{minor}")
        # plain releases only: skips free-threaded (3.13.0t) and dev builds
        found = [p for p in glob.glob(pattern)
                 if re.fullmatch(r"\d+\.\d+\.\d+", Path(p).parent.parent.name)]
        candidates += sorted(found, key=_release_key, reverse=True)
    on_path = shutil.which(f"python{minor}")
    if on_path:
        candidates.append(on_path)
    return next((c for c in candidates if _reports_version(c, minor)), None)


# -- the wheel ---------------------------------------------------------------


def _major_minor(distribution: str) -> Optional[Tuple[int, int]]:
    try:
        numbers = re.findall(r"\d+", version(distribution))
    except PackageNotFoundError:
        return None
    return int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0


def _why_no_wheel_here() -> Optional[str]:
    """None when this interpreter can build the wheel offline and install it
    into another Python's venv; else the reason it cannot."""
    pip = _major_minor("pip")
    if pip is None or pip < (22, 3):
        return "needs pip>=22.3 (for pip --python)"
    setuptools = _major_minor("setuptools")
    if setuptools is None:
        return "setuptools is not installed (install the test extra)"
    if setuptools < (77, 0):
        # pyproject.toml's PEP 639 licence fields need the backend of [build-system]
        return "needs setuptools>=77 (install the test extra)"
    return None


def _run(cmd: List[str], timeout: float) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline from a copy of the sources.

    A copy, so that setuptools' build/ and egg-info folders never land in
    the shared working tree and two builds cannot race on them.
    """
    reason = _why_no_wheel_here()
    if reason is not None:
        pytest.skip(f"cannot build and install a wheel offline here: {reason}")
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("wheelhouse")
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
          "--disable-pip-version-check", "--no-index", "-w", str(out)], timeout=180)
    built = sorted(out.glob("asyncio_compat-*.whl"))
    assert len(built) == 1, f"expected one wheel, found {built}"
    return built[0]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_wheel_holds_both_packages_and_the_top_level_modules(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for expected in ("asyncore.py", "asynchat.py", "asyncio_compat/__init__.py",
                     "asyncio_compat/asyncore.py", "asyncio_compat/asynchat.py",
                     "asyncio_compat/py.typed", "pollers/__init__.py", "pollers/py.typed"):
        assert expected in names, f"{expected} missing from {wheel.name}"
    strays = sorted(n for n in names if n.split("/")[0] in ("shims", "tests", "docs", "examples"))
    assert not strays, f"files that do not belong in the wheel: {strays}"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_wheel_holds_every_module_of_both_packages(wheel: Path) -> None:
    # pyproject.toml lists the packages by name: a new subpackage must be added there
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    sources = sorted(
        path.relative_to(ROOT).as_posix()
        for package in ("asyncio_compat", "pollers")
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )
    assert len(sources) > 10
    missing = [path for path in sources if path not in names]
    assert not missing, f"source modules missing from {wheel.name}: {missing}"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_wheel_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(meta_name).decode("utf-8"))
    assert metadata["Name"] == "asyncio-compat"
    assert metadata["Version"] == asyncio_compat.__version__
    assert metadata["Requires-Python"] == ">=3.9"
    # no run-time dependency: every requirement belongs to an extra
    runtime = [req for req in metadata.get_all("Requires-Dist") or [] if "extra ==" not in req]
    assert runtime == [], f"run-time dependencies: {runtime}"
    assert set(metadata.get_all("Provides-Extra") or []) >= {"test", "docs"}


# -- the wheel in fresh 3.12 / 3.13 environments ---------------------------------


@pytest.fixture(scope="module", params=VENV_VERSIONS)
def venv_python(request: pytest.FixtureRequest, wheel: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Tuple[str, str]:
    """``(minor version, venv python)``: a fresh venv of each Python without a
    stdlib asyncore, holding nothing but the wheel.

    This interpreter's pip installs into it (``pip --python``): much quicker
    than bootstrapping pip into every venv with ensurepip.
    """
    minor = str(request.param)
    pip = _major_minor("pip")
    if pip is not None and pip < (23, 2):
        # older pips fail installing into a 3.12+ venv (pkgutil.ImpImporter is gone): Debian 12's 23.0.1
        pytest.skip(f"pip {version('pip')} cannot install into a Python {minor} venv (needs pip>=23.2)")
    base = find_interpreter(minor)
    if base is None:
        pytest.skip(f"no Python {minor} found (looked in pyenv versions and on PATH)")
    venv = tmp_path_factory.mktemp(f"venv{minor}")
    _run([base, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    python = str(venv / "bin" / "python")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps",
          "--disable-pip-version-check", "--quiet", str(wheel)], timeout=180)
    return minor, python


def _run_isolated(python: str, script: str, cwd: Path) -> str:
    """Run ``script`` as a file with warnings about deprecation made errors; its stdout.

    ``-I`` keeps the environment and the script's folder out of sys.path,
    so only what the venv has installed can be imported.
    """
    path = cwd / "legacy_app.py"
    path.write_text(textwrap.dedent(script))
    env: Dict[str, str] = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [python, "-I", "-W", "error::DeprecationWarning", str(path)],
        capture_output=True, text=True, timeout=60, cwd=str(cwd), env=env,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return proc.stdout


# Written as 3.11-era code would be: it knows nothing of asyncio_compat.
LEGACY_ECHO = """
    import asynchat
    import asyncore
    import socket
    import sys


    class Shouter(asynchat.async_chat):
        '''Answers each line with the line in capitals, then hangs up.'''

        def __init__(self, sock):
            asynchat.async_chat.__init__(self, sock)
            self.set_terminator(b"\\n")
            self.parts = []

        def collect_incoming_data(self, data):
            self.parts.append(data)

        def found_terminator(self):
            line = b"".join(self.parts)
            self.parts = []
            self.push(line.upper() + b"\\n")
            self.close_when_done()


    class Listener(asyncore.dispatcher):
        def __init__(self):
            asyncore.dispatcher.__init__(self)
            self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            self.set_reuse_addr()
            self.bind(("127.0.0.1", 0))
            self.listen(5)

        def handle_accepted(self, sock, addr):
            Shouter(sock)
            self.close()  # one caller is all this script serves


    class Caller(asyncore.dispatcher_with_send):
        def __init__(self, address, line):
            asyncore.dispatcher_with_send.__init__(self)
            self.line = line
            self.heard = b""
            self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            self.connect(address)

        def handle_connect(self):
            self.send(self.line)

        def handle_read(self):
            self.heard += self.recv(4096)

        def handle_close(self):
            self.close()


    listener = Listener()
    caller = Caller(listener.socket.getsockname(), b"hello from 3.11 code\\n")
    asyncore.loop(timeout=0.2, count=300)
    leftover = len(asyncore.socket_map)
    asyncore.close_all()
    print("heard:", caller.heard.decode("ascii").strip())
    print("channels left:", leftover)
    print("python: %d.%d" % sys.version_info[:2])
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_legacy_echo_script_runs_without_deprecation(venv_python: Tuple[str, str],
                                                     tmp_path: Path) -> None:
    minor, python = venv_python
    out = _run_isolated(python, LEGACY_ECHO, tmp_path)
    assert out.splitlines() == [
        "heard: HELLO FROM 3.11 CODE",
        "channels left: 0",
        f"python: {minor}",
    ], out


SAME_MODULES = """
    import asyncore
    import asynchat
    from asyncore import dispatcher
    import sys
    import asyncio_compat.asynchat
    import asyncio_compat.asyncore

    assert asyncore is asyncio_compat.asyncore, asyncore
    assert asynchat is asyncio_compat.asynchat, asynchat
    assert dispatcher is asyncio_compat.asyncore.dispatcher
    assert sys.modules["asyncore"] is asyncio_compat.asyncore
    assert "site-packages" in asyncore.__file__, asyncore.__file__

    # rebinding the global through the legacy name reaches the implementation
    mine = {}
    asyncore.socket_map = mine
    channel = asyncore.dispatcher()
    channel.create_socket()
    print("landed in rebound map:", list(mine.values()) == [channel])
    channel.close()
    print("rebound map empty after close:", mine == {})
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_top_level_names_are_the_package_modules(venv_python: Tuple[str, str],
                                                tmp_path: Path) -> None:
    out = _run_isolated(venv_python[1], SAME_MODULES, tmp_path)
    assert out.splitlines() == [
        "landed in rebound map: True",
        "rebound map empty after close: True",
    ], out


# -- install() on the running interpreter --------------------------------------


def _run_here(script: str) -> str:
    """Run ``script`` with this interpreter from the project root; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT),
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


@pytest.mark.timeout(120)
def test_install_makes_legacy_imports_ours() -> None:
    out = _run_here("""
        import asyncio_compat
        import asyncio_compat.asynchat as our_chat
        import asyncio_compat.asyncore as our_core

        print("first call returns:", asyncio_compat.install())
        import asynchat
        import asyncore
        from asynchat import async_chat
        print("asyncore ours:", asyncore is our_core)
        print("asynchat ours:", asynchat is our_chat and async_chat is our_chat.async_chat)
        print("second call returns:", asyncio_compat.install())
        import asyncore as again
        print("still ours:", again is our_core)
    """)
    # -W error::DeprecationWarning: had the stdlib copy (3.11 and older) been
    # imported along the way, the script would have died on its warning
    assert out.splitlines() == [
        "first call returns: None",
        "asyncore ours: True",
        "asynchat ours: True",
        "second call returns: None",
        "still ours: True",
    ], out


@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="no stdlib asyncore to replace on 3.12+")
def test_install_replaces_an_already_imported_stdlib_copy() -> None:
    out = _run_here("""
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import asynchat as stdlib_chat
            import asyncore as stdlib_core

        import asyncio_compat
        import asyncio_compat.asynchat as our_chat
        import asyncio_compat.asyncore as our_core

        stdlib_file = stdlib_core.__file__
        print("stdlib copy first:", stdlib_core is not our_core and "asyncio_compat" not in stdlib_file)
        asyncio_compat.install()
        import asynchat
        import asyncore
        print("replaced:", asyncore is our_core and asynchat is our_chat)
        print("old reference untouched:", stdlib_core is not asyncore and stdlib_chat is not asynchat)
        print("asynchat builds on ours:", issubclass(asynchat.async_chat, our_core.dispatcher))
    """)
    assert out.splitlines() == [
        "stdlib copy first: True",
        "replaced: True",
        "old reference untouched: True",
        "asynchat builds on ours: True",
    ], out
