"""The server's readiness set (``readiness.py``): while the server is busy, sockets wait in
one edge-triggered epoll set instead of trio's one-shot registrations. Whatever the mode,
and across its switches, no wait may miss data that came.

conftest.py makes every server of the suite busy from its first event on; the tests of the
switching set the real thresholds back (with a shorter probe interval).
"""

from __future__ import annotations

import select
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from tests.conformance.wire import BINARY, TEXT, EchoApp, Text, frame, open_peer
from trio_asgi import Config, connection
from trio_asgi.asgi.scope import ConnectionInfo
from trio_asgi.asgi.websocket import CLOSE_HANDSHAKE_TIMEOUT
from trio_asgi.connection import YIELD_EVERY, Connection, ServerState
from trio_asgi.readiness import ReadinessSet
from trio_asgi.testing import LiveServer, serve_in_background

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll only")

REAL_THRESHOLDS = {"enter_at": 4, "leave_below": 2.0, "probe_every": 0.005}


@asynccontextmanager
async def running(readiness: ReadinessSet, *, busy: bool = True) -> AsyncIterator[trio.Nursery]:
    """``readiness`` served by its task; ``busy`` from the start, or idle until it sees load."""
    async with trio.open_nursery() as nursery:
        readiness.busy = busy
        await nursery.start(readiness.run)
        yield nursery
        nursery.cancel_scope.cancel()


def socket_pair() -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    return ours, peer


@pytest.mark.parametrize("ending", ["data", "forget"])
async def test_a_wait_ends_when_data_arrives_or_the_socket_is_forgotten(ending: str) -> None:
    """``forget`` is how a WebSocket's reader is stopped: its socket is closed under it
    (``abandon``)."""
    readiness = ReadinessSet()
    ours, peer = socket_pair()
    woke = trio.Event()

    async def wait() -> None:
        await readiness.wait(ours.fileno())
        woke.set()

    async with running(readiness) as nursery:
        assert readiness.watch(ours.fileno())
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        if ending == "data":
            peer.send(b"x")
        else:
            readiness.forget(ours.fileno())
        with trio.fail_after(10):
            await woke.wait()
    ours.close()
    peer.close()


async def test_data_that_came_while_nobody_waited_ends_the_next_wait_at_once() -> None:
    """Data there before the socket was watched, and an event that came while nobody
    waited: the next wait returns (edge-triggered, neither would be reported again)."""
    readiness = ReadinessSet()
    ours, peer = socket_pair()
    async with running(readiness):
        peer.send(b"before")
        assert readiness.watch(ours.fileno())
        await trio.testing.wait_all_tasks_blocked()  # the set's task took the event
        with trio.fail_after(10):
            await readiness.wait(ours.fileno())
        assert ours.recv(100) == b"before"
        peer.send(b"while busy")
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(10):
            await readiness.wait(ours.fileno())
        assert ours.recv(100) == b"while busy"
        # Both events are used up: now a wait waits.
        with trio.move_on_after(0.05) as waited:
            await readiness.wait(ours.fileno())
        assert waited.cancelled_caught
    ours.close()
    peer.close()


async def test_a_number_still_registered_is_taken_anew_and_a_closed_one_refused() -> None:
    """A socket closed without ``forget`` (its description kept alive elsewhere) leaves its
    number registered: the next socket with that number is watched all the same."""
    readiness = ReadinessSet()
    ours, peer = socket_pair()
    async with running(readiness):
        assert readiness.watch(ours.fileno())
        assert readiness.watch(ours.fileno())  # (registered already: modified instead)
        peer.send(b"x")
        with trio.fail_after(10):
            await readiness.wait(ours.fileno())
        assert ours.recv(10) == b"x"
        closed = ours.fileno()
        ours.close()
        peer.close()
        assert not readiness.watch(closed)


async def test_a_cancelled_wait_leaves_nothing_behind_and_one_reader_at_a_time() -> None:
    readiness = ReadinessSet()
    ours, peer = socket_pair()
    async with running(readiness) as nursery:
        readiness.watch(ours.fileno())
        with trio.move_on_after(0.01):
            await readiness.wait(ours.fileno())
        # The cancelled wait took its entry back: the socket can be waited for again...
        nursery.start_soon(readiness.wait, ours.fileno())
        await trio.testing.wait_all_tasks_blocked()
        # ...by one task at a time, as with trio's own waits.
        with pytest.raises(trio.BusyResourceError):
            await readiness.wait(ours.fileno())
        peer.send(b"x")
    ours.close()
    peer.close()


async def test_waits_go_on_with_trio_once_the_set_has_stopped() -> None:
    """A task still waiting when ``run`` ends wakes up, reads nothing, and waits again with
    trio; a set that is not running watches nothing."""
    readiness = ReadinessSet()
    ours, peer = socket_pair()
    got: list[bytes] = []

    async def read() -> None:
        while True:
            await readiness.wait(ours.fileno())
            try:
                got.append(ours.recv(100))
                return
            except BlockingIOError:
                continue

    async with trio.open_nursery() as outer:
        async with running(readiness):
            readiness.watch(ours.fileno())
            outer.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
        assert not readiness.running
        assert not readiness.busy
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        peer.send(b"late")
    assert got == [b"late"]
    assert not readiness.watch(ours.fileno())
    ours.close()
    peer.close()


async def test_many_sockets_ready_together_make_it_busy_and_lone_ones_idle_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The switches, with the real thresholds: six sockets that get data at once make the
    set busy; then one socket at a time brings the mean below ``leave_below``, and those
    still waiting in the set are woken to wait with trio. Each reader gets every byte
    sent to it, in either mode and across the switches."""
    for name, value in REAL_THRESHOLDS.items():
        monkeypatch.setattr(ReadinessSet, name, value)
    readiness = ReadinessSet()
    pairs = [socket_pair() for _ in range(6)]
    received = [0] * len(pairs)
    arrived = trio.Condition()

    async def read(i: int) -> None:
        ours = pairs[i][0]
        while True:
            await readiness.wait(ours.fileno())
            try:
                received[i] += len(ours.recv(100))
            except BlockingIOError:
                continue
            async with arrived:
                arrived.notify_all()

    async def until(condition: Any) -> None:
        with trio.fail_after(10):
            async with arrived:
                while not condition():
                    await arrived.wait()

    sent = [0] * len(pairs)

    async def send(*which: int) -> None:
        """A byte to each of ``which`` at once; back when every reader has what was sent."""
        for i in which:
            pairs[i][1].send(b"x")
            sent[i] += 1
        await until(lambda: received == sent)

    async with running(readiness, busy=False) as nursery:
        for ours, _ in pairs:
            assert readiness.watch(ours.fileno())
        for i in range(len(pairs)):
            nursery.start_soon(read, i)
        # Idle, and a lone socket's data now and then keeps it so.
        for _ in range(3):
            await trio.sleep(3 * REAL_THRESHOLDS["probe_every"])
            await send(0)
        assert not readiness.busy
        everyone = range(len(pairs))
        for _ in range(100):
            await trio.sleep(3 * REAL_THRESHOLDS["probe_every"])  # (the probe waits)
            await send(*everyone)
            if readiness.busy:
                break
        assert readiness.busy
        # Busy: one socket at a time now, until the mean falls.
        wakeups = 0
        while readiness.busy and wakeups < 100:
            await send(1)
            wakeups += 1
        assert not readiness.busy
        assert wakeups >= 8  # (slowly: each wake-up weighs 1/8)
        # The others, woken when it went idle, wait with trio and get their data.
        await send(*everyone)
        nursery.cancel_scope.cancel()
    for ours, peer in pairs:
        ours.close()
        peer.close()


def connection_on(sock: socket.socket, state: ServerState) -> Connection:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    return Connection(stream, state, ConnectionInfo(client=None, server=None))


async def test_a_reader_that_yields_with_more_to_read_does_not_wait_for_new_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After YIELD_EVERY full reads in a row the connection yields before reading on. The
    socket still holds data, but no event will come for it in the set (the peer sent all it
    had and waits for our answer), so it must not wait there."""
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
        assert state.readiness.busy
        await conn.close_stream()
    peer.close()


# -- a whole server, busy (conftest.py) --------------------------------------------------------


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b"%d:%s" % (len(body), scope["path"].encode())
    headers = [(b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """One response with a Content-Length body, from ``buffer`` and the stream."""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some()
            assert data, bytes(buffer)
            buffer += data
        head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        end = len(head) + 4 + length
        while len(buffer) < end:
            data = await stream.receive_some()
            assert data
            buffer += data
    response = bytes(buffer[:end])
    del buffer[:end]
    return response


def request(path: str, body: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        len(body),
        body,
    )


async def connect(server: LiveServer) -> trio.SocketStream:
    assert server.port is not None
    return await trio.open_tcp_stream("127.0.0.1", server.port)


@asynccontextmanager
async def busy_server(app: Any, **config: Any) -> AsyncIterator[LiveServer]:
    async with serve_in_background(app, host="127.0.0.1", **config) as server:
        yield server


async def test_keep_alive_pipelined_and_piecemeal_requests_on_many_connections() -> None:
    """Eight connections at once, each with requests one at a time, pipelined, and sent in
    pieces with pauses (a wait in the middle of a head and of a body), and a body larger than
    one read (``RECEIVE_SIZE``)."""
    big = b"b" * (3 * connection.RECEIVE_SIZE + 5)

    async def client(server: LiveServer, k: int) -> None:
        stream = await connect(server)
        buffer = bytearray()
        async with stream:
            for i in range(20):
                await stream.send_all(request(f"/{k}/{i}"))
                assert (await read_response(stream, buffer)).endswith(b"0:/%d/%d" % (k, i))
            await stream.send_all(b"".join(request(f"/p{i}", b"abc") for i in range(10)))
            for i in range(10):
                assert (await read_response(stream, buffer)).endswith(b"3:/p%d" % i)
            whole = request("/pieces", b"0123456789")
            for start in range(0, len(whole), 7):
                await stream.send_all(whole[start : start + 7])
                await trio.sleep(0.002)
            assert (await read_response(stream, buffer)).endswith(b"10:/pieces")
            await stream.send_all(request("/big", big))
            assert (await read_response(stream, buffer)).endswith(b"%d:/big" % len(big))

    async with busy_server(hello) as server:
        async with trio.open_nursery() as nursery:
            for k in range(8):
                nursery.start_soon(client, server, k)
        assert server.server.state.readiness.busy


async def test_sockets_closed_and_reused_are_watched_anew() -> None:
    """A closed socket's number goes to the next one accepted, which needs a registration of
    its own: each short connection in turn is answered, none waits for an event that would
    never come."""
    async with busy_server(hello) as server:
        for i in range(10):
            stream = await connect(server)
            async with stream:
                await trio.sleep(0.01)  # (so that the server waits for the request)
                await stream.send_all(
                    b"GET /%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i
                )
                response = b""
                with trio.fail_after(10):
                    while chunk := await stream.receive_some():
                        response += chunk
            assert response.startswith(b"HTTP/1.1 200 ")
            assert response.endswith(b"0:/%d" % i)
        assert server.server.state.readiness.busy


async def test_an_idle_keep_alive_connection_times_out() -> None:
    """A wait in the set is cancelled like trio's: by the keep-alive timeout."""
    async with busy_server(hello, timeout_keep_alive=0.3) as server:
        async with await connect(server) as stream:
            buffer = bytearray()
            for _ in range(3):
                await stream.send_all(request("/"))
                await read_response(stream, buffer)
            assert server.server.state.readiness.busy
            start = trio.current_time()
            with trio.fail_after(10):
                assert await stream.receive_some() == b""
            assert trio.current_time() - start >= 0.25


async def test_a_graceful_stop_closes_idle_connections_at_once() -> None:
    streams = []
    async with busy_server(hello, timeout_keep_alive=60) as server:
        for _ in range(3):
            stream = await connect(server)
            await stream.send_all(request("/"))
            await read_response(stream, bytearray())
            streams.append(stream)
        assert server.server.state.readiness.busy
        await trio.testing.wait_all_tasks_blocked()  # (all three wait for a request)
        start = trio.current_time()
    with trio.fail_after(10):
        for stream in streams:
            assert await stream.receive_some() == b""
            await stream.aclose()
    assert trio.current_time() - start < 5


async def test_a_client_gone_during_the_app_is_noticed() -> None:
    """The app waits for ``http.disconnect`` after its response; the connection's reader
    waits in the set for the client's end."""
    disconnected = trio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"streaming", "more_body": True})
        if (await receive())["type"] == "http.disconnect":
            disconnected.set()

    async with busy_server(app) as server:
        for _ in range(2):  # (the first makes the server busy)
            disconnected = trio.Event()
            stream = await connect(server)
            await stream.send_all(request("/"))
            with trio.fail_after(10):
                data = b""
                while b"streaming" not in data:
                    data += await stream.receive_some()
            await stream.aclose()
            with trio.fail_after(10):
                await disconnected.wait()
        assert server.server.state.readiness.busy


async def test_websockets_echo_small_and_large_messages_and_close() -> None:
    app = EchoApp()
    large = bytes(range(256)) * 4096  # 1 MiB: many reads, each filling the buffer
    async with busy_server(app, ws_ping_interval=None) as server:

        async def session(k: int) -> None:
            stream = await connect(server)
            peer = await open_peer(stream)
            for i in range(30):
                await peer.send(frame(TEXT, b"%d-%d" % (k, i)))
                assert await peer.receive() == Text(b"%d-%d" % (k, i))
            await peer.send(frame(BINARY, large))
            echoed = await peer.receive()
            assert echoed.payload == large
            await peer.close(1000)
            await peer.aclose()

        async with trio.open_nursery() as nursery:
            for k in range(4):
                nursery.start_soon(session, k)
        assert server.server.state.readiness.busy
        assert app.received == 4 * 31


async def test_a_websocket_dropped_while_its_reader_waits_in_the_set_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The peer never answers the app's close: after the close handshake's timeout the
    session closes the socket under its reader (``abandon``), which waits in the set and
    must wake up for the connection to end."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await receive()
            await send({"type": "websocket.close", "code": 1000})
            await receive()

    async with busy_server(app, ws_ping_interval=None) as server:
        stream = await connect(server)
        peer = await open_peer(stream)
        await peer.send(frame(TEXT, b"bye"))
        assert (await peer.receive()).close_code == 1000
        assert server.server.state.readiness.busy
        await peer.expect_eof(timeout=2 * CLOSE_HANDSHAKE_TIMEOUT)  # we never answer
        with trio.fail_after(1):
            while server.server.state.connections:
                await trio.sleep(0.01)
        await stream.aclose()
