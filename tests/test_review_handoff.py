"""Edge cases of the handoff, the per-request context, refused-request logging and the
graceful stop's release, found reviewing them: each test failed on the reviewed code.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi.testing import TestClient, serve_in_background


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, count: int = 1) -> bytes:
    received = b""
    with trio.fail_after(5):
        while received.count(marker) < count:
            data = await stream.receive_some(65536)
            if not data:
                break
            received += data
    return received


# -- in_context: an ASGI 3 app may return any awaitable, not only a coroutine ------------------


class AwaitableEndpoint:
    """Starlette's class-based endpoints are served this way: ``Endpoint(scope, receive,
    send)`` builds an object whose ``__await__`` runs the request (``detect_interface``
    documents it as ASGI 3)."""

    def __init__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.send = send

    def __await__(self) -> Any:
        return self.dispatch().__await__()

    async def dispatch(self) -> None:
        if self.scope["type"] != "http":
            return
        await self.send({"type": "http.response.start", "status": 200})
        await self.send({"type": "http.response.body", "body": b"endpoint"})


async def test_an_app_returning_a_non_coroutine_awaitable_is_served() -> None:
    async with serve_in_background(AwaitableEndpoint, host="127.0.0.1", lifespan="off") as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            response = await read_until(stream, b"endpoint")
    assert response.startswith(b"HTTP/1.1 200 "), response
    assert b"endpoint" in response.partition(b"\r\n\r\n")[2]


# -- handoff: an app task still reading the request body ---------------------------------------


async def served_plainly(scope: dict[str, Any], send: Any) -> bool:
    """Answer anything but the upload (``/upload``) with its path; True if it did."""
    if scope["type"] != "http":
        return True
    if scope["path"] == "/upload":
        return False
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": scope["path"].encode()})
    return True


async def test_handoff_while_the_app_still_reads_the_request_body() -> None:
    """The app answers at once while one of its tasks reads the upload (an early "accepted",
    an upload processed as it streams in), then works on. The client sends the rest of the
    body and its next request on the same connection. Without the handoff the connection
    waited for the app; with it, the new task must not read the socket under the app's own
    pending read of the body."""
    body_parts: list[bytes] = []
    release = trio.Event()
    errors: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await served_plainly(scope, send):
            return

        async def read_body() -> None:
            while True:
                message = await receive()
                body_parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_body)
            await trio.sleep(0.05)  # the reader waits for the rest of the body now
            await send({"type": "http.response.start", "status": 202})
            await send({"type": "http.response.body", "body": b"accepted"})
            await release.wait()

    class Errors(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())

    handler = Errors()
    logging.getLogger("trio_asgi.error").addHandler(handler)
    try:
        async with serve_in_background(app, host="127.0.0.1", lifespan="off") as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(
                    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234"
                )
                first = await read_until(stream, b"accepted")
                assert first.startswith(b"HTTP/1.1 202 ")
                await trio.sleep(0.1)  # the app runs on: the connection is handed off
                await stream.send_all(b"56789GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
                await trio.sleep(0.1)
                release.set()
                second = await read_until(stream, b"/next")
    finally:
        logging.getLogger("trio_asgi.error").removeHandler(handler)
    assert errors == []
    assert second.startswith(b"HTTP/1.1 200 ") and b"/next" in second, second
    assert b"".join(body_parts) == b"0123456789"


# -- access-log lines of refused requests ------------------------------------------------------


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"hello"})


def error_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "trio_asgi.error" and r.levelno >= logging.ERROR
    ]


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]


async def test_refused_connect_with_an_odd_target_is_logged_not_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CONNECT targets are not checked (authority-form), and building the scope of the
    refused request for its access-log line runs urlsplit on a target with "://": a bracket
    that does not close is a ValueError, which ends the connection as a server bug."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    async with TestClient(hello) as client:
        stream = await client.connect()
        await stream.send_all(b"CONNECT http://[x HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await stream.receive_until_eof()
    assert response.startswith(b"HTTP/1.1 405 ")
    assert error_records(caplog) == []
    assert any(" 405 " in line for line in access_lines(caplog)), access_lines(caplog)


@pytest.mark.parametrize("scheme", ["http", "webcal+secure"])
async def test_absolute_form_target_with_an_odd_authority_gets_an_answer(
    caplog: pytest.LogCaptureFixture, scheme: str
) -> None:
    """An absolute-form target passes the protocol check (scheme "://"), then urlsplit
    raises on its authority while the scope is built: no answer at all, and an "Internal
    error" in the log. (For schemes longer than 5 letters this is new: split_target now
    splits every scheme.)"""
    async with TestClient(hello) as client:
        stream = await client.connect()
        await stream.send_all(f"GET {scheme}://[x/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = await stream.receive_until_eof()
    assert response.startswith(b"HTTP/1.1 400 "), response
    assert error_records(caplog) == []


async def test_refused_request_line_shows_the_response_headers_that_went_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """{response_header[...]} shows the head of the server's own 500 (HEAD commit), but a
    refusal's line gets no response headers at all: "-" for headers that were sent."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    fmt = "{status} {response_header[content-type]} {response_header[connection]}"
    async with TestClient(hello, access_log_format=fmt) as client:
        stream = await client.connect()
        await stream.send_all(b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        response = await stream.receive_until_eof()
    head = response.partition(b"\r\n\r\n")[0].lower()
    assert b"\r\nconnection: close" in head and b"\r\ncontent-type: text/plain" in head
    [line] = access_lines(caplog)
    assert line.startswith("400 text/plain") and line.endswith(" close"), line


# -- graceful stop: the release of apps parked in receive() -----------------------------------


BIG_BODY = b"x" * (1024 * 1024)


async def test_a_response_that_starts_after_the_release_point_is_not_cut(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Django, Quart and Starlette wait in receive() beside the view and cancel it (or the
    response being sent) on http.disconnect; the release exists only for SSE, and "an
    immediate release would fail the requests in flight" (``on_shutdown``). A slow view
    that sends its whole response (``more_body`` False) after the release point is such a
    request in flight, but ``head()`` sets ``_ended`` before its bytes are written: the
    listener hears http.disconnect while the response is being sent, cancels it, and the
    client gets nothing."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert (await receive())["type"] == "http.request"
        async with trio.open_nursery() as nursery:

            async def listen_for_disconnect() -> None:
                if (await receive())["type"] == "http.disconnect":
                    nursery.cancel_scope.cancel()

            nursery.start_soon(listen_for_disconnect)
            await trio.sleep(3)  # a slow view; the stop began meanwhile
            await send({"type": "http.response.start", "status": 200})
            # Larger than the transport takes at once (a socket buffer, here the test
            # client's 256 KiB): writing it waits for the client to read.
            await send({"type": "http.response.body", "body": BIG_BODY})
            nursery.cancel_scope.cancel()

    config = {"lifespan": "off", "timeout_graceful_shutdown": 10}
    async with TestClient(app, **config) as client:
        stream = await client.connect()
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()  # the app waits in receive()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.shutdown)
            response = await stream.receive_until_eof()
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]
    assert response.endswith(b"\r\n0\r\n\r\n"), f"cut after {len(response)} bytes"


async def test_an_unread_head_shows_as_dashes_also_with_a_root_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """README: "a head that could not be read shows as "- - HTTP/1.1"". The stand-in
    request goes through http_scope, which puts --root-path in front of its "-" path."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    async with TestClient(hello, root_path="/api") as client:
        stream = await client.connect()
        await stream.send_all(b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        await stream.receive_until_eof()
    [line] = access_lines(caplog)
    assert '"- - HTTP/1.1" 400 ' in line, line
