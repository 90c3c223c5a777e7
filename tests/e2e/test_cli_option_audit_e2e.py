"""Options that act in ``python -m trio_asgi`` itself (importing the app, setting up logging),
which had tests only for the function they are handed to: ``load_app(factory=..., app_dir=...)``
and ``configure_logging(level)``. Here each one is given on the command line of a real process,
so a command line that dropped it would fail. (Audit of tests/test_cli_option_audit.py.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import trio

from .test_cli_e2e import ROOT, server

pytestmark = pytest.mark.e2e

MODULE = textwrap.dedent(
    """
    async def app(scope, receive, send):
        if scope["type"] == "http":
            body = MESSAGE.encode()
            headers = [(b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    MESSAGE = "from the module"

    def make_app():
        global MESSAGE
        MESSAGE = "from the factory"
        return app
    """
)


async def get(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url + "/")
    assert response.status_code == 200
    return response.text


async def test_factory_calls_the_target(tmp_path: Path) -> None:
    (tmp_path / "made.py").write_text(MODULE)
    async with server("made:make_app", "--factory", "--lifespan", "off", cwd=tmp_path) as running:
        assert await get(running.url) == "from the factory"


async def test_app_dir_is_where_the_app_is_imported_from(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "moved.py").write_text(MODULE)
    async with server("moved:app", "--app-dir", str(elsewhere), cwd=tmp_path) as running:
        assert await get(running.url) == "from the module"


async def test_log_level_reaches_the_error_logger() -> None:
    """``--log-level warning`` hides the server's INFO lines ("listening on", "Received
    SIGINT"). The socket is passed in (``--fd``), so no startup line is needed to find it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        argv = [sys.executable, "-m", "trio_asgi", "examples.echo:app", "--fd", str(sock.fileno())]
        argv += ["--log-level", "warning", "--no-access-log"]
        process = await trio.lowlevel.open_process(
            argv,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(sock.fileno(),),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert process.stderr is not None
    try:
        # Queued in the inherited socket's backlog until the server accepts it: answered
        # once the server runs, so it is past its startup line by then.
        with trio.fail_after(30):
            assert await get(f"http://127.0.0.1:{port}") == "Hello, world!\n"
            process.send_signal(signal.SIGINT)
            stderr = b""
            while chunk := await process.stderr.receive_some():
                stderr += chunk
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert stderr == b"", stderr.decode()  # with --log-level info: 3 INFO lines
