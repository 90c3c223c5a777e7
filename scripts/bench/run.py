#!/usr/bin/env python3
"""Benchmark trio_asgi against Hypercorn (trio) and Uvicorn, interleaved, on this machine.

    .venv/bin/python scripts/bench/run.py [--rounds 3] [--quick] [--servers ...] [--workloads ...]

Run it with the project's venv: trio_asgi is served by this interpreter, the peers by
``.bench/peers-venv`` (created on first use). ``--help`` lists every option.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    # Run as a file, Python puts scripts/bench/ on sys.path; the harness is a package
    # (scripts.bench) whose modules import each other relatively, so put the repo there.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from scripts.bench.harness import main as harness_main

    return harness_main()


if __name__ == "__main__":
    sys.exit(main())
