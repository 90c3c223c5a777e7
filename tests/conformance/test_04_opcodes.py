"""Autobahn 4.x: reserved opcodes (non-control 3-7, control 0xB-0xF) fail with 1002."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from .wire import PING, TEXT, Text, frame, serve

NON_CONTROL = [3, 4, 5, 6, 7]
CONTROL = [0xB, 0xC, 0xD, 0xE, 0xF]


@pytest.mark.parametrize("opcode", NON_CONTROL + CONTROL)
@pytest.mark.parametrize("payload", [b"", b"reserved opcode payload"], ids=["empty", "payload"])
async def test_4_x_reserved_opcode_alone(
    autojump_clock: MockClock, opcode: int, payload: bytes
) -> None:
    # 4.1.1-4.1.2 and 4.2.1-4.2.2 (empty and non-empty payloads)
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(opcode, payload))
        await peer.expect_close(1002)
        assert (await server.app.disconnect())[0] == 1002


@pytest.mark.parametrize("opcode", [5, 6, 7, 0xD, 0xE, 0xF])
@pytest.mark.parametrize(
    "delivery",
    [
        "frame-wise",
        "one-write",
    ],
)
async def test_4_x_reserved_opcode_between_a_message_and_a_ping(
    autojump_clock: MockClock, opcode: int, delivery: str
) -> None:
    # 4.1.3-4.1.5 and 4.2.3-4.2.5: the message before is echoed, the ping after is not answered.
    async with serve() as server:
        peer = await server.connect()
        frames = [frame(TEXT, b"Hello, world!"), frame(opcode, b"x" * 10), frame(PING, b"no")]
        await (peer.send_each if delivery == "frame-wise" else peer.send)(*frames)
        assert await peer.receive() == Text("Hello, world!")
        await peer.expect_close(1002)
        assert server.app.received == 1


@pytest.mark.parametrize("opcode", [3, 0xB])
async def test_4_x_reserved_opcode_fails_on_its_header_alone(
    autojump_clock: MockClock, opcode: int
) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(opcode, b"x" * 50)[:2])
        await peer.expect_close(1002)


@pytest.mark.parametrize("opcode", [3, 0xB])
async def test_4_x_reserved_opcode_inside_a_fragmented_message(
    autojump_clock: MockClock, opcode: int
) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(TEXT, b"frag", fin=False), frame(opcode, b""), frame(0, b"ment"))
        await peer.expect_close(1002)
        assert server.app.received == 0
