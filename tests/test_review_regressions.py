"""Edge cases found reviewing b67ba07..1470c60: the graceful stop's release of SSE apps,
--limit-max-requests with WebSocket sessions, refused HEAD requests and absolute-form targets.
(The asyncio bridge's case is in test_asyncio_bridge.py.)

Every test here failed on 1470c60 and states in its docstring what is expected and why.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi.asgi.http import RELEASE_AFTER
from trio_asgi.testing import TestClient, WebSocketDenied

from .conftest import raw_exchange, status_of
from .test_http_limits import hello

Scope = dict[str, Any]
Message = dict[str, Any]


async def read_head(stream: Any) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        assert chunk, f"connection closed before a response head: {data!r}"
        data += chunk
    return data


# -- graceful shutdown: the one-second release of apps parked in receive() -------------------


def sse_app(go: trio.Event, heard: trio.Event) -> Any:
    """An SSE endpoint: a task waits in receive() for http.disconnect (as Starlette's
    StreamingResponse does) while the view, once ``go`` is set, streams events until
    told the client left."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert (await receive())["type"] == "http.request"
        async with trio.open_nursery() as nursery:

            async def listen_for_disconnect() -> None:
                message = await receive()
                assert message["type"] == "http.disconnect", message
                heard.set()
                nursery.cancel_scope.cancel()

            nursery.start_soon(listen_for_disconnect)
            await go.wait()
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            while True:
                event = {"type": "http.response.body", "body": b"data: x\n\n", "more_body": True}
                await send(event)
                await trio.sleep(0.25)

    return app


async def test_sse_that_starts_streaming_after_the_release_point_still_hears_disconnect(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A graceful stop releases an app parked in receive() beside a streaming response
    (README: SSE "hears http.disconnect"), so that SSE does not hold the stop until
    --timeout-graceful-shutdown. That holds only if the response was already streaming
    exactly RELEASE_AFTER seconds into the stop: ``_release_later`` (asgi/http.py) checks
    ``_response >= _STREAMING`` once, sets ``_released`` and returns. A long-poll that turns
    into an event stream a moment later (here 1.5 s into the stop) is never woken: its
    parked receive() waits on ``_ended`` forever, although a *new* receive() call in the
    very same state returns http.disconnect at once (receive() checks ``_released`` and the
    response state each time). The stop then runs into its 60 s deadline and cancels the
    app. Before b67ba07..1470c60 the parked receive() was released when the stop began."""
    go, heard = trio.Event(), trio.Event()
    config = {"lifespan": "off", "timeout_graceful_shutdown": 60}
    async with TestClient(sse_app(go, heard), **config) as client:
        stream = await client.connect()
        await stream.send_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()  # the app waits in receive()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.shutdown)
            await trio.sleep(RELEASE_AFTER + 0.5)
            go.set()  # the response starts streaming now
            await stream.receive_until_eof()
        took = trio.current_time() - start
    assert heard.is_set(), f"the app never heard http.disconnect; the stop took {took:g} s"
    assert "Graceful shutdown timed out" not in caplog.text


@pytest.mark.parametrize("grace", [0.5, 0.9])
async def test_sse_hears_disconnect_when_the_grace_period_is_shorter_than_the_release(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture, grace: float
) -> None:
    """With --timeout-graceful-shutdown below RELEASE_AFTER (1 s), an SSE app parked in
    receive() is never told http.disconnect: ``on_shutdown`` (asgi/http.py) schedules the
    release RELEASE_AFTER seconds out whatever the deadline, so the deadline comes first
    and the stop ends with "Graceful shutdown timed out; remaining connections were
    cancelled" instead of the app ending its stream. Before this range (b67ba07) the app
    heard http.disconnect as the stop began. The release should happen no later than
    some time before the drain deadline (e.g. min(RELEASE_AFTER, grace / 2))."""
    go, heard = trio.Event(), trio.Event()
    go.set()  # streaming from the start
    config = {"lifespan": "off", "timeout_graceful_shutdown": grace}
    async with TestClient(sse_app(go, heard), **config) as client:
        stream = await client.connect()
        await stream.send_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_head(stream)
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.shutdown)
            await stream.receive_until_eof()
    assert heard.is_set(), "the SSE app was cancelled at the deadline without hearing disconnect"
    assert "Graceful shutdown timed out" not in caplog.text


async def seconds_to_close(steps: int) -> float:
    """Seconds from a stop requested ``steps`` scheduling steps before the app ends its
    response early (a task of it waiting for http.disconnect) to the connection's close."""
    requested: list[float] = []
    clients: list[TestClient] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)  # waits for http.disconnect: the watcher runs
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await trio.testing.wait_all_tasks_blocked()
            clients[0].server.request_shutdown()
            requested.append(trio.current_time())
            for _ in range(steps):
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        # returns with the response unfinished: the server closes the connection

    async with TestClient(app, lifespan="off") as client:
        clients.append(client)
        stream = await client.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_until_eof()
        return trio.current_time() - requested[0]


async def test_stop_beginning_as_a_cycle_ends_does_not_hold_its_connection_open(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A graceful stop that begins just as a cycle is ending must not keep that cycle's
    connection open for RELEASE_AFTER seconds.

    ``HTTPCycle.stop_watching`` (asgi/http.py) cancels ``_release_scope`` first and then
    awaits the disconnect watcher; ``Connection.cycle`` is cleared only after that. A stop
    that begins during that await calls ``on_shutdown`` on the ending cycle, which starts a
    fresh ``_release_later`` in the connection's helpers nursery that nobody cancels any
    more: the connection (and so the whole stop) waits for its one-second sleep before the
    socket is closed. Here the app ends its response early (as one does on an error) while a
    task of it listens for http.disconnect, and the stop is requested 0..7 scheduling steps
    before that, so one of the runs lands in the window. Expected: every run closes at once
    (nothing is in flight any more), as it did before this range."""
    caplog.set_level(logging.CRITICAL, logger="trio_asgi.error")  # the app's early return
    took = [await seconds_to_close(steps) for steps in range(8)]
    assert max(took) < RELEASE_AFTER, f"seconds to close, per number of steps: {took}"


# -- --limit-max-requests: which response says Connection: close -----------------------------


async def ws_and_http(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        if scope["path"] == "/denied":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
    elif scope["type"] == "http":
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("ws_path", ["/ws", "/denied"])
async def test_limit_max_requests_counts_websocket_sessions_when_choosing_the_last_request(
    autojump_clock: Any, ws_path: str
) -> None:
    """--limit-max-requests 2: one WebSocket session (accepted, or denied with 403), then
    one HTTP request on a keep-alive connection. The session counts against the limit
    (``ServerState.request_served`` is called for it, and the config help says "Requests
    (and WebSocket sessions)"), so the HTTP request is the last one: the server stops after
    it and closes the connection. Commit e24e558 made such requests say "Connection: close"
    (without it the connection is persistent, RFC 9112 9.3, and the client may send its
    next request into our close, RFC 9112 9.6), but ``Connection._is_last_request``
    (connection.py) judges by ``requests_begun``, which only HTTP cycles increment: the
    response promises keep-alive, then the connection is closed under the client."""
    async with TestClient(ws_and_http, lifespan="off", limit_max_requests=2) as client:
        http = await client.connect()
        if ws_path == "/ws":
            async with client.websocket(ws_path) as ws:
                await ws.send_text("hi")
        else:
            with pytest.raises(WebSocketDenied):
                async with client.websocket(ws_path):
                    pass
        await trio.testing.wait_all_tasks_blocked()
        assert client.server.state.requests == 1  # the session was counted
        await http.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await read_head(http)
        await http.receive_until_eof()  # the server closes: the limit is reached
    assert b"connection: close" in head.lower(), head


# -- HEAD requests refused by the new request-target check -----------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"HEAD /page#top HTTP/1.1\r\nHost: x\r\n\r\n", id="fragment"),
        pytest.param(b"HEAD items HTTP/1.1\r\nHost: x\r\n\r\n", id="relative-target"),
        pytest.param(
            b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="content-length-and-transfer-encoding",
        ),
    ],
)
async def test_head_request_refused_by_inspect_gets_an_answer(
    autojump_clock: Any, request_bytes: bytes
) -> None:
    """A HEAD request that ``HTTP1Protocol._inspect`` refuses (the new ``_check_target``:
    a fragment or a target in none of RFC 9112's forms; or both Content-Length and
    Transfer-Encoding) must get its 400. It gets no answer at all: the connection is just
    closed. ``_inspect`` raises before it sets ``_head_request``, so ``error_response``
    builds a 400 *with* a body for a request h11 knows is a HEAD; h11 refuses it
    (LocalProtocolError -> InvalidResponse) and ``error_response`` returns None
    (protocols/http1.py). Commit e24e558 fixed exactly this for HEAD ("h11 refused one: a
    crashing app's HEAD got no answer at all") but not for these rejections, and c63721e
    added two new ones: before this range "HEAD /page#top" was answered (200)."""
    async with TestClient(hello, lifespan="off") as client:
        response = await raw_exchange(await client.connect(), request_bytes)
    assert response, "the server closed the connection without any response"
    assert status_of(response) == 400
    _, _, body = response.partition(b"\r\n\r\n")
    assert body == b""  # RFC 9110 9.3.2: no content in a response to HEAD


async def test_absolute_form_with_any_scheme_does_not_reach_the_app_as_its_path(
    autojump_clock: Any,
) -> None:
    """``_check_target`` (protocols/http1.py, commit c63721e) exists so that the app never
    sees a path that does not start with "/", and it admits absolute-form for any URI
    scheme (``[A-Za-z][A-Za-z0-9+.-]*://``). ``split_target`` (asgi/scope.py) recognises
    absolute-form only when "://" is within the first 8 bytes, so for a scheme of six or
    more letters the whole URL becomes scope["path"], while the new ``_host_from_target``
    (commit bacb904) does read it as absolute-form and rewrites Host from it. ASGI: path is
    the request target's path. Expected: path "/x" (or a 400 for the scheme)."""
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async with TestClient(app, lifespan="off") as client:
        request = b"GET custom://example.org/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        response = await raw_exchange(await client.connect(), request)
    assert status_of(response) == 400 or seen == ["/x"], (seen, response[:40])
