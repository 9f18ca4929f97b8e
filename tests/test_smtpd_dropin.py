"""The top-level ``smtpd`` as legacy code meets it: the wheel on 3.12/3.13,
``asyncio_compat.install()`` on the running Python, and ``python -m asyncio_compat``'s report.

The wheel and venv fixtures are test_dropin.py's (one build per session).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Dict, Tuple

import pytest
from test_diagnose import module_entry, run_json, run_ok, text_fields, write_module
from test_dropin import venv_python, wheel  # noqa: F401 (fixtures)
from test_smtpd import cli_session

ROOT = Path(__file__).resolve().parent.parent
SHIMS = ROOT / "shims"
TIMEOUT = 60


def run_script(python: str, script: str, cwd: Path, *flags: str) -> str:
    """Run ``script`` with DeprecationWarning as an error; its stdout (exit 0, quiet stderr)."""
    path = cwd / "legacy_mail.py"
    path.write_text(textwrap.dedent(script))
    env: Dict[str, str] = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [python, *flags, "-W", "error::DeprecationWarning", str(path)],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=str(cwd), env=env,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return proc.stdout


# the source tree first on sys.path, then install(): 3.11-era code after it runs unchanged
INSTALL_FIRST = (
    "import sys\nsys.path.insert(0, %r)\nimport asyncio_compat\nasyncio_compat.install()\n" % str(ROOT)
)

# A test-suite fixture as 3.11-era code wrote it: it knows nothing of asyncio_compat.
LEGACY_SINK = """
    import asyncore
    import smtpd
    import smtplib
    import threading

    received = []


    class Sink(smtpd.SMTPServer):
        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
            received.append((mailfrom, rcpttos, data))


    server = Sink(("127.0.0.1", 0), None)
    serving = threading.Thread(target=asyncore.loop, kwargs={"timeout": 0.05})
    serving.start()
    with smtplib.SMTP(*server.socket.getsockname()) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\nthere")
    server.close()
    serving.join(30)
    import asyncio_compat.smtpd
    print("ours:", smtpd is asyncio_compat.smtpd)
    print("received:", received)
    print("stopped:", not serving.is_alive())
"""

EXPECTED_SINK = [
    "ours: True",
    "received: [('a@example.com', ['b@example.com'], b'Subject: hi\\n\\nthere')]",
    "stopped: True",
]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_holds_the_smtpd_module(wheel: Path) -> None:  # noqa: F811
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"smtpd.py", "asyncio_compat/smtpd.py", "asyncio_compat/_smtp_syntax.py"} <= names


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_legacy_mail_sink_runs_from_the_wheel(venv_python: Tuple[str, str], tmp_path: Path) -> None:  # noqa: F811
    assert run_script(venv_python[1], LEGACY_SINK, tmp_path, "-I").splitlines() == EXPECTED_SINK


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_python_m_smtpd_from_the_wheel(venv_python: Tuple[str, str], tmp_path: Path) -> None:  # noqa: F811
    command = [venv_python[1], "-I", "-u", "-m", "smtpd", "-n", "-d", "-c", "DebuggingServer"]
    body = b"Subject: wheel\r\n\r\nfrom the wheel"
    printed, status, err = cli_session(command, body, "SIGTERM", cwd=tmp_path)
    assert "b'from the wheel'\n" in printed
    assert status == 0 and "Traceback" not in err, err


def test_install_makes_import_smtpd_ours(tmp_path: Path) -> None:
    script = """
        import sys
        import asyncio_compat
        asyncio_compat.install()
        print("not imported by install():", "asyncio_compat.smtpd" not in sys.modules)
        import smtpd
        import asyncio_compat.smtpd
        print("ours:", smtpd is asyncio_compat.smtpd)
        print("on our asynchat:", smtpd.asynchat is asyncio_compat.asynchat)
    """
    env_root = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=env_root,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "not imported by install(): True", "ours: True", "on our asynchat: True",
    ]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="no stdlib smtpd to replace on 3.12+")
def test_install_replaces_an_already_imported_stdlib_smtpd(tmp_path: Path) -> None:
    script = """
        import sys
        sys.path.insert(0, %r)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import smtpd as stdlib_smtpd
        import asyncio_compat
        asyncio_compat.install()
        import smtpd
        import asyncio_compat.smtpd
        print("stdlib first:", stdlib_smtpd is not asyncio_compat.smtpd)
        print("replaced:", smtpd is asyncio_compat.smtpd)
    """ % str(ROOT)
    out = run_script(sys.executable, script, tmp_path)
    assert out.splitlines() == ["stdlib first: True", "replaced: True"]


def test_legacy_sink_after_install_on_this_python(tmp_path: Path) -> None:
    script = INSTALL_FIRST + textwrap.dedent(LEGACY_SINK)
    assert run_script(sys.executable, script, tmp_path).splitlines() == EXPECTED_SINK


# -- python -m asyncio_compat -------------------------------------------------------------------


def test_report_names_our_smtpd_drop_in() -> None:
    assert module_entry(run_json(), "smtpd") == {
        "kind": "asyncio_compat", "origin": str(SHIMS / "smtpd.py"),
        "distributions": [], "shared_file": False,
    }
    rows, warnings = text_fields(run_ok())
    assert rows["smtpd"] == f"{SHIMS / 'smtpd.py'}  [asyncio_compat]"
    assert warnings == []


def test_report_after_install_names_the_package_module() -> None:
    code = (
        "import asyncio_compat; asyncio_compat.install()\n"
        "from asyncio_compat.diagnose import main; main(['--json'])\n"
    )
    entry = module_entry(run_json(path=[ROOT], code=code), "smtpd")
    assert (entry["kind"], entry["origin"]) == ("asyncio_compat", str(ROOT / "asyncio_compat" / "smtpd.py"))


def test_report_without_the_drop_in() -> None:
    report = run_json(path=[ROOT], no_site=True)
    entry = module_entry(report, "smtpd")
    if sys.version_info < (3, 12):
        assert entry["kind"] == "stdlib"
    else:
        assert entry["kind"] == "missing"
        assert "import smtpd fails on this Python: pip install asyncio-compat" in str(report["warnings"])


def test_unknown_smtpd_file_shadowing_us_is_named(tmp_path: Path) -> None:
    origin = write_module(tmp_path, "smtpd", as_package=False)
    report = run_json(path=[tmp_path, ROOT, SHIMS])
    assert module_entry(report, "smtpd")["kind"] == "other"
    assert [w for w in report["warnings"] if "smtpd" in str(w)] == [
        f"import smtpd gives a file that is neither asyncio_compat nor the standard library "
        f"({origin}), which shadows asyncio_compat; fix: rename or remove {origin}, or call "
        f"asyncio_compat.install() before anything imports smtpd"
    ]
