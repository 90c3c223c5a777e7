"""Edge cases found reviewing e9ddde3^..b8df33f: handoff notes, access-log timing,
--ws-accept-timeout with a denial response, --config errors. Each failed on that code."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi.cli import parse_args
from trio_asgi.testing import TestClient

from .test_review_handoff import served_plainly

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]


async def read_until(stream: Any, marker: bytes, seconds: float) -> bytes:
    """What arrived until ``marker`` (or EOF, or ``seconds`` of virtual time)."""
    received = b""
    with trio.move_on_after(seconds):
        while marker not in received:
            data = await stream.receive_some(65536)
            if not data:
                break
            received += data
    return received


# -- --ws-accept-timeout and a denial response that stalls -------------------------------------


async def test_ws_accept_timeout_still_bounds_a_denial_response_that_never_comes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The app starts a denial response (websocket.http.response.start: nothing is written,
    the head is held back until the body) and then hangs. Before c20ebc9, the accept
    timeout answered 503 after 10 s (``_send_http_error``: nothing of the denial went out).
    Now ``start()`` sees ``_state == _RESPONDING`` and waits for ``_decided`` without any
    bound: the client gets nothing, and the connection is held as long as the app hangs."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await trio.sleep(10_000)  # never sends the body
        await send({"type": "websocket.http.response.body", "body": b"late"})

    async with TestClient(app, ws_accept_timeout=10, timeout=None) as client:
        stream = await client.connect()
        await stream.send_all(HANDSHAKE)
        start = trio.current_time()
        response = await read_until(stream, b"\r\n\r\n", 60)
        waited = trio.current_time() - start
        await stream.aclose()
    assert response.startswith(b"HTTP/1.1 "), (
        f"no answer after {waited:.0f} s of a 10 s --ws-accept-timeout: {response!r}"
    )


# -- the access-log line of a response whose end writes no bytes -------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_access_line_comes_with_a_response_whose_last_message_writes_nothing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    """README (b8df33f): "A request's access-log line is written when its response is
    complete, with the time the response took, not the work after it." The line is written
    from ``wrote()``, which runs only when the final message wrote bytes (``_send_body``:
    ``if data: await self.write(data)``). A streamed response with a Content-Length (all
    its bytes sent with more_body=True, then the usual empty final message, as Starlette's
    StreamingResponse does) or any streamed response to HEAD ends with no bytes to write:
    its line comes only when the app returns, with the background work in its time."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    release = trio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
        )
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await release.wait()  # background work (BackgroundTask)

    fmt = "{request_line} {status} {duration_s:.1f}"
    async with TestClient(app, timeout=5, access_log_format=fmt) as client:
        response = await client.request(method, "/stream")
        assert response.status_code == 200
        await trio.sleep(10)  # the app runs on
        lines_during = access_lines(caplog)
        release.set()
    assert lines_during == [f"{method} /stream HTTP/1.1 200 0.0"], access_lines(caplog)


# -- the handoff of an app whose task was still reading the body -------------------------------


async def test_handoff_happens_once_the_apps_body_reader_is_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """63b4e6a: no handoff while a task of the app reads the body (``runs_on``). But since
    e9ddde3 a connection is noted only once (``_noted``), at the app's first wait after its
    response: the check 1 ms later finds the reader still waiting for the rest of the body,
    declines, and nothing notes the connection again. Once the body is in, the app runs on
    with its background work and the client's next request waits for all of it."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await served_plainly(scope, send):
            return

        async def read_body() -> None:
            while (await receive()).get("more_body"):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_body)
            await trio.sleep(1)  # the reader waits for the rest of the body now
            await send({"type": "http.response.start", "status": 202})
            await send({"type": "http.response.body", "body": b"accepted"})
            await trio.sleep(1000)  # background work, long after the body is in

    async with TestClient(app, timeout=None) as client:
        stream = await client.connect()
        head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
        await stream.send_all(head + b"01234")
        first = await read_until(stream, b"accepted", 10)
        assert first.startswith(b"HTTP/1.1 202 "), first
        await trio.sleep(5)
        await stream.send_all(b"56789GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        start = trio.current_time()
        second = await read_until(stream, b"/next", 100)
        waited = trio.current_time() - start
        await stream.aclose()
    assert b"/next" in second, f"no answer to /next after {waited:.0f} s"


# -- errors of a --config file ----------------------------------------------------------------


def test_a_command_line_error_is_not_blamed_on_the_config_file(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """f60c722: "errors from a --config file name the file". ``_file_is_wrong`` judges the
    file's values without the command line's; a file that is fine only together with the
    command line (here reload_dir, with --reload given on the command line) then looks
    wrong, and an error in a command-line value is reported as the file's."""
    path = tmp_path / "server.toml"
    path.write_text('reload_dir = ["src"]\n')
    # The file is fine with the command line:
    assert parse_args(["--config", str(path), "--reload", "m:app"])[1].reload_dir == ("src",)
    with pytest.raises(SystemExit) as exited:
        parse_args(["--config", str(path), "--reload", "--port", "99999", "m:app"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "port must be between 0 and 65535" in err
    assert str(path) not in err, err
