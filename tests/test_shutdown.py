"""Graceful shutdown: stop accepting, close idle connections, tell WebSockets, drain, cancel."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_asgi import Config, serve
from trio_asgi.asgi.http import RELEASE_AFTER
from trio_asgi.testing import Closed, TestClient

from .conftest import status_of

Scope = dict[str, Any]


def app_with_log(log: list[str]):
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            log.append("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            log.append(f"ws {message['type']} {message.get('code')}")
        elif scope["path"] == "/slow":
            await trio.sleep(3)
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"finished"})
            log.append("slow done")
        elif scope["path"] == "/sse":
            await receive()
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
            message = await receive()
            log.append(f"sse {message['type']}")
        elif scope["path"] == "/forever":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            try:
                await trio.sleep_forever()
            finally:
                log.append("forever cancelled")
        else:
            await send({"type": "http.response.start", "status": 204})
            await send({"type": "http.response.body"})

    return app


async def test_idle_connections_closed_and_in_flight_finish(autojump_clock: Any) -> None:
    log: list[str] = []
    async with TestClient(app_with_log(log)) as client:
        idle = await client.connect()
        await idle.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(await idle.receive_some()) == 204
        slow = await client.connect()
        await slow.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.shutdown)
            assert await idle.receive_until_eof() == b""  # closed at once
            assert trio.current_time() == start
            response = await slow.receive_until_eof()
        assert status_of(response) == 200 and b"\r\nfinished\r\n" in response
        assert b"connection: close" in response.lower()
        with pytest.raises(ConnectionRefusedError):
            await client.connect()
    assert log == ["slow done", "lifespan shutdown"]


async def test_requests_running_past_the_grace_period_are_cancelled(autojump_clock: Any) -> None:
    log: list[str] = []
    async with TestClient(app_with_log(log), timeout_graceful_shutdown=2) as client:
        async with client.stream("GET", "/forever") as response:
            assert await response.receive_chunk() == b"a"
            start = trio.current_time()
            await client.shutdown()
            assert trio.current_time() - start == pytest.approx(2)
    assert log == ["forever cancelled", "lifespan shutdown"]


async def test_websockets_get_1001_and_the_app_hears_it(autojump_clock: Any) -> None:
    log: list[str] = []
    async with TestClient(app_with_log(log)) as client, client.websocket("/ws") as ws:
        await client.shutdown()
        assert await ws.receive() == Closed(1001)
    assert log == ["ws websocket.disconnect 1001", "lifespan shutdown"]


async def test_streaming_responses_waiting_in_receive_end_promptly(autojump_clock: Any) -> None:
    log: list[str] = []
    async with TestClient(app_with_log(log)) as client:
        async with client.stream("GET", "/sse") as response:
            assert await response.receive_chunk() == b"data: 1\n\n"
            start = trio.current_time()
            await client.shutdown()
            # Released RELEASE_AFTER into the stop, long before the grace period ends.
            assert trio.current_time() == start + RELEASE_AFTER
    assert log == ["sse http.disconnect", "lifespan shutdown"]


async def test_serve_stops_on_the_shutdown_trigger() -> None:
    log: list[str] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        [(host, port)] = await nursery.start(serve, app_with_log(log), Config(port=0), stop)
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = b""
        while data := await stream.receive_some():
            response += data
        assert status_of(response) == 204
        stop.set()
    assert log == ["lifespan shutdown"]


async def test_serve_stops_at_once_when_cancelled() -> None:
    log: list[str] = []
    with trio.move_on_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, app_with_log(log), Config(port=0))
            nursery.cancel_scope.cancel()
    assert log == []  # cancelled: no graceful lifespan shutdown
