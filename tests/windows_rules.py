"""Windows' rules imposed on Linux, so that the loop is tested as it would run there.

CPython 3.11's asyncore ran on Windows, where:

* ``select()`` is the only mechanism: the ``select`` module has no poll,
  epoll, kqueue or devpoll;
* ``select()`` waits on sockets only (a pipe gives WSAENOTSOCK), and with
  three empty sets it fails with WSAEINVAL instead of sleeping;
* a socket closed behind select()'s back gives WSAENOTSOCK, not EBADF; the
  WSA numbers arrive through ``errno`` (``errno.ENOTSOCK`` is 10038 there);
* ``os.fstat()`` fails on socket handles (they are not C runtime fds);
* ``os.name`` is ``"nt"`` (no ``file_dispatcher``), there is no ``os.fork``
  and no ``socket.AF_UNIX``.

The ``windows_rules`` fixture imposes the call-time rules for one test
(:func:`impose`) and sets ``pollers.platform_rules.WINDOWS``, the one flag our code
reads to follow them.  The import-time capabilities (``os.name``, ``os.fork``,
``AF_UNIX``) cannot be changed under modules already imported:
:func:`import_as_on_windows` executes a fresh copy of one module without
them, and :func:`posix_only_reason` names why a test that needs them is
skipped when the whole run follows the rules (``pytest --windows-rules`` or
``ASYNCIO_COMPAT_TEST_WINDOWS_RULES=1``; see tests/conftest.py), and on
Windows itself.  A test that needs what Windows lacks in a way its source
does not name says so with ``@pytest.mark.posix_only("reason")``.

What a test module may use at import is checked apart:
:func:`import_as_windows_would` imports every test module in a fresh
interpreter stripped of what Windows lacks (tests/test_windows_collect.py).
"""

from __future__ import annotations

import errno
import importlib.util
import inspect
import os
import pathlib
import pkgutil
import select
import signal
import socket
import stat
import sys
import traceback
from types import ModuleType
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Tuple

import pytest

import pollers.platform_rules

OPTION = "--windows-rules"
# ``@pytest.mark.posix_only("needs what Windows lacks")``: skipped under the rules
POSIX_ONLY_MARKER = "posix_only"
ENV_VAR = "ASYNCIO_COMPAT_TEST_WINDOWS_RULES"

# what Windows' select module lacks
MISSING_FROM_SELECT = ("poll", "epoll", "kqueue", "devpoll")

SelectResult = Tuple[List[Any], List[Any], List[Any]]


def requested(config: pytest.Config) -> bool:
    """Whether this whole run follows the rules (the option or the environment variable)."""
    return bool(config.getoption(OPTION, default=False)) or os.environ.get(ENV_VAR, "") == "1"


def _is_socket(fd: int, real_fstat: Callable[[int], os.stat_result]) -> bool:
    try:
        return stat.S_ISSOCK(real_fstat(fd).st_mode)
    except OSError:
        return True  # a closed fd: let the real select() report it


def _fd(obj: Any) -> int:
    return obj if isinstance(obj, int) else int(obj.fileno())


def winsock_select(
    real_select: Callable[..., SelectResult], real_fstat: Callable[[int], os.stat_result]
) -> Callable[..., SelectResult]:
    """``select.select`` as Winsock behaves, built on the real one."""

    def select_like_winsock(
        rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any], timeout: Optional[float] = None
    ) -> SelectResult:
        sets = [list(rlist), list(wlist), list(xlist)]
        if not any(sets):
            raise OSError(errno.EINVAL, "select() on nothing (WSAEINVAL under the Windows rules)")
        if any(not _is_socket(_fd(obj), real_fstat) for group in sets for obj in group):
            raise OSError(errno.ENOTSOCK, "select() on a non-socket (WSAENOTSOCK under the Windows rules)")
        try:
            return real_select(*sets, timeout)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise OSError(errno.ENOTSOCK, "select() on a closed socket (WSAENOTSOCK)") from None
            raise

    return select_like_winsock


def windows_fstat(real_fstat: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
    """``os.fstat`` that fails on sockets as it does on Windows' socket handles."""

    def fstat_like_windows(fd: int) -> os.stat_result:
        result = real_fstat(fd)
        if stat.S_ISSOCK(result.st_mode):
            raise OSError(errno.EBADF, "fstat() on a socket handle (EBADF under the Windows rules)")
        return result

    return fstat_like_windows


def impose(monkeypatch: pytest.MonkeyPatch) -> None:
    """Impose the call-time Windows rules until ``monkeypatch`` is undone."""
    real_fstat = os.fstat
    for name in MISSING_FROM_SELECT:
        monkeypatch.delattr(select, name, raising=False)
    monkeypatch.setattr(select, "select", winsock_select(select.select, real_fstat))
    monkeypatch.setattr(os, "fstat", windows_fstat(real_fstat))
    monkeypatch.setattr(pollers.platform_rules, "WINDOWS", True)


@pytest.fixture
def windows_rules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test runs under Windows' rules (see this module's docstring)."""
    import asyncio_compat

    impose(monkeypatch)
    # a default chosen before the rules may name a backend Windows lacks
    asyncio_compat.set_default_poller(None)
    try:
        yield
    finally:
        asyncio_compat.set_default_poller(None)


def import_as_on_windows(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of module ``name``, executed with os.name "nt", no os.fork and no AF_UNIX.

    The copy sits in ``sys.modules`` only while it executes: afterwards the
    imported module is back as it was.  Raises what executing the module raises (an ImportError for a
    module that does not exist on Windows).
    """
    found = importlib.util.find_spec(name)
    assert found is not None and found.origin is not None, name
    spec = importlib.util.spec_from_file_location(name, found.origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with monkeypatch.context() as patch:
        without_posix_capabilities(patch)
        # in sys.modules while it runs, as an import would have it (dataclasses
        # look their module up there); the context puts the original back
        patch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
    return module


def without_posix_capabilities(patch: pytest.MonkeyPatch) -> None:
    """os.name "nt", no os.fork and no AF_UNIX: what our own modules test at import.

    ``Path()`` keeps making POSIX paths: it picks WindowsPath by ``os.name``
    at each call (a class that refuses to exist off Windows), and the files
    really are on this system.
    """
    patch.setattr(os, "name", "nt")
    patch.setattr(sys.modules[pathlib.Path.__module__], "WindowsPath", pathlib.PosixPath)
    patch.delattr(os, "fork", raising=False)
    patch.delattr(socket, "AF_UNIX", raising=False)


# -- a whole interpreter that imports as on Windows (tests/test_windows_collect.py) -------

# POSIX-only modules: importing them fails on Windows.
ABSENT_MODULES = ("resource", "fcntl", "termios", "grp", "pwd", "pty", "tty", "syslog")
ABSENT_FROM_OS = (
    "fork", "forkpty", "register_at_fork", "mkfifo", "killpg", "setsid", "getpgid", "setpgid",
    "getuid", "geteuid", "WNOHANG", "sysconf", "wait3", "wait4", "pipe2", "openpty",
)  # fmt: skip
ABSENT_FROM_SOCKET = ("AF_UNIX", "SO_REUSEPORT")
# everything else public in ``signal`` is absent on Windows (SIGKILL, SIGALRM, setitimer...)
WINDOWS_SIGNAL_NAMES = frozenset(
    (
        "CTRL_BREAK_EVENT", "CTRL_C_EVENT", "Handlers", "NSIG", "SIGABRT", "SIGBREAK", "SIGFPE",
        "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM", "SIG_DFL", "SIG_IGN", "Signals",
        "default_int_handler", "getsignal", "raise_signal", "set_wakeup_fd", "signal",
        "strsignal", "valid_signals",
    )
)  # fmt: skip
WINDOWS_SELECT_NAMES = frozenset(("select", "error"))


def _keep_only(patch: pytest.MonkeyPatch, module: ModuleType, names: FrozenSet[str]) -> None:
    for name in [n for n in vars(module) if not n.startswith("_") and n not in names]:
        patch.delattr(module, name)


def strip_to_windows(patch: pytest.MonkeyPatch) -> None:
    """Remove from this interpreter what Windows lacks, for code imported from now on.

    Meant for a fresh interpreter that only imports, see :func:`import_as_windows_would`.
    """
    for name in ABSENT_MODULES:
        patch.setitem(sys.modules, name, None)  # "import resource" raises ImportError
    for name in ABSENT_FROM_OS:
        patch.delattr(os, name, raising=False)
    for name in ABSENT_FROM_SOCKET:
        patch.delattr(socket, name, raising=False)
    _keep_only(patch, signal, WINDOWS_SIGNAL_NAMES)
    _keep_only(patch, select, WINDOWS_SELECT_NAMES)


_OUR_PACKAGES = frozenset({"asyncio_compat", "pollers", "asyncore", "asynchat"})


def _drop_our_modules(root: str) -> None:
    # Ours by package name (tox installs them in a venv inside the checkout)
    # or by living in the checkout, but never a venv's site-packages there:
    # a second copy of pytest would make pytest.skip.Exception another class.
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        in_checkout = path.startswith(root) and "site-packages" not in path
        if name.partition(".")[0] in _OUR_PACKAGES or in_checkout:
            del sys.modules[name]


def _import_library() -> None:
    import asyncio_compat
    import pollers

    for info in pkgutil.walk_packages(asyncio_compat.__path__, "asyncio_compat."):
        if not info.name.endswith("__main__"):
            try:
                importlib.import_module(info.name)
            except ImportError:
                pass  # absent on Windows by design (asyncio_compat.workers)
    pollers.platform_rules.WINDOWS = True


def _outcome(name: str) -> str:
    try:
        importlib.import_module(name)
    except pytest.skip.Exception as skipped:  # pytest.skip(allow_module_level=True), importorskip
        return f"skipped: {skipped.msg}"
    except BaseException:
        return "error: " + traceback.format_exc(limit=-3)
    return "ok"


def import_as_windows_would(root: str, names: List[str]) -> Dict[str, str]:
    """Import ``names`` (test-side modules) after :func:`strip_to_windows`; name -> outcome.

    An outcome is "ok", "skipped: <reason>" or "error: <traceback>".  A first
    import of our library, before anything is stripped, loads the standard
    library modules it needs as Linux builds them (they would not work
    stripped: this is not Windows' standard library).  Our library is then
    imported again, stripped and with ``os.name`` "nt" (so
    ``file_dispatcher`` is absent), and then the test modules, with
    ``os.name`` "posix" so that the standard library they load works here.
    """
    _drop_our_modules(root)
    _import_library()  # the standard library as Linux builds it (asyncio needs os.sysconf here)
    _drop_our_modules(root)
    patch = pytest.MonkeyPatch()
    strip_to_windows(patch)
    with patch.context() as as_nt:
        without_posix_capabilities(as_nt)
        _import_library()
    return {name: _outcome(name) for name in names}


# A word in a test's source (or its parameters) -> what it needs that Windows lacks.
_POSIX_ONLY = (
    ("AF_UNIX", "AF_UNIX sockets"),
    ("Unix", "the Unix-socket servers"),
    ("fork", "os.fork()"),
    ("Forking", "os.fork()"),
    ("file_dispatcher", "file_dispatcher (defined on POSIX only, as in 3.11)"),
    ("file_wrapper", "file_wrapper (defined on POSIX only, as in 3.11)"),
    ("os.pipe", "select() on a pipe"),
    ("os.fstat", "os.fstat() on sockets"),
)


def posix_only_reason(item: pytest.Item) -> Optional[str]:
    """Why ``item`` cannot run under the Windows rules, or None if it can.

    A test (or its class or module) marked ``posix_only(reason)`` tests what
    Windows lacks in a way no word in its source shows (a fake kqueue, a
    descriptor limit).  Otherwise looks for the names of POSIX-only features
    in the test function's source and in its id (parameters such as
    "UnixStreamServer").  A test marked ``windows_rules`` handles the rules
    itself and is never skipped.  The same tests skip on Windows itself
    (tests/conftest.py).
    """
    if item.get_closest_marker("windows_rules"):
        return None
    where = f" ({OPTION})" if requested(item.config) else ""  # else on Windows itself
    marked = item.get_closest_marker(POSIX_ONLY_MARKER)
    if marked:
        return f"{marked.args[0]}{where}"
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        source = ""
    for word, feature in _POSIX_ONLY:
        if word in source or word in item.name:
            return f"needs {feature}, which Windows lacks{where}"
    return None
