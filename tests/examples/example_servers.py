"""The real server as a subprocess, for the example tests (``run_server`` in conftest).

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
from collections.abc import Callable
from pathlib import Path

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
        self._signalled = False
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

    def terminate(self) -> None:
        """Ask for a graceful shutdown, once: a second SIGTERM would mean "stop now"."""
        if not self._signalled and self.process.poll() is None:
            self._signalled = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """A graceful shutdown (SIGTERM, unless already sent); returns the exit code."""
        self.terminate()
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
