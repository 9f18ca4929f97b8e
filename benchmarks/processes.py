"""Server processes: finding interpreters, starting, pinning, measuring, stopping.

A server runs ``python -m benchmarks.server_main`` and reports readiness on
a pipe.  Its CPU time is read from ``/proc`` (nanoseconds from
``schedstat``, summed over its threads and worker processes) so that a
measurement can count only its own window; its peak RSS is ``ru_maxrss``
from ``wait4()`` once it has exited.
"""

from __future__ import annotations

import glob
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Set

#: the directory holding the ``benchmarks`` package
CODE_ROOT = Path(__file__).resolve().parent.parent


#: where server processes keep their bytecode: outside the checkout, kept across runs
PYCACHE = Path(tempfile.gettempdir()) / f"asyncio-compat-bench-pycache-{getattr(os, 'getuid', int)()}"

#: imports everything a server of any kind may import, so that it is compiled
#: before the first measured server starts (the standard library's asyncore
#: first, where there is one: that is what the 3.11 baseline imports)
_WARM_UP = """
import warnings
warnings.simplefilter("ignore")
try:
    import asynchat, asyncore
except ImportError:
    pass
import asyncio, selectors, benchmarks.server_main, benchmarks.other_servers, asyncio_compat.workers
import asyncio_compat
asyncio_compat.install()
import benchmarks.asyncore_servers
"""

_warmed: Set[str] = set()  # interpreters whose bytecode cache is filled


def server_env() -> Dict[str, str]:
    """The environment of a server process.

    Servers load bytecode from :data:`PYCACHE` (``PYTHONPYCACHEPREFIX``), as
    an installed package does from its ``__pycache__``; compiling our modules
    at every start made the peak RSS of each of our servers about 2 MiB
    higher than 3.11's, whose asyncore comes precompiled.
    """
    env = dict(os.environ, PYTHONPATH=pythonpath(), PYTHONPYCACHEPREFIX=str(PYCACHE))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_bytecode(python: str) -> None:
    """Compile what servers under ``python`` import, once per run; failures are left
    for the server itself to report."""
    if python in _warmed:
        return
    _warmed.add(python)
    try:
        subprocess.run([python, "-c", _WARM_UP], cwd=str(CODE_ROOT), env=server_env(),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        pass


class BenchError(Exception):
    """A measurement that could not be completed: the text says why."""


@dataclass(frozen=True)
class Implementation:
    """One contender: what ``server_main`` runs, and under which interpreter."""

    label: str  #: name in the table and the plot
    impl: str  #: server_main --impl
    python: str  #: interpreter of the server process
    extra: Sequence[str] = ()  #: further server_main arguments
    family: str = ""  #: ours, stdlib, floor, asyncio or workers
    poller: str = ""  #: backend name where one applies
    workers: int = 1


def pythonpath() -> str:
    """PYTHONPATH for server processes: where ``benchmarks`` and our packages live.

    The checkout is preferred; when ``asyncio_compat`` is installed elsewhere,
    its directory is added after it.
    """
    paths = [str(CODE_ROOT)]
    if not (CODE_ROOT / "asyncio_compat").is_dir():
        import asyncio_compat

        paths.append(str(Path(asyncio_compat.__file__).resolve().parent.parent))
    return os.pathsep.join(paths)


def _version_key(path: str) -> List[int]:
    match = re.search(r"/3\.11\.(\d+)", path)
    return [int(match.group(1))] if match else [-1]


def _pyenv_root() -> Optional[str]:
    if shutil.which("pyenv"):
        try:
            found = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            found = None
        if found is not None and found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    return root if os.path.isdir(root) else None


def find_python311(explicit: Optional[str] = None) -> Optional[str]:
    """The CPython 3.11 that runs the standard library baseline, or None.

    In order: ``explicit``; the running interpreter if it is 3.11; the newest
    ``versions/3.11*/bin/python3.11`` under ``pyenv root``; ``python3.11``
    on PATH.
    """
    if explicit:
        return explicit
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    root = _pyenv_root()
    if root:
        found = glob.glob(os.path.join(root, "versions", "3.11*", "bin", "python3.11"))
        if found:
            return max(found, key=_version_key)
    return shutil.which("python3.11")


def interpreter_version(python: str) -> str:
    """``3.11.7``-style version of ``python``; raises BenchError if it does not run."""
    try:
        out = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError(f"cannot run {python}: {exc}") from None
    if out.returncode != 0:
        raise BenchError(f"cannot run {python}: {out.stderr.strip()}")
    return out.stdout.strip()


def cpu_seconds(pids: Sequence[int]) -> Optional[float]:
    """CPU time (user + system) used so far by ``pids`` and their threads, or None.

    Reads ``/proc/<pid>/task/*/schedstat`` (nanoseconds); falls back to the
    10 ms ticks of ``/proc/<pid>/stat``; None without ``/proc``.
    """
    total = 0.0
    for pid in pids:
        one = _schedstat_seconds(pid)
        if one is None:
            one = _stat_seconds(pid)
        if one is None:
            return None
        total += one
    return total


def _schedstat_seconds(pid: int) -> Optional[float]:
    paths = glob.glob(f"/proc/{pid}/task/*/schedstat")
    try:
        return sum(int(Path(p).read_text().split()[0]) for p in paths) / 1e9 if paths else None
    except (OSError, ValueError, IndexError):
        return None


def _stat_seconds(pid: int) -> Optional[float]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def high_water_rss(pid: int) -> Optional[int]:
    """Peak RSS in bytes of ``pid``'s own image (``VmHWM``), or None without ``/proc``.

    Preferred to ``ru_maxrss``: Linux starts a child's ``ru_maxrss`` at the
    RSS of the process that spawned it, so a server started by a client
    holding a 100 MiB payload reported the client's 356 MiB, not its own.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


@dataclass
class ServerProcess:
    """A running benchmark server.  Use as a context manager: it is always stopped."""

    implementation: Implementation
    kind: str
    cpu: Optional[int] = None  #: CPU to pin the server to, or None
    args: Sequence[str] = ()
    port: int = 0
    pids: List[int] = field(default_factory=list)  #: processes whose CPU counts
    result: List[str] = field(default_factory=list)  #: words of a RESULT line
    peak_rss: Optional[int] = None  #: bytes, known after stop() (VmHWM, else ru_maxrss)
    _proc: Optional[subprocess.Popen[bytes]] = None
    _ready: int = -1
    _log: Optional[IO[bytes]] = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def command(self, ready_fd: int) -> List[str]:
        impl = self.implementation
        flags = ["-W", "ignore::DeprecationWarning"] if impl.family == "stdlib" else []
        return [impl.python, *flags, "-m", "benchmarks.server_main", "--impl", impl.impl,
                "--kind", self.kind, "--ready-fd", str(ready_fd), *impl.extra, *self.args]

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait for its READY (or RESULT) line.

        Raises BenchError when it exits or stays silent for ``timeout`` seconds.
        """
        warm_bytecode(self.implementation.python)
        read_end, write_end = os.pipe()
        self._ready = read_end
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (kept open until stop())
        env = server_env()
        try:
            self._proc = subprocess.Popen(
                self.command(write_end), pass_fds=(write_end,), cwd=str(CODE_ROOT), env=env,
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            )
        finally:
            os.close(write_end)
        self.pids = [self._proc.pid]
        try:
            if self.cpu is not None and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(self._proc.pid, {self.cpu})
            self._read_announcement(timeout)
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ fails
            raise

    def _read_announcement(self, timeout: float) -> None:
        line = self._read_line(timeout)
        words = line.split()
        if words and words[0] == "RESULT":
            self.result = words[1:]
        elif len(words) >= 2 and words[0] == "READY":
            self.port = int(words[1])
            self.pids = [int(w) for w in words[2:]] or self.pids
        else:
            raise BenchError(f"{self.implementation.label}: did not start: {self.log_tail()}")

    def _read_line(self, timeout: float) -> str:
        data = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._ready, selectors.EVENT_READ)
            while not data.endswith(b"\n"):
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    return ""
                chunk = os.read(self._ready, 4096)
                if not chunk:
                    return data.decode(errors="replace")
                data += chunk
        return data.decode(errors="replace")

    @property
    def address(self) -> tuple:  # type: ignore[type-arg]
        return ("127.0.0.1", self.port)

    def cpu_time(self) -> Optional[float]:
        """CPU seconds used so far by the server (all its workers), or None."""
        return cpu_seconds(self.pids)

    def alive(self) -> bool:
        """Whether the server still runs (reaping it, with its rusage, if not)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return False
        return not self._try_reap(proc)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server, reap it, record its peak RSS; harmless twice."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self.peak_rss = high_water_rss(proc.pid)
            # not Popen's send_signal()/wait(): they reap the child, and its rusage is lost
            os.kill(proc.pid, signal.SIGTERM)  # the pid is ours until reaped (a zombie at worst)
            deadline = time.monotonic() + timeout
            while not self._try_reap(proc):
                if time.monotonic() > deadline:
                    os.kill(proc.pid, signal.SIGKILL)
                    deadline = float("inf")
                time.sleep(0.01)
        if self._ready >= 0:
            os.close(self._ready)
            self._ready = -1
        if self._log is not None:
            self._log.close()
            self._log = None

    def _try_reap(self, proc: subprocess.Popen[bytes]) -> bool:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if not pid:
            return False
        # ru_maxrss is in KiB on Linux and the BSDs, in bytes on macOS
        scale = 1 if sys.platform == "darwin" else 1024
        if self.peak_rss is None:
            self.peak_rss = usage.ru_maxrss * scale
        proc.returncode = os.waitstatus_to_exitcode(status)
        return True

    def log_tail(self, lines: int = 3) -> str:
        """The last lines the server wrote to stdout/stderr (for error messages)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"
