"""Run ``python -m trio_asgi ... --workers N`` (or ``--reload``) and watch its log.

Tests wait for log lines (``await server.wait_for(...)``) and for process conditions with
timeouts; nothing sleeps for a fixed time to synchronize.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.e2e.worker_app:app"
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
READY = re.compile(r"Worker (\d+) ready")
# Generous: a loaded 2-core machine starts a Python process in well under a second, but
# the bound must never be what makes a test fail.
TIMEOUT = 30


class Supervised:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.log = ""
        self._grew = trio.Event()
        self._reading = True  # until stderr's end of file
        self.host = ""
        self.port = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self) -> int:
        with trio.fail_after(TIMEOUT):
            return await self.process.wait()

    async def collect(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some():
            self.log += chunk.decode(errors="replace")
            self._grew.set()
            self._grew = trio.Event()
        self._reading = False
        self._grew.set()

    async def wait_for(
        self, pattern: str, count: int = 1, *, since: int = 0
    ) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the log from offset ``since``."""
        regex = re.compile(pattern)
        with trio.fail_after(TIMEOUT):
            while True:
                matches = list(regex.finditer(self.log, since))
                if len(matches) >= count:
                    return matches[:count]
                if not self._reading:
                    raise AssertionError(f"log ended; waited for {pattern!r}:\n{self.log}")
                await self._grew.wait()

    def ready_pids(self, since: int = 0) -> list[int]:
        return [int(m.group(1)) for m in READY.finditer(self.log, since)]


@asynccontextmanager
async def supervised(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    listening: bool = True,
    **options: Any,
) -> AsyncIterator[Supervised]:
    """The server with ``args`` on a free port; stopped (SIGTERM) when the block ends."""
    argv = [sys.executable, "-m", "trio_asgi", *args, "--port", "0", "--no-access-log"]
    process = await trio.lowlevel.open_process(
        argv,
        cwd=cwd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        **options,
    )
    server = Supervised(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.collect)
            if listening:
                [match] = await server.wait_for(LISTENING.pattern)
                server.host, server.port = match.group(1), int(match.group(2))
            yield server
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await server.wait()
            nursery.cancel_scope.cancel()  # workers may hold stderr open a moment longer
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def http_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """One request on a fresh connection (``Connection: close``): status and body."""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            response = b""
            while data := await stream.receive_some():
                response += data
    head, _, body = response.partition(b"\r\n\r\n")
    if not head:
        raise ConnectionError("closed without a response")
    return int(head.split(b" ", 2)[1]), body


async def get_pid(server: Supervised) -> int:
    status, body = await http_get(server.host, server.port, "/pid")
    assert status == 200, body
    return int(body)


class Held:
    """A ``GET /hold`` kept open: its first chunk says which worker holds it."""

    def __init__(self, stream: trio.SocketStream, pid: int) -> None:
        self.stream = stream
        self.pid = pid

    @classmethod
    async def open(cls, server: Supervised, path: str = "/hold") -> Held:
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream(server.host, server.port)
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while not re.search(rb"\r\n\r\n[0-9a-f]+\r\n\w+\n", data):
                chunk = await stream.receive_some()
                if not chunk:
                    raise ConnectionError(f"closed early: {data!r}")
                data += chunk
        first = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[1].strip()
        return cls(stream, int(first) if first.isdigit() else 0)

    async def rest(self) -> bytes:
        """Everything until the server closes."""
        data = b""
        with trio.fail_after(TIMEOUT):
            while chunk := await self.stream.receive_some():
                data += chunk
        return data

    async def close(self) -> None:
        await self.stream.aclose()


def websocket_session(url: str, opened: Callable[[int], None]) -> int | None:
    """In a thread: open, learn the worker's pid, then wait for the server's close code."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("pid?")
        pid = int(ws.recv(timeout=TIMEOUT))
        trio.from_thread.run_sync(opened, pid)
        try:
            ws.recv(timeout=TIMEOUT)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
    return None


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition we cannot be told about (another process's state), with a bound."""
    with trio.fail_after(TIMEOUT):
        while not condition():
            await trio.sleep(0.02)
    assert condition(), what
