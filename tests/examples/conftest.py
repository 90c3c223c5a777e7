"""Fixtures for the example tests: real servers as subprocesses (see example_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from example_servers import RunServer, ServerProcess


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
