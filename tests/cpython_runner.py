"""Run one of CPython's own test files against our modules, in this process.

    python tests/cpython_runner.py SUITE POLLER

SUITE is ``test_asyncore``, ``test_asynchat``, ``test_smtpd``, ``test_smtplib`` or
``test_socketserver``;
POLLER is the backend made the process default.  The test file is loaded at
run time from an installed CPython (never copied into this repository):
3.11's for asyncore, asynchat and smtpd, which left the stdlib in 3.12; for
socketserver, this interpreter's own file from 3.12 on and 3.11's before;
for smtplib, always this interpreter's own file, with our smtpd in place of
the one it imports (the stdlib's up to 3.11, a private copy in its test
package from 3.12).
Exit status 0 when the suite passed; 2 when it cannot run here
(:func:`why_unavailable` says why).

Missing ``test.support`` helpers of 3.9 and 3.10 are filled in from the
older names they had there; nothing in the test files is changed.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import sysconfig
import types
import unittest
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# which of our modules stands in for which stdlib name, per suite
SUBSTITUTES = {
    "test_asyncore": {"asyncore": "asyncio_compat.asyncore"},
    "test_asynchat": {"asyncore": "asyncio_compat.asyncore", "asynchat": "asyncio_compat.asynchat"},
    "test_socketserver": {"socketserver": "asyncio_compat.socketserver"},
    "test_smtpd": {
        "asyncore": "asyncio_compat.asyncore", "asynchat": "asyncio_compat.asynchat",
        "smtpd": "asyncio_compat.smtpd",
    },
    # 3.9-3.11 import the stdlib modules; 3.12 its private copies test.support.asyncore
    # and test.smtpd, 3.13 test.support.asyncore and test.support.smtpd
    "test_smtplib": {
        "asyncore": "asyncio_compat.asyncore", "asynchat": "asyncio_compat.asynchat",
        "smtpd": "asyncio_compat.smtpd",
        "test.support.asyncore": "asyncio_compat.asyncore",
        "test.support.asynchat": "asyncio_compat.asynchat",
        "test.support.smtpd": "asyncio_compat.smtpd",
        "test.smtpd": "asyncio_compat.smtpd",
    },
}

# suites taken from this interpreter's own Lib/test, from the version given on
OWN_SUITES = {"test_smtplib": (3, 0), "test_socketserver": (3, 12)}
# suites loaded as ``test.<suite>``: they import siblings relatively (3.12's ``from . import smtpd``)
IN_TEST_PACKAGE = {"test_smtplib"}


def cpython311_test_dirs() -> List[str]:
    """Candidate ``Lib/test`` folders of installed CPython 3.11 interpreters."""
    dirs = []
    env = os.environ.get("ASYNCIO_COMPAT_CPYTHON311_TESTS")
    if env:
        dirs.append(env)
    if sys.version_info[:2] == (3, 11):
        dirs.append(os.path.join(sysconfig.get_paths()["stdlib"], "test"))
    try:
        root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        root = os.path.expanduser("~/.pyenv")
    dirs += sorted(glob.glob(os.path.join(root or "", "versions", "3.11*", "lib", "python3.11", "test")))
    return dirs


def find_suite(suite: str) -> Optional[str]:
    """Path of the CPython test file to run for ``suite`` on this interpreter."""
    if suite in OWN_SUITES and sys.version_info >= OWN_SUITES[suite]:
        own = os.path.join(sysconfig.get_paths()["stdlib"], "test", suite + ".py")
        return own if os.path.isfile(own) else None
    for folder in cpython311_test_dirs():
        path = os.path.join(folder, suite + ".py")
        if os.path.isfile(path):
            return path
    return None


def why_unavailable(suite: str) -> Optional[str]:
    """None when ``suite`` can run on this interpreter, else a reason to skip.

    Both parts may be missing on a distribution's Python: Debian and Ubuntu
    ship ``Lib/test`` separately (libpython3.X-testsuite), keeping only
    ``test.support`` in the main package.
    """
    if importlib.util.find_spec("test.support") is None:
        return (f"{suite}: this Python ({sys.executable}) has no test.support package "
                "(Debian/Ubuntu: apt-get install libpython3.%d-testsuite)" % sys.version_info[1])
    if find_suite(suite) is not None:
        return None
    if suite in OWN_SUITES and sys.version_info >= OWN_SUITES[suite]:
        return (f"{suite}: this Python's own Lib/test/{suite}.py is absent "
                "(Debian/Ubuntu: apt-get install libpython3.%d-testsuite)" % sys.version_info[1])
    looked = ", ".join(cpython311_test_dirs()) or "no CPython 3.11 Lib/test folder found"
    return (f"{suite}: needs CPython 3.11's Lib/test/{suite}.py (looked in: {looked}); install "
            "CPython 3.11 with pyenv, or point ASYNCIO_COMPAT_CPYTHON311_TESTS at its Lib/test "
            "(Debian's python3.11 ships it apart, in libpython3.11-testsuite)")


def fill_in_check_all(support: types.ModuleType) -> None:
    """3.9's check__all__ called ``not_exported`` ``blacklist``: accept the new name."""
    original = support.check__all__
    if "not_exported" in inspect.signature(original).parameters:
        return

    def check__all__(test_case: object, module: object, name_of_module: object = None,
                     extra: object = (), not_exported: object = ()) -> None:
        original(test_case, module, name_of_module, extra, blacklist=not_exported)

    support.check__all__ = check__all__  # type: ignore[attr-defined]


def fill_in_test_support() -> None:
    """Give 3.9/3.10's test.support the helper names the 3.11 files import."""
    import test.support as support

    if not hasattr(support, "requires_working_socket"):
        support.requires_working_socket = lambda *, module=False: None  # type: ignore[attr-defined]
    if not hasattr(support, "has_fork_support"):
        # 3.11 added this flag; test_socketserver reads it at import
        support.has_fork_support = hasattr(os, "fork")  # type: ignore[attr-defined]
    for name in ("os_helper", "threading_helper", "socket_helper", "warnings_helper"):
        try:
            importlib.import_module("test.support." + name)
        except ImportError:
            # 3.9 kept these helpers in test.support itself
            shim = types.ModuleType("test.support." + name)
            shim.__dict__.update({k: v for k, v in vars(support).items() if not k.startswith("__")})
            sys.modules["test.support." + name] = shim
            setattr(support, name, shim)
    fill_in_check_all(support)
    socket_helper = importlib.import_module("test.support.socket_helper")
    if not hasattr(socket_helper, "has_gethostname"):
        # 3.11 added this flag (false only on WASI/Emscripten); test_smtpd reads it at import
        socket_helper.has_gethostname = True  # type: ignore[attr-defined]
    warnings_helper = importlib.import_module("test.support.warnings_helper")
    if not hasattr(warnings_helper, "import_deprecated"):
        warnings_helper.import_deprecated = importlib.import_module  # type: ignore[attr-defined]


def substitute(name: str, module: types.ModuleType) -> None:
    """Make ``import name`` and ``from parent import leaf`` give ``module``."""
    sys.modules[name] = module
    parent, _, leaf = name.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), leaf, module)


def check_substituted(suite: str, module: types.ModuleType) -> None:
    """Raise RuntimeError if the loaded test file holds a module that is not ours
    under one of the substituted names (the suite would test the wrong code)."""
    for name, ours in SUBSTITUTES[suite].items():
        used = getattr(module, name.rpartition(".")[2], None)
        if isinstance(used, types.ModuleType) and used is not sys.modules[ours]:
            raise RuntimeError(f"{suite} imported {used.__name__} ({used.__file__}), not {ours}")


def run(suite: str, poller: str) -> int:
    reason = why_unavailable(suite)
    path = find_suite(suite)
    if reason is not None or path is None:
        print(f"SKIP: {reason}")
        return 2
    sys.path.insert(0, ROOT)
    import asyncio_compat

    asyncio_compat.set_default_poller(poller)
    for stdlib_name, ours in SUBSTITUTES[suite].items():
        substitute(stdlib_name, importlib.import_module(ours))
    fill_in_test_support()
    prefix = "test." if suite in IN_TEST_PACKAGE else "cpython_"
    spec = importlib.util.spec_from_file_location(prefix + suite, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check_substituted(suite, module)
    print(f"running {path} with poller {poller}")
    tests = unittest.defaultTestLoader.loadTestsFromModule(module)
    result = unittest.TextTestRunner(verbosity=1, stream=sys.stdout).run(tests)
    print(f"RESULT ran={result.testsRun} failures={len(result.failures)} errors={len(result.errors)}")
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2]))
