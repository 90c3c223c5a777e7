"""The connection's raw I/O fast paths: direct reads and writes must still share the CPU."""

from __future__ import annotations

import os
import socket

import pytest
import trio
import trio.testing

from trio_asgi import Config
from trio_asgi.asgi.scope import ConnectionInfo
from trio_asgi.connection import RECEIVE_SIZE, YIELD_EVERY, Connection, ServerState


def connection_on(sock: socket.socket) -> Connection:
    state = ServerState(app=None, config=Config())  # type: ignore[arg-type]
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    return Connection(stream, state, ConnectionInfo(client=None, server=None))


class OtherTask:
    """A task that counts its scheduler turns: proof that a busy connection shares the CPU."""

    def __init__(self) -> None:
        self.turns = 0

    async def run(self) -> None:
        while True:
            self.turns += 1
            await trio.lowlevel.checkpoint()


async def test_reads_that_never_block_still_let_other_tasks_run() -> None:
    ours, peer = socket.socketpair()
    # Always more to read than one read takes, so no read is short (after a short read the
    # connection waits for readiness, which would yield anyway and prove nothing here).
    peer.sendall(b"x" * 2 * RECEIVE_SIZE)
    conn = connection_on(ours)
    other = OtherTask()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other.run)
        await trio.lowlevel.checkpoint()
        before = other.turns
        # The read after every YIELD_EVERY in a row waits its turn: four turns in this many.
        for _ in range(YIELD_EVERY * 4 + 1):
            data = await conn.receive()  # never blocks: the peer keeps the socket full
            assert len(data) == RECEIVE_SIZE
            peer.sendall(data)
        assert other.turns - before >= 3
        nursery.cancel_scope.cancel()
    peer.close()


async def test_writes_that_never_block_still_let_other_tasks_run() -> None:
    ours, peer = socket.socketpair()
    conn = connection_on(ours)
    other = OtherTask()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other.run)
        await trio.lowlevel.checkpoint()
        before = other.turns
        for _ in range(YIELD_EVERY * 4):
            await conn.send(b"y" * 10)
        assert other.turns - before >= 3
        nursery.cancel_scope.cancel()
    assert peer.recv(1000) == b"y" * 10 * YIELD_EVERY * 4
    peer.close()


async def test_after_a_read_that_emptied_the_socket_the_next_one_waits_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that waits for our answer has not sent more yet: reading at once would only
    fail with EAGAIN, so after a short read the connection waits for readiness instead."""
    ours, peer = socket.socketpair()
    conn = connection_on(ours)
    reads: list[int | None] = []
    real_read = os.read

    def counting_read(fd: int, size: int) -> bytes:
        try:
            data = real_read(fd, size)
        except BlockingIOError:
            reads.append(None)
            raise
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)

    async def answer_later(payload: bytes) -> None:
        await trio.testing.wait_all_tasks_blocked()
        peer.sendall(payload)

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(answer_later, b"message %d" % n)
            assert await conn.receive() == b"message %d" % n
    # Only the very first read, before anything was read at all, tried and failed.
    assert reads == [None, 9, 9, 9, 9, 9]

    peer.close()


async def test_a_closed_connection_never_reads_the_descriptor_again() -> None:
    """``abandon`` closes the socket; the descriptor number is free for the next accepted
    connection at once, and a reader woken in that moment must not read from it."""
    ours, peer = socket.socketpair()
    conn = connection_on(ours)
    stale_fd = ours.fileno()
    conn.abandon()
    assert ours.fileno() == -1
    newcomer, newcomer_peer = socket.socketpair()  # the lowest free numbers: ours again
    assert stale_fd in (newcomer.fileno(), newcomer_peer.fileno())
    newcomer_peer.sendall(b"not yours")
    newcomer.sendall(b"not yours")
    assert conn.receive_nowait() == b""
    assert await conn.receive() == b""
    newcomer.setblocking(False)
    newcomer_peer.setblocking(False)
    assert newcomer.recv(100) == b"not yours"
    assert newcomer_peer.recv(100) == b"not yours"
    for sock in (peer, newcomer, newcomer_peer):
        sock.close()
