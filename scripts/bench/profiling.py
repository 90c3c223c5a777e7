"""Where trio_asgi spends its time per message or request, and its memory per connection.

    .venv/bin/python -m scripts.bench.profiling [--workloads ws-echo-small http-hello
                                                 ws-handshake ws-idle]
                                                [--duration 10] [--top 20]

Runs trio_asgi (pinned like in the benchmark) under cProfile, recording only the measured
window of the load (see ``profiled_server``), then divides by the number of messages or
requests served in it. cProfile slows Python calls down, so absolute µs are inflated; the
shares and the calls per operation are what to read (a coroutine function counts one call
per resumption, so ``send_all`` shows 2 calls for one send that waited once).
``ws-handshake`` profiles the opening storm of ``ws-idle`` (per handshake, with thousands of
connections already open); the garbage collector's share is timed apart. ``ws-idle``
uses tracemalloc instead: Python allocations per idle connection, by allocation site. The
``.pstats`` and snapshot files stay in ``.bench/profile/`` for snakeviz or ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pstats
import signal
import sys
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .loadgen import build_wsload, have_wrk, run_wrk, run_wsload
from .servers import APP, BENCH_DIR, REPO, SERVERS, BenchError, RunningServer, ServerSpec
from .workloads import WORKLOADS, Settings, _echo_args

PROFILABLE: Final = ("ws-echo-small", "ws-echo-large", "http-hello", "ws-handshake", "ws-idle")


@dataclass(frozen=True)
class ProfiledTrioAsgi(ServerSpec):
    """trio_asgi's usual benchmark command, run through ``profiled_server``."""

    output: str = ""
    memory: bool = False
    collector: bool = True

    def command(self, python: str, port: int, app: str = APP) -> list[str]:
        usual = super().command(python, port, app)  # [python, "-m", "trio_asgi", app, ...]
        mode = ["--memory"] if self.memory else []
        mode += [] if self.collector else ["--no-gc"]
        return [python, "-m", "scripts.bench.profiled_server", *mode, self.output, *usual[3:]]


def package_of(filename: str, function: str) -> str:
    """Group a profile entry by the code it belongs to."""
    if filename == "~":
        if "_socket.socket" in function or "select.epoll" in function:
            return "socket and epoll calls (C)"
        return "other C builtins"
    path = filename.replace(os.sep, "/")
    if "/trio_asgi/" in path:
        return "trio_asgi"
    for package in ("trio", "outcome", "h11", "wsproto"):
        if f"/{package}/" in path:
            return "trio" if package == "outcome" else package
    if path.endswith("scripts/bench/app.py"):
        return "the bench app"
    return "Python stdlib and other"


def short(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    path = filename.replace(os.sep, "/")
    for marker in ("/site-packages/", f"{REPO.as_posix()}/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line} {function}"


def summarize(stats_path: Path, ops: int, op: str, top: int) -> list[str]:
    stats = pstats.Stats(str(stats_path)).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())
    by_package: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, own, _, _) in stats.items():
        by_package[package_of(filename, function)] += own
    lines = [
        f"{ops:,} {op}s in the profiled window; {1e6 * total / ops:.1f} µs of profiled CPU "
        f"per {op} (inflated by cProfile: read the shares).",
        *_collector_line(Path(f"{stats_path}.gc"), ops, op, total),
        "",
        f"| code | µs/{op} | share |",
        "|---|---:|---:|",
    ]
    for package, own in sorted(by_package.items(), key=lambda item: -item[1]):
        lines.append(f"| {package} | {1e6 * own / ops:.1f} | {100 * own / total:.1f}% |")
    lines += [
        "",
        f"| function (own time) | calls/{op} | own µs/{op} | share | cumulative µs/{op} |",
        "|---|---:|---:|---:|---:|",
    ]
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    for (filename, line, function), (_, calls, own, cumulative, _) in ranked:
        lines.append(
            f"| `{short(filename, line, function)}` | {calls / ops:.2f} | "
            f"{1e6 * own / ops:.2f} | {100 * own / total:.1f}% | {1e6 * cumulative / ops:.1f} |"
        )
    return lines


def _collector_line(path: Path, ops: int, op: str, total: float) -> list[str]:
    """The collector's time, which cProfile spreads over whatever function allocated."""
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    seconds, (young, middle, full) = record["seconds"], record["collections"]
    return [
        "",
        f"Of that, the garbage collector: {1e6 * seconds / ops:.1f} µs per {op} "
        f"({100 * seconds / total:.0f}%; collections by generation: {young}, {middle}, {full}).",
    ]


def _wait_for(path: Path, timeout: float = 15.0) -> None:
    """The profile is written by a signal handler in the server, a moment after we ask."""
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size == size and size > 0:
            return
        size = path.stat().st_size if path.exists() else -1
        time.sleep(0.2)
    raise BenchError(f"the server did not write {path}")


def memory_summary(
    before: Path, after: Path, connections: int, rss_kib: float, top: int
) -> list[str]:
    """Python allocations made while the idle connections opened, per connection."""
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old, new = old.filter_traces(ignore), new.filter_traces(ignore)
    by_line = new.compare_to(old, "lineno")
    total = sum(stat.size_diff for stat in by_line)
    by_package: dict[str, int] = defaultdict(int)
    for stat in new.compare_to(old, "filename"):
        by_package[package_of(stat.traceback[0].filename, "")] += stat.size_diff
    lines = [
        f"{connections:,} idle connections; the server's RSS grew {rss_kib:.1f} KiB per "
        f"connection, of which tracemalloc sees {total / connections / 1024:.1f} KiB of Python "
        "allocations (the rest: allocator overhead, fragmentation, and what tracemalloc itself "
        "holds).",
        "",
        "| code | bytes/connection | share |",
        "|---|---:|---:|",
    ]
    for package, size in sorted(by_package.items(), key=lambda item: -item[1]):
        lines.append(f"| {package} | {size / connections:,.0f} | {100 * size / total:.1f}% |")
    lines += [
        "",
        "| allocated at | bytes/connection | blocks/connection |",
        "|---|---:|---:|",
    ]
    for stat in sorted(by_line, key=lambda stat: -stat.size_diff)[:top]:
        frame = stat.traceback[0]
        where = short(frame.filename, frame.lineno, "").strip()
        lines.append(
            f"| `{where}` | {stat.size_diff / connections:,.0f} | "
            f"{stat.count_diff / connections:.1f} |"
        )
    return lines


def profile_memory(settings: Settings, out: Path, top: int) -> list[str]:
    """tracemalloc over the opening of ``idle_connections`` WebSocket connections."""
    snapshot = out / "ws-idle.tracemalloc"
    before = Path(f"{snapshot}.before")
    snapshot.unlink(missing_ok=True)
    before.unlink(missing_ok=True)
    base = SERVERS["trio_asgi"]
    spec = ProfiledTrioAsgi(base.name, base.label, base.peer, output=str(snapshot), memory=True)
    with RunningServer(spec, sys.executable, out / "ws-idle.log") as server:
        server.wait_ready()
        run_wsload(server, ["--path", "/ws", "--connections", "8", "--duration", "0.2"])

        def edge(kind: str) -> None:
            if kind in ("measure_start", "measure_end"):
                os.kill(server.pid, signal.SIGUSR1 if kind == "measure_start" else signal.SIGUSR2)
                _wait_for(before if kind == "measure_start" else snapshot)

        n = settings.idle_connections
        args = ["--path", "/ws", "--mode", "idle", "--connections", str(n), "--hold", "0.5"]
        args += ["--timeout", str(settings.timeout), "--rss-pid", str(server.pid)]
        load = run_wsload(server, args, on_event=edge)
        server.stop()
    rss = (load.result["rss_after_kb"] - load.result["rss_before_kb"]) / n
    title = f"### ws-idle memory: {n:,} connections, tracemalloc"
    return [title, "", *memory_summary(before, snapshot, n, rss, top), ""]


def profile(
    workload: str, settings: Settings, out: Path, top: int, collector: bool = True
) -> list[str]:
    if workload == "ws-idle":
        return profile_memory(settings, out, top)
    stats_path = out / f"{workload}.pstats"
    stats_path.unlink(missing_ok=True)
    Path(f"{stats_path}.gc").unlink(missing_ok=True)
    base = SERVERS["trio_asgi"]
    spec = ProfiledTrioAsgi(
        base.name, base.label, base.peer, output=str(stats_path), collector=collector
    )
    with RunningServer(spec, sys.executable, out / f"{workload}.log") as server:
        server.wait_ready()

        def edge(kind: str) -> None:
            if kind == "measure_start":
                os.kill(server.pid, signal.SIGUSR1)
            elif kind == "measure_end":
                os.kill(server.pid, signal.SIGUSR2)

        if workload == "http-hello":
            connections = settings.http_connections
            run_wrk(server, connections=connections, duration=settings.warmup)
            edge("measure_start")
            load = run_wrk(server, connections=connections, duration=settings.duration)
            edge("measure_end")
            ops = int(load.result["requests"])
        elif workload == "ws-handshake":
            run_wsload(server, ["--path", "/ws", "--connections", "8", "--duration", "0.2"])
            ops = settings.idle_connections
            args = ["--path", "/ws", "--mode", "idle", "--connections", str(ops), "--hold", "0.5"]
            args += ["--concurrency", str(settings.idle_concurrency)]
            run_wsload(server, [*args, "--timeout", str(settings.timeout)], on_event=edge)
        else:
            small = workload == "ws-echo-small"
            args = _echo_args(
                settings.small_connections if small else settings.large_connections,
                settings.small_size if small else settings.large_size,
                not small,
                settings,
            )
            load = run_wsload(server, args, on_event=edge)
            ops = int(load.result["messages"])
        _wait_for(stats_path)
        server.stop()
    if workload == "ws-handshake":
        title = f"### ws-handshake: the opening of ws-idle ({ops:,} connections)"
        op = "handshake"
    else:
        title = f"### {workload}: {WORKLOADS[workload].describe(settings)}"
        op = WORKLOADS[workload].op
    return [title, "", *summarize(stats_path, ops, op, top), ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.profiling", description=__doc__)
    parser.add_argument(
        "--workloads", nargs="+", default=["ws-echo-small", "http-hello"], choices=PROFILABLE
    )
    parser.add_argument("--duration", type=float, default=10.0, help="profiled seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unprofiled seconds first")
    parser.add_argument("--top", type=int, default=20, help="functions listed per workload")
    parser.add_argument(
        "--idle-connections", type=int, default=2000, help="connections for ws-idle (2000)"
    )
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="switch the garbage collector off in the profiled server (shares without its pauses)",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "profile")
    args = parser.parse_args(argv)
    settings = dataclasses.replace(
        Settings(),
        duration=args.duration,
        warmup=args.warmup,
        idle_connections=args.idle_connections,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    build_wsload()
    report = ["## Where trio_asgi spends its time and memory", ""]
    for workload in args.workloads:
        if workload.startswith("http") and not have_wrk():
            print(f"wrk not found: skipping {workload}", file=sys.stderr)
            continue
        report += profile(workload, settings, args.out, args.top, collector=not args.no_gc)
    text = "\n".join(report) + "\n"
    (args.out / "profile.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
