"""The asyncio-compat benchmark suite: ``python -m benchmarks`` (or ``tox -e bench``).

Servers and the client run in separate processes on loopback; every echoed
byte is checked.  See ``docs/performance.rst`` for what is measured, how,
and the figures of a full run.
"""
