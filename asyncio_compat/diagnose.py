"""``python -m asyncio_compat``: what this installation gives legacy code, and what may go wrong.

:func:`collect` gathers a :class:`Report`; :func:`render_text` and
:func:`render_json` print it; :func:`main` is the command line.

Nothing here imports ``asyncore``, ``asynchat`` or ``smtpd``: importing our drop-in
rewrites ``sys.modules`` and importing a frozen copy may warn, so the modules
are located with :func:`importlib.util.find_spec` and their files are read,
never run.  The report describes this interpreter with this environment
(``sys.path``, ``ASYNCIO_COMPAT_POLLER``, the descriptor limit), which is
what a program started the same way sees.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import json
import os
import platform
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pollers

from . import __version__
from ._config import ENV_VAR, get_default_poller

if sys.platform != "win32":  # Windows has no resource module and no RLIMIT_NOFILE
    import resource

# select() refuses fds at or above this on Linux, macOS and the BSDs (the
# select backend explains the details); a larger limit lets the process open them.
FD_SETSIZE = 1024

LEGACY_MODULES = ("asyncore", "asynchat", "smtpd")

# Distributions on PyPI that install a frozen copy of CPython 3.11's module
# under the top-level name, which then competes with our drop-in.
FROZEN_DISTRIBUTIONS: Dict[str, Tuple[str, ...]] = {
    "asyncore": ("pyasyncore", "standard-asyncore"),
    "asynchat": ("pyasynchat", "standard-asynchat"),
    "smtpd": ("standard-smtpd",),
}

# ModuleInfo.kind values (stable: the JSON output carries them)
OURS = "asyncio_compat"
STDLIB = "stdlib"
FROZEN = "frozen"
OTHER = "other"
MISSING = "missing"

@functools.cache
def _package_dir() -> Path:
    # computed when asked, not at import: a Path cannot be made while the test
    # suite simulates os.name == "nt" (tests/test_windows_rules.py)
    return Path(__file__).resolve().parent


@dataclass(frozen=True)
class PythonInfo:
    """The running interpreter."""

    version: str
    implementation: str
    executable: str


@dataclass(frozen=True)
class DistributionInfo:
    """An installed distribution (as pip names it) and its version."""

    name: str
    version: str


@dataclass(frozen=True)
class ModuleInfo:
    """Where ``import <name>`` leads, and whose module that is.

    ``kind`` is one of ``"asyncio_compat"``, ``"stdlib"``, ``"frozen"`` (a
    known PyPI copy), ``"other"`` (some other file of that name) or
    ``"missing"`` (the import would fail; ``origin`` is None).
    ``distributions`` are the frozen-copy distributions that installed the
    file (several may share one: standard-asynchat pulls in
    standard-asyncore, which installs the same ``asyncore`` as pyasyncore).
    ``shared_file`` is True when asyncio-compat and a frozen copy both list
    the file, so that uninstalling either deletes it.
    """

    name: str
    kind: str
    origin: Optional[str]
    distributions: Tuple[DistributionInfo, ...] = ()
    shared_file: bool = False


@dataclass(frozen=True)
class PollerInfo:
    """The backends, and the one ``loop()`` uses when given none.

    ``default`` is None when ``ASYNCIO_COMPAT_POLLER`` names a backend that
    this platform lacks; ``error`` then says why.
    """

    available: Tuple[str, ...]
    default: Optional[str]
    environment: Optional[str]
    error: Optional[str]


@dataclass(frozen=True)
class LimitInfo:
    """RLIMIT_NOFILE.  ``soft``/``hard`` None means unlimited, or unknown when
    ``supported`` is False (no resource module, as on Windows)."""

    supported: bool
    soft: Optional[int]
    hard: Optional[int]


@dataclass(frozen=True)
class Report:
    """Everything the command prints."""

    version: str
    location: str
    python: PythonInfo
    modules: Tuple[ModuleInfo, ...]
    pollers: PollerInfo
    limits: LimitInfo
    warnings: Tuple[str, ...]

    def to_dict(self) -> Dict[str, object]:
        """The JSON object of ``--json``; its keys are documented in docs/debugging.rst."""
        return {
            "version": self.version,
            "location": self.location,
            "python": vars(self.python).copy(),
            "modules": {m.name: _module_dict(m) for m in self.modules},
            "pollers": {**vars(self.pollers), "available": list(self.pollers.available)},
            "limits": {**vars(self.limits), "fd_setsize": FD_SETSIZE},
            "warnings": list(self.warnings),
        }


def _module_dict(module: ModuleInfo) -> Dict[str, object]:
    fields = vars(module).copy()
    del fields["name"]  # the key of the enclosing object
    fields["distributions"] = [vars(d).copy() for d in module.distributions]
    return fields


# -- the legacy modules --------------------------------------------------------


def find_origin(name: str) -> Optional[str]:
    """The file ``import <name>`` would load (or has loaded), without importing it.

    None when the import would fail.  A module without a file (built in,
    frozen into the interpreter) gives its spec's origin string.
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # ValueError: in sys.modules without __spec__
        return None
    if spec is None:
        return None
    return spec.origin


def _is_drop_in(name: str, path: Path) -> bool:
    """Whether ``path`` is a top-level module that hands out ``asyncio_compat.<name>``
    (our shim does ``from asyncio_compat import <name>``); its source is parsed, not run."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, ast.ImportFrom) and node.module == "asyncio_compat" and node.level == 0
        and any(alias.name == name for alias in node.names)
        for node in ast.walk(tree)
    )


def _is_ours(name: str, path: Path) -> bool:
    # inside the package: sys.modules already maps the name to our module
    return _package_dir() in path.parents or _is_drop_in(name, path)


def _is_stdlib(path: Path) -> bool:
    paths = sysconfig.get_paths()
    roots = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib") if key in paths}
    return path.parent in roots


def _path_entry(path: Path) -> Path:
    """The sys.path directory that ``path`` (a module or a package's __init__) was found in."""
    return path.parent.parent if path.name == "__init__.py" else path.parent


def _holds(dist: metadata.Distribution, path: Path) -> bool:
    """Whether ``dist`` installed ``path``: by its RECORD, or, when it has none,
    by sitting in the same sys.path directory."""
    files = dist.files
    if files:
        return any(Path(str(dist.locate_file(f))).resolve() == path for f in files)
    return Path(str(dist.locate_file(""))).resolve() == _path_entry(path)


def _owners(dist_names: Sequence[str], path: Path) -> Tuple[DistributionInfo, ...]:
    """Those of the installed distributions ``dist_names`` that hold ``path``."""
    found = (
        # broken metadata may lack either field: fall back to what we looked for
        DistributionInfo(dist.metadata["Name"] or dist_name, dist.version or "unknown")
        for dist_name in dist_names
        for dist in metadata.distributions(name=dist_name)
        if _holds(dist, path)
    )
    return tuple(dict.fromkeys(found))  # one entry per name and version, in order


def locate_module(name: str) -> ModuleInfo:
    """Find ``name`` and say whose it is: ours, the standard library's, a frozen copy's."""
    origin = find_origin(name)
    if origin is None:
        return ModuleInfo(name, MISSING, None)
    path = Path(origin).resolve()
    if _is_stdlib(path):
        return ModuleInfo(name, STDLIB, origin)
    frozen = _owners(FROZEN_DISTRIBUTIONS[name], path)
    if _is_ours(name, path):
        return ModuleInfo(name, OURS, origin, frozen, shared_file=bool(frozen))
    if not frozen:
        return ModuleInfo(name, OTHER, origin)
    shared = bool(_owners(("asyncio-compat",), path))
    return ModuleInfo(name, FROZEN, origin, frozen, shared_file=shared)


# -- pollers and limits --------------------------------------------------------


def poller_info() -> PollerInfo:
    """The available backends and the default, as ``ASYNCIO_COMPAT_POLLER`` leaves it."""
    environment = os.environ.get(ENV_VAR) or None
    try:
        default: Optional[str] = get_default_poller().name
        error = None
    except pollers.UnknownPollerError as exc:
        default, error = None, str(exc)
    return PollerInfo(tuple(pollers.available()), default, environment, error)


def _finite(value: int) -> Optional[int]:
    return None if value == resource.RLIM_INFINITY else value


def limit_info() -> LimitInfo:
    """The soft and hard RLIMIT_NOFILE (None for unlimited)."""
    if sys.platform == "win32":
        return LimitInfo(False, None, None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return LimitInfo(True, _finite(soft), _finite(hard))


# -- warnings ------------------------------------------------------------------


def _names(module: ModuleInfo) -> str:
    return " ".join(d.name for d in module.distributions)


def _names_and_versions(module: ModuleInfo) -> str:
    return ", ".join(f"{d.name} {d.version}" for d in module.distributions)


_REINSTALL = "pip install --force-reinstall asyncio-compat"


def _shadow_fix(module: ModuleInfo) -> str:
    later = f"or call asyncio_compat.install() before anything imports {module.name}"
    if module.kind != FROZEN:
        return f"fix: rename or remove {module.origin}, {later}"
    # the uninstall deletes the file asyncio-compat wrote too
    reinstall = f" then {_REINSTALL}," if module.shared_file else ""
    return f"fix: pip uninstall {_names(module)},{reinstall} {later}"


def _shadow_warning(module: ModuleInfo) -> str:
    if module.kind == FROZEN:
        what = f"the frozen copy from {_names_and_versions(module)}"
    else:
        what = "a file that is neither asyncio_compat nor the standard library"
    return (
        f"import {module.name} gives {what} ({module.origin}), which shadows asyncio_compat; "
        + _shadow_fix(module)
    )


def _missing_warning(module: ModuleInfo) -> str:
    return (
        f"import {module.name} fails on this Python: pip install asyncio-compat (it adds a "
        f"top-level {module.name}), or call asyncio_compat.install() first"
    )


def _shared_file_warning(module: ModuleInfo) -> str:
    return (
        f"{_names_and_versions(module)} also installed {module.origin}: pip uninstall "
        f"{_names(module)} deletes it; then run {_REINSTALL}"
    )


def module_warning(module: ModuleInfo) -> Optional[str]:
    """A problem with where ``import <name>`` leads, with its fix; None if there is none."""
    if module.kind == MISSING:
        return _missing_warning(module)
    if module.kind in (FROZEN, OTHER):
        return _shadow_warning(module)
    if module.shared_file:
        return _shared_file_warning(module)
    return None


def _exceeds_fd_setsize(limits: LimitInfo) -> bool:
    return limits.supported and (limits.soft is None or limits.soft > FD_SETSIZE)


def select_warning(poller: PollerInfo, limits: LimitInfo) -> Optional[str]:
    """A warning when select is the default and the process may open fds it cannot watch."""
    if poller.default != "select" or not _exceeds_fd_setsize(limits):
        return None
    soft = "unlimited" if limits.soft is None else str(limits.soft)
    others = [name for name in poller.available if name != "select"]
    lower = f"lower the limit to {FD_SETSIZE} (ulimit -n {FD_SETSIZE})"
    remedy = f"use another poller ({', '.join(others)}) or {lower}" if others else lower
    return (
        f"the default poller is select and the soft descriptor limit is {soft}, above "
        f"FD_SETSIZE ({FD_SETSIZE}): sockets numbered {FD_SETSIZE} and above cannot be "
        f"watched; {remedy}"
    )


def poller_warning(poller: PollerInfo) -> Optional[str]:
    """A warning when ``ASYNCIO_COMPAT_POLLER`` names no usable backend."""
    if poller.error is None:
        return None
    return f"{ENV_VAR}={poller.environment!r}: {poller.error}; loop() raises until it is fixed or unset"


def collect_warnings(
    modules: Sequence[ModuleInfo], poller: PollerInfo, limits: LimitInfo
) -> Tuple[str, ...]:
    """Every warning the report carries, in the order the text output prints them."""
    found = [module_warning(m) for m in modules]
    found += [poller_warning(poller), select_warning(poller, limits)]
    return tuple(w for w in found if w is not None)


# -- the report ----------------------------------------------------------------


def collect() -> Report:
    """Gather the report for this interpreter and environment.  Raises nothing
    for a broken environment: problems become warnings."""
    modules = tuple(locate_module(name) for name in LEGACY_MODULES)
    poller, limits = poller_info(), limit_info()
    python = PythonInfo(platform.python_version(), platform.python_implementation(), sys.executable)
    return Report(
        __version__, str(_package_dir()), python, modules, poller, limits,
        collect_warnings(modules, poller, limits),
    )


def _describe_module(module: ModuleInfo) -> str:
    if module.kind == MISSING:
        return "not found (import fails)"
    whose = {
        OURS: "asyncio_compat",
        STDLIB: "the standard library (asyncio_compat.install() replaces it)",
        FROZEN: f"frozen copy from {_names_and_versions(module)}",
        OTHER: "unknown file",
    }[module.kind]
    return f"{module.origin}  [{whose}]"


def _describe_default(poller: PollerInfo) -> str:
    if poller.default is None:
        return "none (see the warning)"
    source = f"{ENV_VAR}={poller.environment}" if poller.environment else "best available"
    return f"{poller.default}  ({source})"


def _describe_limits(limits: LimitInfo) -> str:
    if not limits.supported:
        return "unknown (no resource module on this platform)"

    def shown(value: Optional[int]) -> str:
        return "unlimited" if value is None else str(value)

    return f"soft {shown(limits.soft)}, hard {shown(limits.hard)}"


# the text output's lines wrap at this width (a path longer than a line stays whole)
TEXT_WIDTH = 88
_WARNING = "warning: "
_FIX = "    fix: "  # the fix of a warning, on lines of its own, so that it is seen
_HANGING = " " * len(_WARNING)


def _wrapped(first: str, text: str) -> List[str]:
    return textwrap.wrap(text, TEXT_WIDTH, initial_indent=first, subsequent_indent=_HANGING,
                         break_long_words=False, break_on_hyphens=False)


def _warning_lines(warning: str) -> List[str]:
    problem, _, fix = warning.partition("; fix: ")
    return _wrapped(_WARNING, problem) + (_wrapped(_FIX, fix) if fix else [])


def _row_lines(label: str, value: str, width: int) -> List[str]:
    line = f"{label:<{width}}  {value}"
    where, _, whose = value.partition("  [")
    if len(line) <= TEXT_WIDTH or not whose:
        return [line]
    # a module's path, then whose it is beneath it
    return [f"{label:<{width}}  {where}", " " * (width + 2) + "[" + whose]


def render_text(report: Report) -> str:
    """The report as aligned lines for a terminal, wrapped at :data:`TEXT_WIDTH`
    columns, warnings last with each fix on lines of its own."""
    python = report.python
    rows: List[Tuple[str, str]] = [
        ("asyncio_compat", f"{report.version}  ({report.location})"),
        ("python", f"{python.version} {python.implementation}  ({python.executable})"),
    ]
    rows += [(m.name, _describe_module(m)) for m in report.modules]
    rows += [
        ("pollers", ", ".join(report.pollers.available)),
        ("default poller", _describe_default(report.pollers)),
        ("descriptors", _describe_limits(report.limits)),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [line for label, value in rows for line in _row_lines(label, value, width)]
    lines += [line for warning in report.warnings for line in _warning_lines(warning)]
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    """The report as one JSON object (keys in docs/debugging.rst)."""
    return json.dumps(report.to_dict(), indent=2) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (argparse exits 2 on bad arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m asyncio_compat",
        description="Show what asyncio_compat, asyncore, asynchat and smtpd resolve to on this Python.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = collect()
    sys.stdout.write(render_json(report) if args.json else render_text(report))
    return 0
