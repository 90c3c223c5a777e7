"""Autobahn 1.x: text and binary frames of every length encoding, whole and chopped."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from .wire import BINARY, TEXT, Binary, Frame, Text, frame, serve

# Each side of each length-encoding boundary (7-bit, 16-bit, 64-bit), as in cases 1.1.1-1.1.7.
LENGTHS = [0, 125, 126, 127, 128, 65535, 65536]


def payload(opcode: int, size: int) -> bytes:
    return b"*" * size if opcode == TEXT else bytes(i % 256 for i in range(size))


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("size", LENGTHS)
async def test_1_x_every_length_encoding_is_echoed(
    autojump_clock: MockClock, opcode: int, size: int
) -> None:
    async with serve() as server:
        peer = await server.connect()
        data = payload(opcode, size)
        await peer.send(frame(opcode, data))
        assert await peer.receive() == Frame(opcode, data)
        await peer.close()
        assert await server.app.disconnect() == (1000, "")


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("chop", [1, 997])
async def test_1_x_8_message_delivered_in_chops(
    autojump_clock: MockClock, opcode: int, chop: int
) -> None:
    # 1.1.8 / 1.2.8: 65536 bytes arriving 997 bytes at a time (and, harder, 1 at a time
    # for a smaller message, so every header byte arrives on its own).
    size = 65536 if chop == 997 else 300
    async with serve() as server:
        peer = await server.connect()
        peer.chop(chop)
        data = payload(opcode, size)
        await peer.send(frame(opcode, data))
        assert await peer.receive() == Frame(opcode, data)
        await peer.close()


async def test_1_x_big_payloads_with_64_bit_length(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        for size in (1 << 20, 3 << 20):
            data = payload(BINARY, size)
            await peer.send(frame(BINARY, data))
            assert await peer.receive() == Binary(data)
        await peer.close()


async def test_1_x_several_messages_in_one_read_keep_their_order(
    autojump_clock: MockClock,
) -> None:
    async with serve() as server:
        peer = await server.connect()
        sizes = [0, 1, 125, 126, 65535, 65536, 3]
        await peer.send(*(frame(TEXT, b"t" * size) for size in sizes))
        for size in sizes:
            assert await peer.receive() == Text(b"t" * size)
        await peer.close()


async def test_1_x_server_frames_use_minimal_length_encodings(autojump_clock: MockClock) -> None:
    # Checked for every frame by Peer.read_frame; here explicitly at the boundaries.
    async with serve() as server:
        peer = await server.connect()
        for size in LENGTHS:
            await peer.send(frame(BINARY, b"b" * size))
            received = await peer.read_frame()
            assert received == Frame(BINARY, b"b" * size)
        await peer.close()
