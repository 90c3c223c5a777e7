"""The connection's raw I/O fast paths: direct reads and writes must still share the CPU."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi import Config
from trio_asgi.asgi.scope import ConnectionInfo
from trio_asgi.connection import (
    EAGER_BACKOFF,
    RECEIVE_SIZE,
    YIELD_EVERY,
    Connection,
    ServerState,
)


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


class CountingReads:
    """``os.read`` counted: the size of each read, ``None`` for one that found nothing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: list[int | None] = []
        self.waits = 0
        real_read = os.read
        real_wait = trio.lowlevel.wait_readable

        def read(fd: int, size: int) -> bytes:
            try:
                data = real_read(fd, size)
            except BlockingIOError:
                self.reads.append(None)
                raise
            self.reads.append(len(data))
            return data

        def wait_readable(fd: int) -> Any:
            self.waits += 1
            return real_wait(fd)

        monkeypatch.setattr(os, "read", read)
        monkeypatch.setattr(trio.lowlevel, "wait_readable", wait_readable)


async def test_a_read_that_would_find_nothing_is_tried_once_then_waits_are_plain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a read that emptied the socket the next one yields first, then reads. When
    that read finds nothing (the peer had not answered: a quiet server), the next
    EAGER_BACKOFF waits for readiness without trying, so a lone client pays one failed read
    in EAGER_BACKOFF + 1, not one per message."""
    ours, peer = socket.socketpair()
    conn = connection_on(ours)
    counted = CountingReads(monkeypatch)

    async def answer_later(payload: bytes) -> None:
        await trio.testing.wait_all_tasks_blocked()  # (so never while the reader yields)
        peer.sendall(payload)

    messages = EAGER_BACKOFF + 3
    async with trio.open_nursery() as nursery:
        for n in range(messages):
            nursery.start_soon(answer_later, b"message %02d" % n)
            assert await conn.receive() == b"message %02d" % n
    # The very first read (before anything was read) and the eager one after the backoff
    # found nothing; every other read came after a wait.
    assert counted.reads == [None, *[10] * EAGER_BACKOFF, None, 10, 10, 10]
    assert counted.waits == messages
    peer.close()


async def test_a_peer_that_answers_while_the_reader_yields_costs_no_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy server: by the time the reader's turn comes again (it yields after a read that
    emptied the socket), the peer has sent its next message, and the read takes it without
    waiting for readiness."""
    ours, peer = socket.socketpair()
    conn = connection_on(ours)
    counted = CountingReads(monkeypatch)
    peer.sendall(b"message 00")
    for n in range(1, 6):
        assert await conn.receive() == b"message %02d" % (n - 1)
        peer.sendall(b"message %02d" % n)  # (the other tasks' turns, in short)
    assert await conn.receive() == b"message 05"
    assert counted.reads == [10] * 6
    assert counted.waits == 0
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
