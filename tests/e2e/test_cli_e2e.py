"""`python -m trio_asgi` as a subprocess, talked to with third-party clients over real sockets."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(rb"listening on (http://\S+)")


class Running:
    def __init__(self, process: trio.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.ws_url = url.replace("http://", "ws://")
        self.stderr = b""

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self) -> int:
        with trio.fail_after(20):
            return await self.process.wait()


async def _read_until_listening(process: trio.Process, collected: list[bytes]) -> str:
    assert process.stderr is not None
    buffer = b""
    with trio.fail_after(20):
        while True:
            chunk = await process.stderr.receive_some()
            if not chunk:
                raise AssertionError(f"server exited before listening: {buffer.decode()}")
            buffer += chunk
            collected.append(chunk)
            match = LISTENING.search(buffer)
            if match:
                return match.group(1).decode()


@asynccontextmanager
async def server(
    *args: str, cwd: Path = ROOT, command: list[str] | None = None
) -> AsyncIterator[Running]:
    argv = (command or [sys.executable, "-m", "trio_asgi"]) + list(args) + ["--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        argv, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env
    )
    collected: list[bytes] = []
    try:
        url = await _read_until_listening(process, collected)
        running = Running(process, url)

        async def drain() -> None:
            assert process.stderr is not None
            while chunk := await process.stderr.receive_some():
                collected.append(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            yield running
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                await running.wait()
        running.stderr = b"".join(collected)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def websocket_echo(url: str, messages: list[str | bytes]) -> list[str | bytes]:
    from websockets.sync.client import connect

    with connect(url, open_timeout=10, close_timeout=10) as ws:
        replies = []
        for message in messages:
            ws.send(message)
            replies.append(ws.recv(timeout=10))
    return replies


async def test_serves_http_and_websocket_and_stops_on_ctrl_c() -> None:
    async with server("examples.echo:app") as running:
        async with httpx.AsyncClient() as http:
            hello = await http.get(running.url + "/")
            echoed = await http.post(running.url + "/echo", content=b"ping")
        assert hello.status_code == 200 and hello.text == "Hello, world!\n"
        assert echoed.text == "ping"
        replies = await trio.to_thread.run_sync(
            websocket_echo, running.ws_url + "/ws", ["hi", b"\x00\x01"]
        )
        assert replies == ["hi", b"\x00\x01"]
        running.send_signal(signal.SIGINT)
        assert await running.wait() == 0
    log = running.stderr.decode()
    assert log.count("listening on") == 1
    assert "Received SIGINT: shutting down gracefully" in log
    assert "Traceback" not in log


async def test_sigterm_is_graceful_and_websockets_get_1001() -> None:
    def connect_then_signal(running: Running) -> int | None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        with connect(running.ws_url + "/ws", open_timeout=10) as ws:
            trio.from_thread.run_sync(running.send_signal, signal.SIGTERM)
            try:
                ws.recv(timeout=10)
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None
        return None

    async with server("examples.echo:app") as running:
        assert await trio.to_thread.run_sync(connect_then_signal, running) == 1001
        assert await running.wait() == 0


async def test_second_signal_stops_at_once(tmp_path: Path) -> None:
    (tmp_path / "stuck_app.py").write_text(
        textwrap.dedent(
            """
            import trio

            async def app(scope, receive, send):
                if scope["type"] == "http":
                    await send({"type": "http.response.start", "status": 200})
                    await send({"type": "http.response.body", "body": b"x", "more_body": True})
                    await trio.sleep_forever()
            """
        )
    )
    async with server(
        "stuck_app:app", "--timeout-graceful-shutdown", "60", cwd=tmp_path
    ) as running:
        host, port = running.url[len("http://") :].split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_some()
        running.send_signal(signal.SIGINT)
        await trio.sleep(0.5)
        assert running.process.returncode is None  # draining: the request is still in flight
        running.send_signal(signal.SIGINT)
        assert await running.wait() == 1  # forced: not a clean shutdown
    assert "stopping now" in running.stderr.decode()


async def test_startup_failure_exits_3(tmp_path: Path) -> None:
    (tmp_path / "failing_app.py").write_text(
        textwrap.dedent(
            """
            async def app(scope, receive, send):
                await receive()
                await send({"type": "lifespan.startup.failed", "message": "no database"})
            """
        )
    )
    result = await trio.run_process(
        [sys.executable, "-m", "trio_asgi", "failing_app:app", "--port", "0"],
        cwd=tmp_path,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 3
    err = result.stderr.decode()
    assert "no database" in err
    assert "Traceback" not in err


async def test_console_script_and_asgi2_detection(tmp_path: Path) -> None:
    script = shutil.which("trio-asgi", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("console script not installed in this environment")
    (tmp_path / "legacy_app.py").write_text(
        textwrap.dedent(
            """
            class App:
                def __init__(self, scope):
                    self.scope = scope

                async def __call__(self, receive, send):
                    if self.scope["type"] == "http":
                        await send({"type": "http.response.start", "status": 200})
                        await send({"type": "http.response.body", "body": b"legacy"})
            """
        )
    )
    async with server("legacy_app:App", cwd=tmp_path, command=[script]) as running:
        async with httpx.AsyncClient() as http:
            assert (await http.get(running.url)).text == "legacy"


async def test_bad_app_exits_2_with_one_line() -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "trio_asgi", "examples.echo:nope"],
        cwd=ROOT,
        capture_stderr=True,
        capture_stdout=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "trio-asgi: error: module 'examples.echo' has no attribute 'nope'\n"
    )


async def test_access_log_and_server_header_flags() -> None:
    async with server("examples.echo:app", "--no-server-header", "--access-log") as running:
        async with httpx.AsyncClient() as http:
            response = await http.get(running.url + "/path?q=1")
    assert "server" not in response.headers


async def test_run_is_the_blocking_form(tmp_path: Path) -> None:
    (tmp_path / "runner.py").write_text(
        textwrap.dedent(
            """
            import trio_asgi
            from examples.echo import app

            trio_asgi.run(app, port=0, access_log=False)
            print("run returned", flush=True)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await trio.lowlevel.open_process(
        [sys.executable, str(tmp_path / "runner.py")],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        url = await _read_until_listening(process, [])
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).status_code == 200
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            assert await process.wait() == 0
        assert process.stdout is not None
        assert await process.stdout.receive_some() == b"run returned\n"
    finally:
        if process.returncode is None:
            process.kill()


async def test_access_log_goes_to_stdout_unless_disabled() -> None:
    for flag, expected in (("--access-log", True), ("--no-access-log", False)):
        argv = [sys.executable, "-m", "trio_asgi", "examples.echo:app", flag, "--port", "0"]
        process = await trio.lowlevel.open_process(
            argv, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            url = await _read_until_listening(process, [])
            async with httpx.AsyncClient() as http:
                await http.get(url + "/some/path?q=1")
            process.send_signal(signal.SIGINT)
            with trio.fail_after(20):
                await process.wait()
            assert process.stdout is not None
            out = b""
            while chunk := await process.stdout.receive_some():
                out += chunk
        finally:
            if process.returncode is None:
                process.kill()
        line = '"GET /some/path?q=1 HTTP/1.1" 200 14'
        assert (line in out.decode()) is expected, out


async def test_an_asyncio_app_is_recognised_and_served(tmp_path: Path) -> None:
    """`--app-loop auto`: one startup line says which loop; Django and Channels answer over
    HTTP and WebSocket from the one asyncio loop of the process."""
    async with server("examples.django_site.asgi:application") as running:
        async with httpx.AsyncClient() as http:
            assert (await http.get(running.url)).text == "Hello, world!"
            assert (await http.get(running.url + "/sync")).json() == {
                "in_main_thread": False,
                "async_to_sync_loop": "TrioEventLoop",  # the server's asyncio loop
            }
        replies = await trio.to_thread.run_sync(
            websocket_echo, running.ws_url + "/ws/echo", ["one", b"two"]
        )
        assert replies == ["one", b"two"]
    assert (
        b"a ProtocolTypeRouter instance is a Django Channels app: running it in an "
        b"asyncio loop on trio (trio-asyncio). Pass --app-loop trio to override."
    ) in running.stderr
    assert b"Traceback" not in running.stderr


async def test_without_trio_asyncio_an_asyncio_app_exits_2_with_one_line(tmp_path: Path) -> None:
    # A trio_asyncio package that cannot be imported stands in for a missing one.
    (tmp_path / "trio_asyncio").mkdir()
    (tmp_path / "trio_asyncio" / "__init__.py").write_text("raise ImportError('not here')\n")
    result = await trio.run_process(
        [sys.executable, "-m", "trio_asgi", "examples.quart_app:app"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        capture_stderr=True,
        capture_stdout=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "trio-asgi: error: a Quart instance is a Quart app, which runs on asyncio: install "
        "trio-asyncio to serve it (pip install 'trio-asgi[asyncio]'), or pass --app-loop trio\n"
    )


SLOW_APP = textwrap.dedent(
    """
    import pathlib

    import trio

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            pathlib.Path("slow-started").touch()
            await trio.sleep(1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})
    """
)


async def test_a_signal_during_a_shutdown_the_server_began_itself_is_still_graceful(
    tmp_path: Path,
) -> None:
    """--limit-max-requests began a graceful stop; a service manager's SIGTERM then is its
    first signal, not a second one: the request in flight still finishes (it was cut)."""
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    async with server("slow_app:app", "--limit-max-requests", "1", cwd=tmp_path) as running:
        async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
            slow: list[httpx.Response] = []

            async def get_slow() -> None:
                slow.append(await http.get(running.url + "/slow"))

            nursery.start_soon(get_slow)
            with trio.fail_after(10):
                while not (tmp_path / "slow-started").exists():
                    await trio.sleep(0.02)
            assert (await http.get(running.url + "/fast")).status_code == 200
            running.send_signal(signal.SIGTERM)
        assert await running.wait() == 0
    assert slow[0].status_code == 200 and slow[0].text == "/slow"
    log = running.stderr.decode()
    assert "Received SIGTERM: already shutting down gracefully" in log
    assert "again" not in log
