"""Run the benchmark suite: ``python -m benchmarks --help``."""

from .cli import main

main()
