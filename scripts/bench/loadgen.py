"""The load generators: ``wsload`` (our C WebSocket client, built on demand) and ``wrk``.

Both run pinned to the load-generator core. While they run we sample the server's CPU time
at the edges of the *measured* window (``wsload`` announces them on stdout; for ``wrk`` the
window is the process itself), and ``wait4`` gives the generator's own CPU time, which is
how the report shows that the generator was not the bottleneck.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .servers import (
    BENCH_DIR,
    HOST,
    LOADGEN_CPU,
    BenchError,
    ProcSample,
    RunningServer,
    cpu_busy,
    pinned,
    process_cpu,
)

HERE: Final = Path(__file__).resolve().parent
WSLOAD_SOURCE: Final = HERE / "wsload.c"
WSLOAD: Final = BENCH_DIR / "wsload"
UPLOAD_LUA: Final = HERE / "upload.lua"


@dataclass(frozen=True)
class Edge:
    """The machine at one edge of the measured window."""

    server: ProcSample
    loadgen_cpu: float  # CPU seconds the load generator had used so far
    busy: float  # CPU seconds all cores had been busy since boot

    @classmethod
    def take(cls, server: RunningServer, loadgen_cpu: float) -> Edge:
        return cls(server.sample(), loadgen_cpu, cpu_busy())


@dataclass(frozen=True)
class LoadResult:
    """What one load-generator run measured, plus the machine around its window."""

    result: dict[str, Any]
    start: Edge
    end: Edge
    loadgen_cpu: float  # seconds, user + system, whole run
    loadgen_wall: float  # seconds, whole run

    @property
    def window(self) -> float:
        return self.end.server.at - self.start.server.at

    @property
    def server_cpu(self) -> float:
        return self.end.server.cpu - self.start.server.cpu

    @property
    def other_cpu(self) -> float:
        """CPU seconds used in the window by neither the server nor the load generator:
        other tenants of this machine, which the report shows so a noisy run is visible."""
        loadgen = self.end.loadgen_cpu - self.start.loadgen_cpu
        return max(0.0, self.end.busy - self.start.busy - self.server_cpu - loadgen)


def build_wsload(output: Path = WSLOAD) -> Path:
    """Compile ``wsload.c`` (warnings are errors) unless the binary is newer than it."""
    if output.exists() and output.stat().st_mtime >= WSLOAD_SOURCE.stat().st_mtime:
        return output
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise BenchError("no C compiler (gcc or cc) on PATH to build wsload")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".tmp")
    flags = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"]
    result = subprocess.run(
        [compiler, *flags, "-o", str(partial), str(WSLOAD_SOURCE)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BenchError(f"building wsload failed:\n{result.stderr}")
    partial.replace(output)
    return output


def _wait(proc: subprocess.Popen[str]) -> tuple[int, float]:
    """Reap ``proc`` with ``wait4``: its exit code and its CPU seconds."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def run_wsload(
    server: RunningServer, args: list[str], on_event: Callable[[str], None] | None = None
) -> LoadResult:
    """Run ``wsload`` against ``server``; raise ``BenchError`` with its message on failure.

    ``on_event`` hears ``measure_start`` and ``measure_end`` as they happen (the profiler
    uses them to record exactly the measured window).
    """
    command = pinned(LOADGEN_CPU, [str(WSLOAD), "--host", HOST, "--port", str(server.port), *args])
    began = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    start = end = None
    result: dict[str, Any] = {}
    try:
        for line in proc.stdout:
            event = json.loads(line)
            kind = event.get("event")
            if on_event is not None:
                on_event(kind)
            if kind == "measure_start":
                start = Edge.take(server, process_cpu(proc.pid))
            elif kind == "measure_end":
                end = Edge.take(server, process_cpu(proc.pid))
            elif kind == "result":
                result = event
    except BaseException:
        proc.kill()
        raise
    finally:
        errors = proc.stderr.read().strip()
        code, cpu = _wait(proc)
    wall = time.monotonic() - began
    if code != 0:
        server.check_alive()  # a crashed server explains a failed client best
        raise BenchError(f"wsload exited with {code}: {errors or 'no message'}")
    if start is None or end is None or not result:
        raise BenchError("wsload finished without reporting a measurement")
    return LoadResult(result, start, end, cpu, wall)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    server: RunningServer,
    *,
    connections: int,
    duration: float,
    path: str = "/",
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> LoadResult:
    """One ``wrk -t1`` run; the server is sampled just before and just after it."""
    seconds = max(1, round(duration))  # wrk only takes whole seconds
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(f"http://{HOST}:{server.port}{path}")
    start = Edge.take(server, 0.0)
    began = time.monotonic()
    proc = subprocess.Popen(
        pinned(LOADGEN_CPU, command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **(env or {})),
    )
    assert proc.stdout is not None and proc.stderr is not None
    output = proc.stdout.read()
    errors = proc.stderr.read().strip()
    code, cpu = _wait(proc)
    wall = time.monotonic() - began
    end = Edge.take(server, cpu)
    if code != 0:
        raise BenchError(f"wrk exited with {code}: {errors or output[-500:]}")
    return LoadResult(parse_wrk(output), start, end, cpu, wall)


_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """The numbers we use from ``wrk --latency`` output (and our Lua ``done()`` line).

    Raises ``BenchError`` when the output lacks the request rate, which means wrk's format
    is not the one this parser was written against.
    """
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.MULTILINE)
    if rate is None or total is None:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    latency = {
        f"p{match[1]}": _ms(match[2], match[3])
        for match in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    }
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    bad = re.search(r"^bad responses: (\d+)", text, re.MULTILINE)
    return {
        "requests": int(total[1]),
        "seconds": _ms(total[2], total[3]) / 1e3,
        "req_per_sec": float(rate[1]),
        "latency_ms": latency,
        "socket_errors": dict(
            zip(
                ("connect", "read", "write", "timeout"),
                (int(n) for n in socket_errors.groups()) if socket_errors else (0, 0, 0, 0),
                strict=True,
            )
        ),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "bad_responses": int(bad[1]) if bad else 0,
    }
