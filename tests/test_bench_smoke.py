"""Keep the benchmark harness (scripts/bench) from rotting: run it end to end at a tiny
scale against trio_asgi alone, and check that its WebSocket client refuses wrong answers.

No peers (they would need PyPI), no chart, no timing assertions: these tests only prove
that every piece still runs and that a broken server would be caught, not reported as fast.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "scripts" / "bench" / "run.py"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None, reason="needs a C compiler"
)


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    """The harness modules, importable the way run.py makes them importable."""
    import importlib

    monkeypatch.syspath_prepend(str(REPO))
    yield {
        name: importlib.import_module(f"scripts.bench.{name}")
        for name in ("harness", "loadgen", "report")
    }


def test_harness_runs_every_workload_against_trio_asgi(tmp_path: Path) -> None:
    command = [sys.executable, str(RUN), "--servers", "trio_asgi", "--rounds", "1"]
    command += ["--duration", "1", "--warmup", "0", "--idle-connections", "20"]
    command += ["--idle-hold", "0.2", "--retries", "0", "--quiet-wait", "0"]
    command += ["--no-chart", "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    results = json.loads((tmp_path / "bench-results.json").read_text())
    expected = ["ws-echo-small", "ws-echo-large", "ws-idle"]
    if shutil.which("wrk"):
        expected += ["http-hello", "http-upload", "django-hello", "quart-ws-echo"]
    else:
        expected += ["quart-ws-echo"]
        assert "wrk not found" in result.stderr
    assert results["meta"]["workloads"] == expected
    assert [run["workload"] for run in results["runs"]] == expected
    for run in results["runs"]:
        assert run["ok"], run["error"]
        assert not run["complaints"], run["complaints"]
        metrics = run["metrics"]
        assert metrics["server_cpu_pct"] >= 0 and metrics["rss_mib"] > 0
    report = (tmp_path / "bench-results.md").read_text()
    for name in expected:
        assert f"### {name}" in report
    assert "- Machine: " in report and "- Python " in report


def test_profiler_reports_cpu_and_memory_per_operation(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "scripts.bench.profiling", "--workloads", "ws-echo-small"]
    command += ["ws-handshake", "ws-idle", "--duration", "0.5", "--warmup", "0"]
    command += ["--idle-connections", "20"]
    command += ["--top", "3", "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    report = (tmp_path / "profile.md").read_text()
    assert "### ws-echo-small" in report and "messages in the profiled window" in report
    assert "### ws-handshake: the opening of ws-idle (20 connections)" in report
    assert "20 handshakes in the profiled window" in report
    assert "Of that, the garbage collector: " in report  # timed apart from cProfile
    assert "### ws-idle memory: 20 connections" in report
    assert (tmp_path / "ws-echo-small.pstats").stat().st_size > 0

    command = [sys.executable, "-m", "scripts.bench.profiling", "--workloads", "ws-handshake"]
    command += ["--idle-connections", "20", "--no-gc", "--out", str(tmp_path / "no-gc")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "collections by generation: 0, 0, 0" in (tmp_path / "no-gc" / "profile.md").read_text()


# -- the WebSocket client must reject wrong answers ------------------------------------------


def _fake_server(handle: Callable[[socket.socket, bytes], None]) -> tuple[int, threading.Thread]:
    """A one-connection TCP server on loopback whose behaviour ``handle`` scripts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                handle(conn, request)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def _accept_token(request: bytes) -> bytes:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return base64.b64encode(hashlib.sha1(value.strip() + GUID).digest())
    raise AssertionError("no Sec-WebSocket-Key in the handshake")


def _switch(conn: socket.socket, accept: bytes) -> None:
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, "client went away mid-frame"
        data += chunk
    return data


def _run_wsload(bench: dict[str, ModuleType], port: int) -> subprocess.CompletedProcess[str]:
    wsload = bench["loadgen"].build_wsload()
    command = [str(wsload), "--port", str(port), "--connections", "1", "--size", "32"]
    command += ["--duration", "0.2", "--warmup", "0", "--timeout", "5"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_wsload_rejects_a_wrong_accept_token(bench: dict[str, ModuleType]) -> None:
    port, thread = _fake_server(lambda conn, request: _switch(conn, b"d3Jvbmc="))
    result = _run_wsload(bench, port)
    thread.join(5)
    assert result.returncode == 2
    assert "wrong Sec-WebSocket-Accept" in result.stderr


def test_wsload_rejects_a_corrupted_echo(bench: dict[str, ModuleType]) -> None:
    def corrupt(conn: socket.socket, request: bytes) -> None:
        _switch(conn, _accept_token(request))
        head = _recv_exact(conn, 2)
        length = head[1] & 0x7F  # 32-byte messages: no extended length
        key = _recv_exact(conn, 4)
        payload = bytearray(b ^ key[i % 4] for i, b in enumerate(_recv_exact(conn, length)))
        payload[-1] ^= 0x01  # still ASCII, so still valid UTF-8 text: only the bytes differ
        conn.sendall(bytes([0x81, length]) + payload)
        conn.recv(4096)  # let the client judge before we hang up

    port, thread = _fake_server(corrupt)
    result = _run_wsload(bench, port)
    thread.join(5)
    assert result.returncode == 2
    assert "differs at byte 31" in result.stderr


def test_wsload_rejects_a_server_that_closes(bench: dict[str, ModuleType]) -> None:
    def hang_up(conn: socket.socket, request: bytes) -> None:
        _switch(conn, _accept_token(request))
        # Read the whole first frame (2 + 4 + 32 bytes) so closing sends FIN, not RST.
        _recv_exact(conn, 38)

    port, thread = _fake_server(hang_up)
    result = _run_wsload(bench, port)
    thread.join(5)
    assert result.returncode == 2
    assert "server closed the TCP connection" in result.stderr


# -- pure helpers -----------------------------------------------------------------------------

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:8000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.90ms    1.02ms  20.11ms   91.00%
    Req/Sec     8.43k   301.00     8.80k    80.00%
  Latency Distribution
     50%    5.78ms
     75%    6.01ms
     90%  850.00us
     99%    1.20s
  8431 requests in 1.00s, 1.08MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   8410.72
Transfer/sec:      1.08MB
bad responses: 2
"""


def test_parse_wrk_reads_rate_latency_and_errors(bench: dict[str, ModuleType]) -> None:
    parsed = bench["loadgen"].parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 8431
    assert parsed["req_per_sec"] == pytest.approx(8410.72)
    assert parsed["latency_ms"] == pytest.approx(
        {"p50": 5.78, "p75": 6.01, "p90": 0.85, "p99": 1200.0}
    )
    assert parsed["non_2xx"] == 3
    assert parsed["bad_responses"] == 2
    assert parsed["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_parse_wrk_refuses_unknown_output(bench: dict[str, ModuleType]) -> None:
    with pytest.raises(bench["harness"].BenchError):
        bench["loadgen"].parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_schedule_interleaves_and_rotates(bench: dict[str, ModuleType]) -> None:
    plan = bench["harness"].schedule(["a", "b", "c"], ["w"], 3)
    assert [server for _, _, server in plan] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [round_ for _, round_, _ in plan] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_ratios_are_paired_within_rounds(bench: dict[str, ModuleType]) -> None:
    def run(server: str, round_: int, value: float, ok: bool = True) -> dict[str, object]:
        metrics = {"msgs_per_sec": value}
        return {"workload": "w", "server": server, "round": round_, "ok": ok, "metrics": metrics}

    runs = [
        run("trio_asgi", 0, 10.0),
        run("peer", 0, 5.0),
        run("trio_asgi", 1, 30.0),
        run("peer", 1, 10.0),
        run("trio_asgi", 2, 99.0),
        run("peer", 2, 1.0, ok=False),  # a failed run drops its round from the pairing
    ]
    ratios = bench["report"].paired_ratios(runs, "w", "trio_asgi", "peer", "msgs_per_sec")
    assert sorted(ratios) == [2.0, 3.0]
