"""trio_asgi's command line under cProfile or tracemalloc, switched on and off by signals.

    python -m scripts.bench.profiled_server [--memory] OUT APP [trio_asgi options]

cProfile (default): SIGUSR1 starts profiling, SIGUSR2 stops it and writes ``OUT`` (pstats).
``--memory``: tracemalloc runs from the start; SIGUSR1 takes a snapshot, SIGUSR2 takes a
second one and writes both to ``OUT`` and ``OUT.before`` for comparison.

Recording only the measured window (not startup, imports or warm-up) is what makes "per
message" and "per connection" numbers honest: the profiling script sends the signals on
wsload's measure_start/measure_end.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import tracemalloc
from types import FrameType


def main(argv: list[str]) -> None:
    memory = argv[:1] == ["--memory"]
    if memory:
        argv = argv[1:]
    if len(argv) < 2:
        sys.exit("usage: python -m scripts.bench.profiled_server [--memory] OUT APP [options]")
    output, server_args = argv[0], argv[1:]
    profiler = cProfile.Profile()

    def start(signum: int, frame: FrameType | None) -> None:
        if memory:
            tracemalloc.take_snapshot().dump(output + ".before")
        else:
            profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        if memory:
            tracemalloc.take_snapshot().dump(output)
        else:
            profiler.disable()
            profiler.dump_stats(output)

    if memory:
        tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)

    from trio_asgi.cli import main as serve

    serve(server_args)


if __name__ == "__main__":
    main(sys.argv[1:])
