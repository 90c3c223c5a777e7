"""Helpers for the example tests: the real server as a subprocess, and its log.

``python -m trio_asgi ... --port 0`` picks a free port and logs the URL it listens on; we
read that line instead of guessing a port (no race with other tests) and instead of
sleeping (we wait for the line itself, with a timeout).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Generous: a cold interpreter importing a framework on a loaded 2-core machine.
STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0
_LISTENING = re.compile(r"listening on (http://\S+)")


class ServerProcess:
    """``python -m trio_asgi APP`` on 127.0.0.1 and a free port, with its output captured."""

    def __init__(self, app: str, *options: str) -> None:
        command = [sys.executable, "-m", "trio_asgi", app, "--host", "127.0.0.1", "--port", "0"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [*command, *options],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        # Drains the pipe for the whole life of the server, so its logging never blocks.
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not self.url:
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()  # the process ended: wake up wait_ready so that it can report

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def ws_url(self) -> str:
        return "ws://" + self.url.removeprefix("http://")

    def wait_ready(self) -> None:
        if not self._ready.wait(STARTUP_TIMEOUT) or not self.url:
            self.kill()
            raise AssertionError(f"the server did not start; its output:\n{self.output}")

    def stop(self) -> int:
        """SIGTERM (a graceful shutdown), then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the server ignored SIGTERM; its output:\n{self.output}"
            ) from None
        self._reader.join(SHUTDOWN_TIMEOUT)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


RunServer = Callable[..., ServerProcess]


@pytest.fixture
def run_server() -> Iterator[RunServer]:
    """Start servers with ``run_server(app, *options)``; each is stopped at the end of the
    test, must exit with 0 after SIGTERM, and must not have logged a traceback."""
    started: list[ServerProcess] = []

    def start(app: str, *options: str) -> ServerProcess:
        server = ServerProcess(app, *options)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    failures = []
    for server in started:
        code = server.stop()
        if code != 0 or "Traceback" in server.output:
            failures.append(f"exit code {code}; output:\n{server.output}")
    if failures:
        pytest.fail("\n\n".join(failures))


@pytest.fixture
def chat_server(run_server: RunServer) -> ServerProcess:
    """The chat example under ``python -m trio_asgi``."""
    return run_server("examples.chat:app")
