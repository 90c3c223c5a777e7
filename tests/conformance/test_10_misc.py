"""Autobahn 10.x and the rest: auto-fragmented input, frames that never interleave on the
wire, and connections that do not disturb each other."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from .wire import BINARY, CONTINUATION, PING, TEXT, Binary, Pong, Text, frame, serve


async def test_10_1_1_auto_fragmented_text(autojump_clock: MockClock) -> None:
    # 65536 bytes in frames of 1300: the echo may come back in any fragmentation (the
    # server sends one frame per message; auto-fragmentation is not required).
    payload = b"*" * 65536
    pieces = [payload[i : i + 1300] for i in range(0, len(payload), 1300)]
    async with serve() as server:
        peer = await server.connect()
        await peer.send(
            *(
                frame(TEXT if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
                for i, piece in enumerate(pieces)
            )
        )
        assert await peer.receive() == Text(payload)
        await peer.close()


async def test_pong_waits_for_a_frame_that_is_half_written(autojump_clock: MockClock) -> None:
    """The echo of a 1 MiB message is stuck half-way in a full socket buffer when a ping
    arrives: the pong must wait for the frame to end, not be spliced into it."""
    payload = bytes(range(256)) * 4096
    async with serve() as server:
        peer = await server.connect()
        peer.stream.pause_reading()
        await peer.send(frame(BINARY, payload))
        await trio.testing.wait_all_tasks_blocked()  # the app is blocked writing the echo
        await peer.send(frame(PING, b"between frames"))
        await trio.testing.wait_all_tasks_blocked()
        peer.stream.pause_reading(False)
        assert await peer.receive() == Binary(payload)  # whole, then
        assert await peer.receive() == Pong(b"between frames")
        await peer.close()


async def test_a_failing_connection_does_not_disturb_another(autojump_clock: MockClock) -> None:
    async with serve() as server:
        good = await server.connect()
        bad = await server.connect()
        await good.send(frame(TEXT, b"part one ", fin=False))
        await bad.send(frame(TEXT, b"\xff"))
        await bad.expect_close(1007)
        await good.send(frame(CONTINUATION, b"and two"))
        assert await good.receive() == Text("part one and two")
        await good.close()


async def test_messages_and_types_keep_their_order(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        sent = [Text("a"), Binary(b"b"), Text(""), Binary(b""), Text("é" * 200), Binary(b"\0")]
        await peer.send(*(frame(message.opcode, message.payload) for message in sent))
        assert [await peer.receive() for _ in sent] == sent
        await peer.close()
