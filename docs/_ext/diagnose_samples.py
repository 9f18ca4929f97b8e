"""``.. diagnose-output:: NAME``: the output of ``python3 -m asyncio_compat``
for one of the situations below, rendered by the command's own code
(:mod:`asyncio_compat.diagnose`) with this release's version, so that the
debugging page shows what the command prints today.

Options: ``:json:`` for the ``--json`` output, ``:warnings-only:`` for the
``warning:`` lines alone.  The situations are fixed (a Python 3.13 virtual
environment in /tmp/venv, Linux's pollers, a descriptor limit of 20000);
the warnings are those the command derives from them.
"""

from __future__ import annotations

from typing import Any, Dict, List

from docutils import nodes
from docutils.parsers.rst import Directive, directives

import asyncio_compat
from asyncio_compat import diagnose as d

SITE = "/tmp/venv/lib/python3.13/site-packages"
PYTHON = d.PythonInfo("3.13.0", "CPython", "/tmp/venv/bin/python")
LINUX = d.PollerInfo(("epoll", "poll", "select"), "epoll", None, None)
LIMITS = d.LimitInfo(True, 20000, 20000)


def _ours(name: str) -> d.ModuleInfo:
    return d.ModuleInfo(name, d.OURS, f"{SITE}/{name}.py")


def _frozen(name: str, *dists: str) -> d.ModuleInfo:
    found = tuple(d.DistributionInfo(*dist.split()) for dist in dists)
    return d.ModuleInfo(name, d.FROZEN, f"{SITE}/{name}/__init__.py", found)


def report(modules: Any, poller: d.PollerInfo = LINUX, python: d.PythonInfo = PYTHON,
           location: str = f"{SITE}/asyncio_compat") -> d.Report:
    modules = tuple(modules)
    return d.Report(asyncio_compat.__version__, location, python, modules, poller, LIMITS,
                    d.collect_warnings(modules, poller, LIMITS))


SAMPLES: Dict[str, d.Report] = {
    # the wheel installed into a fresh Python 3.13 venv
    "venv": report([_ours("asyncore"), _ours("asynchat"), _ours("smtpd")]),
    # Python 3.11, asyncio-compat imported from a checkout, install() not called
    "stdlib": report(
        [d.ModuleInfo("asyncore", d.STDLIB, "/usr/lib/python3.11/asyncore.py"),
         d.ModuleInfo("asynchat", d.STDLIB, "/usr/lib/python3.11/asynchat.py"),
         d.ModuleInfo("smtpd", d.STDLIB, "/usr/lib/python3.11/smtpd.py")],
        python=d.PythonInfo("3.11.2", "CPython", "/usr/bin/python3"),
        location="/home/me/asyncio-compat/asyncio_compat",
    ),
    # the venv after `pip install pyasyncore standard-asynchat`
    "frozen": report([_frozen("asyncore", "pyasyncore 1.0.5", "standard-asyncore 3.13.0"),
                      _frozen("asynchat", "standard-asynchat 3.13.0"), _ours("smtpd")]),
    # the venv with ASYNCIO_COMPAT_POLLER=select
    "select": report([_ours("asyncore"), _ours("asynchat"), _ours("smtpd")],
                     poller=d.PollerInfo(LINUX.available, "select", "select", None)),
}


def render(name: str, as_json: bool = False, warnings_only: bool = False) -> str:
    sample = SAMPLES[name]
    if as_json:
        return d.render_json(sample)
    text = d.render_text(sample)
    if warnings_only:
        lines = text.splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith("warning: "))
        text = "\n".join(lines[first:]) + "\n"
    return text


class DiagnoseOutput(Directive):
    required_arguments = 1
    option_spec = {"json": directives.flag, "warnings-only": directives.flag}

    def run(self) -> List[nodes.Node]:
        name = self.arguments[0]
        if name not in SAMPLES:
            raise self.error(f"diagnose-output: no sample {name!r} (known: {', '.join(SAMPLES)})")
        text = render(name, "json" in self.options, "warnings-only" in self.options).rstrip("\n")
        block = nodes.literal_block(text, text)
        block["language"] = "json" if "json" in self.options else "text"
        return [block]


def setup(app: Any) -> Dict[str, Any]:
    app.add_directive("diagnose-output", DiagnoseOutput)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
