"""The keep-alive timeout, kept by the server's Heartbeat instead of a deadline per request:
as exact as before, and one timer entry per connection however many requests it carries."""

from __future__ import annotations

import socket
from typing import Any

import trio

from trio_asgi import Config
from trio_asgi.asgi.scope import ConnectionInfo
from trio_asgi.connection import Connection, ServerState
from trio_asgi.testing import TestClient

from .conftest import status_of

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


async def read_response(stream: trio.abc.Stream) -> bytes:
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):  # (chunked: the app gives no length)
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


async def test_the_timeout_counts_from_the_last_request_of_a_busy_connection(
    autojump_clock: Any,
) -> None:
    """Requests every second for 12 s on a 5 s keep-alive: the connection stays open (its
    first timer entry, due at 5 s, finds a later wait and looks again), and closes 5 s
    after the last response."""
    async with TestClient(hello, timeout_keep_alive=5) as client:
        stream = await client.connect()
        for _ in range(12):
            await stream.send_all(REQUEST)
            assert status_of(await read_response(stream)) == 200
            await trio.sleep(1)
        await stream.send_all(REQUEST)
        assert status_of(await read_response(stream)) == 200
        last = trio.current_time()
        with trio.fail_after(60):
            assert await stream.receive_some() == b""
        assert 5 <= trio.current_time() - last < 5.5


def connection_pair() -> tuple[ServerState, Connection, trio.SocketStream]:
    """A server's state, one of its connections (not yet served) and the client's end."""
    state = ServerState(app=hello, config=Config(timeout_keep_alive=5))  # type: ignore[arg-type]
    ours, theirs = socket.socketpair()
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
    conn = Connection(
        trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
        state,
        ConnectionInfo(client=None, server=None),
    )
    return state, conn, peer


async def test_a_busy_connection_keeps_one_timer_entry(autojump_clock: Any) -> None:
    state, conn, peer = connection_pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(state.heartbeat.run)
        nursery.start_soon(conn.serve)
        for _ in range(200):
            await trio.sleep(0.1)
            await peer.send_all(REQUEST)
            assert status_of(await read_response(peer)) == 200
            assert len(state.heartbeat) <= 2  # (one may be stale: the first wait was longer)
        last = trio.current_time()
        with trio.fail_after(60):
            assert await peer.receive_some() == b""
        assert 5 <= trio.current_time() - last < 5.5
        nursery.cancel_scope.cancel()
    await peer.aclose()
