"""trio_asgi's command line under cProfile or tracemalloc, switched on and off by signals.

    python -m scripts.bench.profiled_server [--memory] [--no-gc] OUT APP [trio_asgi options]

cProfile (default): SIGUSR1 starts profiling, SIGUSR2 stops it and writes ``OUT`` (pstats)
and ``OUT.gc`` (JSON: collections by generation and the seconds they took in the window;
cProfile charges a collection to whichever function happened to allocate, so it is timed
apart). ``--no-gc`` switches the collector off, for shares not spread by its pauses.
``--memory``: tracemalloc runs from the start; SIGUSR1 takes a snapshot, SIGUSR2 takes a
second one and writes both to ``OUT`` and ``OUT.before`` for comparison.

Recording only the measured window (not startup, imports or warm-up) is what makes "per
message" and "per connection" numbers honest: the profiling script sends the signals on
wsload's measure_start/measure_end.
"""

from __future__ import annotations

import cProfile
import gc
import json
import signal
import sys
import time
import tracemalloc
from types import FrameType


def main(argv: list[str]) -> None:
    memory = argv[:1] == ["--memory"]
    if memory:
        argv = argv[1:]
    if argv[:1] == ["--no-gc"]:
        gc.disable()
        argv = argv[1:]
    if len(argv) < 2:
        sys.exit("usage: python -m scripts.bench.profiled_server [--memory] [--no-gc] OUT APP ...")
    output, server_args = argv[0], argv[1:]
    profiler = cProfile.Profile()
    collections = [0, 0, 0]
    collecting = [0.0, 0.0]  # seconds in collections, start of the current one

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[1] = time.perf_counter()
        else:
            collecting[0] += time.perf_counter() - collecting[1]
            collections[info["generation"]] += 1

    def start(signum: int, frame: FrameType | None) -> None:
        if memory:
            tracemalloc.take_snapshot().dump(output + ".before")
        else:
            gc.callbacks.append(on_gc)
            profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        if memory:
            tracemalloc.take_snapshot().dump(output)
        else:
            profiler.disable()
            gc.callbacks.remove(on_gc)
            with open(output + ".gc", "w") as file:
                json.dump({"collections": collections, "seconds": collecting[0]}, file)
            profiler.dump_stats(output)

    if memory:
        tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)

    from trio_asgi.cli import main as serve

    serve(server_args)


if __name__ == "__main__":
    main(sys.argv[1:])
