"""Autobahn 5.x: fragmented messages, control frames between fragments, and broken sequences."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from .wire import (
    BINARY,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Binary,
    Peer,
    Pong,
    Text,
    frame,
    serve,
)

DELIVERIES = ["one-write", "frame-wise", "octet-wise"]


async def deliver(peer: Peer, frames: list[bytes], delivery: str) -> None:
    """Send ``frames`` in one write, one frame at a time, or one byte per server read."""
    if delivery == "frame-wise":
        await peer.send_each(*frames)
        return
    peer.chop(1 if delivery == "octet-wise" else None)
    await peer.send(*frames)


@pytest.mark.parametrize("opcode", [PING, PONG], ids=["5.1-ping", "5.2-pong"])
async def test_fragmented_control_frame_is_1002(autojump_clock: MockClock, opcode: int) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(opcode, b"fragment1", fin=False), frame(CONTINUATION, b"fragment2"))
        await peer.expect_close(1002)  # no pong for the "ping"


@pytest.mark.parametrize("delivery", DELIVERIES, ids=["5.3", "5.4", "5.5"])
async def test_text_in_two_fragments(autojump_clock: MockClock, delivery: str) -> None:
    async with serve() as server:
        peer = await server.connect()
        frames = [frame(TEXT, b"fragment1", fin=False), frame(CONTINUATION, b"fragment2")]
        await deliver(peer, frames, delivery)
        assert await peer.receive() == Text("fragment1fragment2")
        await peer.close()


@pytest.mark.parametrize("delivery", DELIVERIES, ids=["5.6", "5.7", "5.8"])
async def test_ping_between_fragments_is_answered_first(
    autojump_clock: MockClock, delivery: str
) -> None:
    async with serve() as server:
        peer = await server.connect()
        frames = [
            frame(TEXT, b"fragment1", fin=False),
            frame(PING, b"ping payload"),
            frame(CONTINUATION, b"fragment2"),
        ]
        await deliver(peer, frames, delivery)
        assert await peer.receive() == Pong(b"ping payload")
        assert await peer.receive() == Text("fragment1fragment2")
        await peer.close()


@pytest.mark.parametrize("fin", [True, False], ids=["fin", "no-fin"])
@pytest.mark.parametrize("delivery", DELIVERIES)
async def test_continuation_without_a_message_is_1002(
    autojump_clock: MockClock, fin: bool, delivery: str
) -> None:
    # 5.9-5.11 (FIN set) and 5.12-5.14 (FIN clear): the text message after it is not echoed.
    async with serve() as server:
        peer = await server.connect()
        frames = [frame(CONTINUATION, b"non-continuation payload", fin=fin), frame(TEXT, b"Hi")]
        await deliver(peer, frames, delivery)
        await peer.expect_close(1002)
        assert server.app.received == 0
        assert (await server.app.disconnect())[0] == 1002


@pytest.mark.parametrize(
    "delivery",
    [
        "one-write",
        "frame-wise",
    ],
    ids=["5.15", "5.15-frame-wise"],
)
async def test_5_15_continuation_after_a_complete_message(
    autojump_clock: MockClock, delivery: str
) -> None:
    async with serve() as server:
        peer = await server.connect()
        frames = [
            frame(TEXT, b"fragment1", fin=False),
            frame(CONTINUATION, b"fragment2"),
            frame(CONTINUATION, b"fragment3", fin=False),
            frame(TEXT, b"fragment4"),
        ]
        await deliver(peer, frames, delivery)
        assert await peer.receive() == Text("fragment1fragment2")
        await peer.expect_close(1002)
        assert server.app.received == 1


@pytest.mark.parametrize("fin", [False, True], ids=["5.16", "5.17"])
async def test_stray_continuations_around_good_messages(
    autojump_clock: MockClock, fin: bool
) -> None:
    async with serve() as server:
        peer = await server.connect()
        good = [frame(TEXT, b"fragment2", fin=False), frame(CONTINUATION, b"fragment3")]
        stray = frame(CONTINUATION, b"fragment1", fin=fin)
        await peer.send(stray, *good, stray, *good)
        await peer.expect_close(1002)  # the very first frame is already wrong
        assert server.app.received == 0


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
async def test_5_18_new_message_before_the_last_one_ended(
    autojump_clock: MockClock, opcode: int
) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(TEXT, b"fragment1", fin=False), frame(opcode, b"fragment2"))
        await peer.expect_close(1002)
        assert server.app.received == 0


@pytest.mark.parametrize("delivery", ["frame-wise", "one-write"], ids=["5.19", "5.20"])
async def test_pings_inside_a_message_are_answered_before_it_ends(
    autojump_clock: MockClock, delivery: str
) -> None:
    # 5.19/5.20: each pong comes back while the message is still incomplete.
    async with serve() as server:
        peer = await server.connect()
        send = peer.send_each if delivery == "frame-wise" else peer.send
        await send(
            frame(TEXT, b"fragment1", fin=False),
            frame(CONTINUATION, b"fragment2", fin=False),
            frame(PING, b"pongme 1!"),
        )
        assert await peer.receive() == Pong(b"pongme 1!")
        await send(
            frame(CONTINUATION, b"fragment3", fin=False),
            frame(CONTINUATION, b"fragment4", fin=False),
            frame(PING, b"pongme 2!"),
        )
        assert await peer.receive() == Pong(b"pongme 2!")
        await send(frame(CONTINUATION, b"fragment5"))
        assert await peer.receive() == Text("fragment1fragment2fragment3fragment4fragment5")
        await peer.close()


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
async def test_many_fragments_including_empty_ones(autojump_clock: MockClock, opcode: int) -> None:
    async with serve() as server:
        peer = await server.connect()
        pieces = [b"", b"a", b"", b"bc" * 100, b"", b"d"]
        frames = [
            frame(opcode if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
            for i, piece in enumerate(pieces)
        ]
        await peer.send(*frames)
        expected = b"".join(pieces)
        assert await peer.receive() == (Text(expected) if opcode == TEXT else Binary(expected))
        await peer.close()


async def test_pong_and_ping_interleaved_in_a_binary_message(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(
            frame(BINARY, b"\x00" * 10, fin=False),
            frame(PONG, b"unsolicited"),
            frame(CONTINUATION, b"\x01" * 10, fin=False),
            frame(PING, b"1"),
            frame(PING, b"2"),
            frame(CONTINUATION, b"\x02" * 10),
        )
        assert await peer.receive() == Pong(b"1")
        assert await peer.receive() == Pong(b"2")
        assert await peer.receive() == Binary(b"\x00" * 10 + b"\x01" * 10 + b"\x02" * 10)
        await peer.close()
