"""trio_asgi's command line under cProfile, switched on and off by signals.

    python -m scripts.bench.profiled_server OUT.pstats APP [trio_asgi options]

SIGUSR1 starts profiling, SIGUSR2 stops it and writes ``OUT.pstats``. Profiling only the
measured window (and not startup, imports or warm-up) is what makes "per message" numbers
honest: the harness sends the signals on wsload's measure_start/measure_end.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from types import FrameType


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m scripts.bench.profiled_server OUT.pstats APP [options]")
    output, server_args = argv[0], argv[1:]
    profiler = cProfile.Profile()

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(output)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)

    from trio_asgi.cli import main as serve

    serve(server_args)


if __name__ == "__main__":
    main(sys.argv[1:])
