"""The server's readiness set (``readiness.py``): edge-triggered socket waits without an
epoll_ctl call each, and what a connection must do so that none of them waits forever."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi import Config, connection
from trio_asgi.asgi.scope import ConnectionInfo
from trio_asgi.connection import YIELD_EVERY, Connection, ServerState
from trio_asgi.readiness import ReadinessPoller
from trio_asgi.testing import serve_in_background

pytestmark = pytest.mark.skipif(not hasattr(__import__("select"), "epoll"), reason="epoll only")


@asynccontextmanager
async def running(poller: ReadinessPoller) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        await nursery.start(poller.run)
        yield nursery
        nursery.cancel_scope.cancel()


def socket_pair() -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    return ours, peer


async def test_a_wait_ends_when_data_arrives() -> None:
    poller = ReadinessPoller()
    ours, peer = socket_pair()
    woke = trio.Event()

    async def wait() -> None:
        await poller.wait(ours.fileno())
        woke.set()

    async with running(poller) as nursery:
        assert poller.watch(ours.fileno())
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        peer.send(b"x")
        with trio.fail_after(10):
            await woke.wait()
    ours.close()
    peer.close()


async def test_data_there_before_the_wait_ends_it_at_once() -> None:
    """Data that came before the socket was watched, and an event that came while nobody
    waited: the next wait returns (edge-triggered, they would never be reported again)."""
    poller = ReadinessPoller()
    ours, peer = socket_pair()
    async with running(poller):
        peer.send(b"before")
        assert poller.watch(ours.fileno())
        await trio.testing.wait_all_tasks_blocked()  # the poller took the event: nobody waits
        with trio.fail_after(10):
            await poller.wait(ours.fileno())
        assert ours.recv(100) == b"before"
        peer.send(b"while busy")
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(10):
            await poller.wait(ours.fileno())
        assert ours.recv(100) == b"while busy"
        # Both events are used up: now a wait waits.
        with trio.move_on_after(0.05) as waited:
            await poller.wait(ours.fileno())
        assert waited.cancelled_caught
    ours.close()
    peer.close()


async def test_forget_ends_a_wait_with_closed_resource_error() -> None:
    """How a WebSocket's reader is stopped: its socket is closed under it (``abandon``)."""
    poller = ReadinessPoller()
    ours, peer = socket_pair()
    errors: list[BaseException] = []

    async def wait() -> None:
        try:
            await poller.wait(ours.fileno())
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    async with running(poller) as nursery:
        poller.watch(ours.fileno())
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        poller.forget(ours.fileno())
        ours.close()
        await trio.testing.wait_all_tasks_blocked()
        assert len(errors) == 1
    peer.close()


async def test_a_cancelled_wait_leaves_nothing_behind_and_one_reader_at_a_time() -> None:
    poller = ReadinessPoller()
    ours, peer = socket_pair()
    async with running(poller) as nursery:
        poller.watch(ours.fileno())
        with trio.move_on_after(0.01):
            await poller.wait(ours.fileno())
        # The cancelled wait took its entry back: the socket can be waited for again...
        nursery.start_soon(poller.wait, ours.fileno())
        await trio.testing.wait_all_tasks_blocked()
        # ...by one task at a time, as with trio's own waits.
        with pytest.raises(trio.BusyResourceError):
            await poller.wait(ours.fileno())
        peer.send(b"x")
    ours.close()
    peer.close()


async def test_waits_go_on_with_trio_once_the_poller_has_ended() -> None:
    """A task still waiting when ``run`` ends wakes up, reads nothing, and waits again with
    trio; a poller that is not running watches nothing."""
    poller = ReadinessPoller()
    ours, peer = socket_pair()
    got: list[bytes] = []

    async def read() -> None:
        while True:
            await poller.wait(ours.fileno())
            try:
                got.append(ours.recv(100))
                return
            except BlockingIOError:
                continue

    async with trio.open_nursery() as outer:
        async with running(poller):
            poller.watch(ours.fileno())
            outer.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
        assert not poller.running
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        peer.send(b"late")
    assert got == [b"late"]
    assert not poller.watch(ours.fileno())
    ours.close()
    peer.close()


def connection_on(sock: socket.socket, state: ServerState) -> Connection:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    return Connection(stream, state, ConnectionInfo(client=None, server=None))


async def test_a_reader_that_yields_with_more_to_read_does_not_wait_for_new_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After YIELD_EVERY full reads in a row the connection yields before reading on. The
    socket still holds data, but no readiness event will come for it (the peer sent all it
    had and waits for our answer), so it must not wait for one."""
    monkeypatch.setattr(connection, "RECEIVE_SIZE", 1024)  # (a socket pair's buffer holds all)
    state = ServerState(app=None, config=Config())  # type: ignore[arg-type]
    ours, peer = socket.socketpair()
    total = (YIELD_EVERY + 2) * 1024 + 10

    async def send_all_at_once() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the reader waits for its first byte
        peer.sendall(b"x" * total)

    async with running(state.readiness) as nursery:
        conn = connection_on(ours, state)
        nursery.start_soon(send_all_at_once)
        received = 0
        with trio.fail_after(10):
            while received < total:
                data = await conn.receive()
                assert data
                received += len(data)
        await conn.close_stream()
    peer.close()


async def test_sockets_closed_and_reused_are_watched_anew() -> None:
    """A closed socket's number goes to the next one accepted, which needs a registration
    of its own (one per connection, not per number): each short connection in turn is
    answered, and none waits for an event that would never come."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})

    async with serve_in_background(app, host="127.0.0.1") as server:
        for _ in range(10):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await trio.sleep(0.02)  # (so that the server waits for the request)
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                response = b""
                with trio.fail_after(10):
                    while chunk := await stream.receive_some():
                        response += chunk
            assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"ok")
        assert server.server.state.readiness.running
