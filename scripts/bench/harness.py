"""The benchmark run: environment, interleaved schedule, raw results, report and chart.

Schedule: for each workload, ``rounds`` rounds; in each round every server runs once, in an
order rotated by one per round (A B C D, B C D A, ...), so no server always goes first on a
cold cache or last on a warm machine. Each run starts a fresh server process, waits until it
answers, applies one workload, records metrics, and stops the server; a failure is recorded
with its reason and the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from .loadgen import build_wsload, have_wrk
from .report import markdown
from .servers import (
    BENCH_DIR,
    LOADGEN_CPU,
    PEER_PACKAGES,
    REPO,
    SERVER_CPU,
    SERVERS,
    BenchError,
    RunningServer,
    cpu_busy,
    ensure_peers_venv,
    have_taskset,
    package_versions,
    peers_python,
    raise_open_files_limit,
    shared_versions,
)
from .workloads import WORKLOADS, Settings

QUICK: Final = Settings(
    warmup=0.5, duration=2.0, idle_connections=1000, idle_hold=2.0, timeout=15.0
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench/run.py",
        description="Benchmark trio_asgi side by side with Hypercorn and Uvicorn.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs and 1000 idle connections, written to .bench/results unless --out",
    )
    parser.add_argument(
        "--servers", nargs="+", default=list(SERVERS), help=f"any of {', '.join(SERVERS)}"
    )
    parser.add_argument(
        "--workloads", nargs="+", default=list(WORKLOADS), help=f"any of {', '.join(WORKLOADS)}"
    )
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 8)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 2)")
    parser.add_argument("--idle-connections", type=int, help="ws-idle connections (5000)")
    parser.add_argument("--idle-hold", type=float, help="ws-idle seconds held idle (10)")
    parser.add_argument(
        "--out", type=Path, help="directory for bench-results.{md,json} and bench.png (docs)"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="use the peers venv as it is, no pip"
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument(
        "--max-other-load",
        type=float,
        default=25.0,
        metavar="PCT",
        help="repeat a run when other processes used more than PCT%% of a core (default 25)",
    )
    parser.add_argument(
        "--retries", type=int, default=1, help="repeats allowed per run for that (default 1)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        metavar="S",
        help="wait up to S seconds before each run for other processes to calm down (10)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="only rebuild the Markdown and chart from an earlier bench-results.json",
    )
    args = parser.parse_args(argv)
    args.servers = _names(parser, args.servers, SERVERS, "server")
    args.workloads = _names(parser, args.workloads, WORKLOADS, "workload")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _names(
    parser: argparse.ArgumentParser, given: list[str], known: dict[str, Any], what: str
) -> list[str]:
    """Accept space- or comma-separated names; keep the canonical order."""
    names = {n.strip() for item in given for n in item.split(",") if n.strip()}
    unknown = names - set(known)
    if unknown:
        parser.error(f"unknown {what}(s) {sorted(unknown)}; choose from {list(known)}")
    return [name for name in known if name in names]


def settings_from(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else Settings()
    overrides = {
        "duration": args.duration,
        "warmup": args.warmup,
        "idle_connections": args.idle_connections,
        "idle_hold": args.idle_hold,
    }
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def rotated(items: list[str], shift: int) -> list[str]:
    shift %= len(items)
    return items[shift:] + items[:shift]


def schedule(servers: list[str], workloads: list[str], rounds: int) -> list[tuple[str, int, str]]:
    """``(workload, round, server)`` in the order they run."""
    return [
        (workload, r, server)
        for workload in workloads
        for r in range(rounds)
        for server in rotated(
            [
                name
                for name in servers
                if workload not in WORKLOADS or WORKLOADS[workload].runs_on(name)
            ],
            r,
        )
    ]


# -- the machine and the software ---------------------------------------------------------


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError:
        return "unavailable"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(pages / 2**30, 1),
        "kernel": f"{platform.system()} {platform.release()}",
    }


def _installed(*names: str) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def versions(peers: bool) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "trio_asgi": metadata.version("trio-asgi"),
        "trio_asgi_deps": {**shared_versions(), **_installed("trio-asyncio", "django", "quart")},
        "peers": package_versions(peers_python(), PEER_PACKAGES) if peers else {},
        "wrk": _first_line(["wrk", "-v"]).split(" Copyright")[0],
        "gcc": _first_line(["gcc", "--version"]),
    }


# -- running ------------------------------------------------------------------------------


def run_once(workload: str, round_: int, server: str, settings: Settings) -> dict[str, Any]:
    """Start ``server``, apply ``workload`` once, stop it; failures become a record too."""
    spec = SERVERS[server]
    python = str(peers_python()) if spec.peer else sys.executable
    log_path = BENCH_DIR / "logs" / f"{workload}-r{round_ + 1}-{server}.log"
    record: dict[str, Any] = {
        "workload": workload,
        "round": round_,
        "server": server,
        "ok": False,
        "metrics": {},
        "error": None,
        "complaints": [],
        "startup_notes": [],
        "log": str(log_path.relative_to(REPO)),
    }
    began = time.monotonic()
    try:
        with RunningServer(spec, python, log_path, WORKLOADS[workload].app) as running:
            try:
                running.wait_ready()
                record["metrics"] = WORKLOADS[workload].run(running, settings)
                record["ok"] = True
            finally:
                running.stop()
                record["complaints"] = running.complaints()
                record["startup_notes"] = running.startup_notes()
    except BenchError as exc:
        record["error"] = str(exc)
    record["seconds"] = round(time.monotonic() - began, 1)
    return record


def wait_for_quiet(max_other: float, limit: float) -> float:
    """Wait (at most ``limit`` s) until the machine's CPUs, busy with anything, use less than
    ``max_other`` % of a core; between runs nothing of ours runs, so that is all others.
    Past the limit we run anyway (the report shows the other load): a benchmark that never
    finishes helps nobody."""
    began = time.monotonic()
    while limit > 0:
        before, at = cpu_busy(), time.monotonic()
        time.sleep(0.5)
        load = 100.0 * (cpu_busy() - before) / (time.monotonic() - at)
        waited = time.monotonic() - began
        if load <= max_other or waited >= limit:
            return waited
    return 0.0


def run_one(
    workload: str,
    round_: int,
    server: str,
    settings: Settings,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``run_once``, repeated while other processes took more than ``max_other`` % of a
    core during the measured window; the quietest attempt is kept. The choice is made on
    the machine's load, never on the result, so it cannot favour a server."""
    attempts = []
    max_other, retries = args.max_other_load, args.retries
    for attempt in range(1 + retries):
        record = run_once(workload, round_, server, settings)
        attempts.append(record)
        other = record["metrics"].get("other_load_pct", 0.0)
        if not record["ok"] or other <= max_other:
            break
        if attempt < retries:
            print(
                f"  {workload} r{round_ + 1} {server}: other processes used {other:.0f}% of "
                "a core, repeating",
                flush=True,
            )
            wait_for_quiet(max_other, args.quiet_wait)
    ok = [r for r in attempts if r["ok"]]
    best = min(ok, key=lambda r: r["metrics"].get("other_load_pct", 0.0)) if ok else attempts[-1]
    best["attempts"] = len(attempts)
    return best


def _progress(record: dict[str, Any], index: int, total: int) -> str:
    where = f"{record['workload']:<13} r{record['round'] + 1} {record['server']:<15}"
    head = f"[{index}/{total}] {where}"
    if not record["ok"]:
        return f"{head} FAILED: {record['error']}"
    metric = WORKLOADS[record["workload"]].primary
    value = record["metrics"][metric]
    cpu = record["metrics"].get("server_cpu_pct", 0.0)
    other = record["metrics"].get("other_load_pct", 0.0)
    note = " (server logged, see report)" if record["complaints"] else ""
    return (
        f"{head} {metric}={value:,.1f} cpu={cpu:.0f}% other={other:.0f}% "
        f"({record['seconds']:.0f}s){note}"
    )


def render(results: dict[str, Any], out: Path, chart: bool) -> None:
    """Write bench-results.md (and bench.png) from the raw results."""
    out.mkdir(parents=True, exist_ok=True)
    png = out / "bench.png"
    drew = False
    if chart:
        drew = draw_chart(out / "bench-results.json", png)
    (out / "bench-results.md").write_text(markdown(results, png.name if drew else None))


def draw_chart(results_json: Path, png: Path) -> bool:
    """Run chart.py with an interpreter that has matplotlib (the peers venv, normally)."""
    for python in (peers_python(), Path(sys.executable)):
        if not python.exists():
            continue
        result = subprocess.run(
            [str(python), "-m", "scripts.bench.chart", str(results_json), str(png)],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            return True
        if "No module named 'matplotlib'" not in result.stderr:
            print(f"chart failed:\n{result.stderr[-2000:]}", file=sys.stderr)
            return False
    print("no chart: matplotlib is in neither the peers venv nor this Python", file=sys.stderr)
    return False


def _own_signals() -> None:
    """Make ^C and SIGTERM stop the harness *through* its cleanup (servers are stopped by
    their context managers). Also needed because a shell starting us in the background
    without job control leaves SIGINT ignored, and the servers would inherit that: Hypercorn
    ``-w 0`` relies on the default SIGINT to stop."""

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _own_signals()
    out = args.out or (BENCH_DIR / "results" if args.quick else REPO / "docs")
    if args.report is not None:
        results = json.loads(args.report.read_text())
        out = args.out or args.report.parent
        out.mkdir(parents=True, exist_ok=True)
        if args.report.resolve() != (out / "bench-results.json").resolve():
            (out / "bench-results.json").write_text(args.report.read_text())
        render(results, out, chart=not args.no_chart)
        print(f"wrote {out / 'bench-results.md'}")
        return 0

    settings = settings_from(args)
    workloads = list(args.workloads)
    if not have_wrk():
        skipped = [w for w in workloads if WORKLOADS[w].transport == "http"]
        if skipped:
            print(f"wrk not found: skipping {', '.join(skipped)}", file=sys.stderr)
        workloads = [w for w in workloads if WORKLOADS[w].transport != "http"]
    if not workloads:
        print("nothing to run", file=sys.stderr)
        return 2
    raise_open_files_limit()
    peers = any(SERVERS[name].peer for name in args.servers)
    try:
        build_wsload()
        if peers and not args.no_install:
            ensure_peers_venv(sys.stderr)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if peers and not peers_python().exists():
        print(f"error: no peers venv at {peers_python()}", file=sys.stderr)
        return 2

    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "scripts/bench/run.py", *given])
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command,
            "quick": args.quick,
            "rounds": args.rounds,
            "servers": args.servers,
            "workloads": workloads,
            "settings": dataclasses.asdict(settings),
            "machine": machine(),
            "versions": versions(peers),
            "pinning": (
                f"each server alone on CPU {SERVER_CPU} (taskset), load generators on CPU "
                f"{LOADGEN_CPU}"
                if have_taskset()
                else "none (taskset missing or a single CPU)"
            ),
        },
        "runs": [],
    }
    plan = schedule(args.servers, workloads, args.rounds)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "bench-results.json"
    started = time.monotonic()
    for index, (workload, round_, server) in enumerate(plan, 1):
        waited = wait_for_quiet(args.max_other_load, args.quiet_wait)
        if waited >= 1.0:
            print(f"  waited {waited:.0f} s for other processes to quieten", flush=True)
        record = run_one(workload, round_, server, settings, args)
        results["runs"].append(record)
        print(_progress(record, index, len(plan)), flush=True)
        raw.write_text(json.dumps(results, indent=1) + "\n")  # partial results survive a ^C
    results["meta"]["total_seconds"] = round(time.monotonic() - started)
    raw.write_text(json.dumps(results, indent=1) + "\n")
    render(results, out, chart=not args.no_chart)
    print(f"wrote {out / 'bench-results.md'} ({results['meta']['total_seconds']} s)")
    return 0 if all(r["ok"] for r in results["runs"]) else 1
