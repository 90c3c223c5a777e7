"""The five workloads of issue 6, each turning one load-generator run into named metrics.

A workload gets a started, ready server and returns a flat ``{metric: value}``; the metric
names are defined once in :data:`METRICS`, which the report and the chart read for labels,
units and which direction is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .loadgen import UPLOAD_LUA, LoadResult, run_wrk, run_wsload
from .servers import APP, BenchError, RunningServer

MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Sizes and durations; the defaults are the issue's, the durations keep a full
    3-round run of four servers near a quarter of an hour."""

    warmup: float = 2.0
    duration: float = 8.0
    small_connections: int = 50
    small_size: int = 32
    large_connections: int = 4
    large_size: int = MIB
    idle_connections: int = 5000
    idle_hold: float = 10.0
    # Handshakes in flight at once while opening the idle connections: a storm, but one
    # every server's accept queue absorbs, so we time the server and not SYN retries.
    idle_concurrency: int = 100
    http_connections: int = 50
    upload_connections: int = 4
    upload_size: int = 256 * 1024
    # A phase of wsload that makes no progress for this long fails the run.
    timeout: float = 30.0


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    digits: int


METRICS: Final = {
    "msgs_per_sec": Metric("msgs/s", True, 0),
    "mib_per_sec": Metric("MiB/s", True, 1),
    "req_per_sec": Metric("req/s", True, 0),
    "handshakes_per_sec": Metric("handshakes/s", True, 0),
    "kib_per_conn": Metric("KiB/conn", False, 1),
    "p50_ms": Metric("p50 ms", False, 2),
    "p99_ms": Metric("p99 ms", False, 2),
    "server_cpu_pct": Metric("server CPU %", False, 0),
    "cpu_us_per_op": Metric("server CPU µs/op", False, 1),
    "rss_mib": Metric("server RSS MiB", False, 1),
    "loadgen_cpu_pct": Metric("load-gen CPU %", False, 0),
    "other_load_pct": Metric("other load %", False, 0),
}


def _common(load: LoadResult, ops: float) -> dict[str, float]:
    """Server CPU over the measured window, per operation, and its memory at the end."""
    cpu = load.server_cpu
    return {
        "server_cpu_pct": 100.0 * cpu / load.window if load.window > 0 else 0.0,
        "cpu_us_per_op": 1e6 * cpu / ops if ops else 0.0,
        "rss_mib": load.end.server.rss_kib / 1024,
        "loadgen_cpu_pct": 100.0 * load.loadgen_cpu / load.loadgen_wall,
        "other_load_pct": 100.0 * load.other_cpu / load.window if load.window > 0 else 0.0,
    }


def _echo_args(connections: int, size: int, binary: bool, settings: Settings) -> list[str]:
    args = ["--path", "/ws", "--mode", "echo", "--connections", str(connections)]
    args += ["--size", str(size), "--duration", str(settings.duration)]
    args += ["--warmup", str(settings.warmup), "--timeout", str(settings.timeout)]
    return [*args, "--binary"] if binary else args


def ws_echo_small(server: RunningServer, settings: Settings) -> dict[str, float]:
    s = settings
    load = run_wsload(server, _echo_args(s.small_connections, s.small_size, False, s))
    r = load.result
    return {
        "msgs_per_sec": r["msgs_per_sec"],
        "p50_ms": r["latency_us"]["p50"] / 1e3,
        "p99_ms": r["latency_us"]["p99"] / 1e3,
        **_common(load, r["messages"]),
    }


def ws_echo_large(server: RunningServer, settings: Settings) -> dict[str, float]:
    s = settings
    load = run_wsload(server, _echo_args(s.large_connections, s.large_size, True, s))
    r = load.result
    return {
        "mib_per_sec": r["mib_per_sec"],
        "msgs_per_sec": r["msgs_per_sec"],
        "p99_ms": r["latency_us"]["p99"] / 1e3,
        **_common(load, r["messages"]),
    }


def ws_idle(server: RunningServer, settings: Settings) -> dict[str, float]:
    s = settings
    # Warm the server's WebSocket path first (lazy imports, first-use caches), so their
    # one-off memory is not divided among the idle connections.
    run_wsload(server, ["--path", "/ws", "--connections", "8", "--duration", "0.2"])
    load = run_wsload(
        server,
        [
            "--path",
            "/ws",
            "--mode",
            "idle",
            "--connections",
            str(s.idle_connections),
            "--concurrency",
            str(s.idle_concurrency),
            "--hold",
            str(s.idle_hold),
            "--timeout",
            str(s.timeout),
            "--rss-pid",
            str(server.pid),
        ],
    )
    r = load.result
    if r["messages"] != s.idle_connections:
        raise BenchError(f"only {r['messages']} of {s.idle_connections} idle connections echoed")
    return {
        "handshakes_per_sec": r["handshakes_per_sec"],
        "kib_per_conn": (r["rss_after_kb"] - r["rss_before_kb"]) / s.idle_connections,
        # CPU per operation here is per handshake: the window is the opening storm.
        **_common(load, s.idle_connections),
    }


def _wrk_checked(load: LoadResult) -> dict[str, float]:
    r = load.result
    if r["non_2xx"] or r["bad_responses"]:
        raise BenchError(f"wrk saw {r['non_2xx']} non-2xx and {r['bad_responses']} wrong responses")
    errors = {kind: n for kind, n in r["socket_errors"].items() if n}
    if errors:
        raise BenchError(f"wrk socket errors: {errors}")
    return {
        "req_per_sec": r["req_per_sec"],
        "p50_ms": r["latency_ms"].get("p50", 0.0),
        "p99_ms": r["latency_ms"].get("p99", 0.0),
        **_common(load, r["requests"]),
    }


def http_hello(server: RunningServer, settings: Settings) -> dict[str, float]:
    s = settings
    if s.warmup > 0:
        run_wrk(server, connections=s.http_connections, duration=s.warmup)
    return _wrk_checked(run_wrk(server, connections=s.http_connections, duration=s.duration))


def _upload(server: RunningServer, settings: Settings, duration: float) -> LoadResult:
    return run_wrk(
        server,
        connections=settings.upload_connections,
        duration=duration,
        script=UPLOAD_LUA,
        env={"BENCH_UPLOAD_SIZE": str(settings.upload_size)},
    )


def http_upload(server: RunningServer, settings: Settings) -> dict[str, float]:
    if settings.warmup > 0:
        _upload(server, settings, settings.warmup)
    metrics = _wrk_checked(_upload(server, settings, settings.duration))
    metrics["mib_per_sec"] = metrics["req_per_sec"] * settings.upload_size / MIB
    return metrics


@dataclass(frozen=True)
class Workload:
    name: str
    transport: str  # "ws" (needs wsload) or "http" (needs wrk)
    primary: str  # the metric the ratios and the chart are about
    describe: Callable[[Settings], str]
    run: Callable[[RunningServer, Settings], dict[str, float]]
    op: str  # what "per op" means in cpu_us_per_op
    app: str = APP
    # An asyncio framework: trio_asgi runs it through its asyncio bridge, Uvicorn natively,
    # and Hypercorn's trio worker cannot run it at all.
    asyncio_app: bool = False

    def runs_on(self, server: str) -> bool:
        return not (self.asyncio_app and server == "hypercorn-trio")


def _kib(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB and n % MIB == 0 else f"{n // 1024} KiB"


WORKLOADS: Final = {
    w.name: w
    for w in (
        Workload(
            "ws-echo-small",
            "ws",
            "msgs_per_sec",
            lambda s: (
                f"{s.small_connections} connections, {s.small_size}-byte text messages, "
                "closed loop (next message when the echo arrived)"
            ),
            ws_echo_small,
            "message",
        ),
        Workload(
            "ws-echo-large",
            "ws",
            "mib_per_sec",
            lambda s: (
                f"{s.large_connections} connections, {_kib(s.large_size)} binary "
                "messages, closed loop; MiB/s of echoed payload"
            ),
            ws_echo_large,
            "message",
        ),
        Workload(
            "ws-idle",
            "ws",
            "handshakes_per_sec",
            lambda s: (
                f"{s.idle_connections} connections opened ({s.idle_concurrency} "
                f"handshakes in flight), held idle {s.idle_hold:g} s, then one echo each; "
                "memory = server RSS growth / connections"
            ),
            ws_idle,
            "handshake",
        ),
        Workload(
            "http-hello",
            "http",
            "req_per_sec",
            lambda s: f"wrk -t1 -c{s.http_connections}, GET / answered with 13 bytes, keep-alive",
            http_hello,
            "request",
        ),
        Workload(
            "http-upload",
            "http",
            "mib_per_sec",
            lambda s: (
                f"wrk -t1 -c{s.upload_connections}, POST of {_kib(s.upload_size)} "
                "bodies, read and counted by the app"
            ),
            http_upload,
            "request",
        ),
        Workload(
            "django-hello",
            "http",
            "req_per_sec",
            lambda s: (
                f"wrk -t1 -c{s.http_connections}, GET / of a Django async view answering 13 "
                "bytes (examples/django_site); trio_asgi through its asyncio bridge"
            ),
            http_hello,
            "request",
            app="examples.django_site.asgi:django_app",
            asyncio_app=True,
        ),
        Workload(
            "quart-ws-echo",
            "ws",
            "msgs_per_sec",
            lambda s: (
                f"{s.small_connections} connections, {s.small_size}-byte text messages "
                "echoed by a Quart websocket route; trio_asgi through its asyncio bridge"
            ),
            ws_echo_small,
            "message",
            app="scripts.bench.quart_app:app",
            asyncio_app=True,
        ),
    )
}
