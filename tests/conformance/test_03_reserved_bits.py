"""Autobahn 3.x: a reserved bit no extension gave meaning to fails the connection with 1002.

After the failure nothing else is processed: a ping sent behind the bad frame gets no pong,
and the server closes TCP right after its close frame.
"""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from .wire import BINARY, CLOSE, PING, TEXT, Text, close_payload, frame, serve

DEFLATE = "permessage-deflate"


@pytest.mark.parametrize(
    ("opcode", "rsv", "payload"),
    [
        pytest.param(TEXT, 1, b"Hello, world!", id="3.1"),
        pytest.param(BINARY, 5, bytes(range(8)), id="3.5"),
        pytest.param(PING, 6, b"Hello, world!", id="3.6"),
        pytest.param(CLOSE, 7, close_payload(1000), id="3.7"),
    ],
)
async def test_reserved_bits_on_a_single_frame(
    autojump_clock: MockClock, opcode: int, rsv: int, payload: bytes
) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(opcode, payload, rsv=rsv))
        await peer.expect_close(1002)
        assert (await server.app.disconnect())[0] == 1002
        assert server.app.received == 0


@pytest.mark.parametrize(
    ("rsv", "delivery"),
    [
        (2, "one-write"),
        (3, "frame-wise"),
        (4, "octet-wise"),
        (2, "frame-wise"),
        (1, "octet-wise"),
    ],
    ids=["3.2-rsv2", "3.3-rsv3", "3.4-rsv1", "rsv2-frame-wise", "rsv3-octet-wise"],
)
async def test_reserved_bits_after_a_good_message(
    autojump_clock: MockClock, rsv: int, delivery: str
) -> None:
    async with serve() as server:
        peer = await server.connect()
        frames = [
            frame(TEXT, b"Hello, world!"),
            frame(TEXT, b"Hello, world!", rsv=rsv),
            frame(PING, b"no pong for this"),
        ]
        if delivery == "frame-wise":
            await peer.send_each(*frames)
        else:
            peer.chop(1 if delivery == "octet-wise" else None)
            await peer.send(*frames)
        assert await peer.receive() == Text("Hello, world!")
        await peer.expect_close(1002)  # no pong, and TCP closed
        assert server.app.received == 1


@pytest.mark.parametrize("rsv", [1, 2, 3, 5, 6, 7])
async def test_with_deflate_only_rsv1_is_defined(autojump_clock: MockClock, rsv: int) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[DEFLATE])
        assert peer.deflate is not None
        await peer.send(frame(TEXT, peer.deflate.compress(b"x"), rsv=rsv))
        await peer.expect_close(1002)


@pytest.mark.parametrize(
    ("opcode", "payload"),
    [(PING, b"p"), (CLOSE, close_payload(1000))],
    ids=["ping", "close"],
)
async def test_with_deflate_rsv1_on_a_control_frame_is_1002(
    autojump_clock: MockClock, opcode: int, payload: bytes
) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[DEFLATE])
        await peer.send(frame(opcode, payload, rsv=4))
        await peer.expect_close(1002)


async def test_with_deflate_rsv1_on_a_continuation_is_1002(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[DEFLATE])
        await peer.send(frame(TEXT, b"abc", fin=False), frame(0, b"def", rsv=4))
        await peer.expect_close(1002)
        assert server.app.received == 0
