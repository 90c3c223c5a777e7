"""Autobahn 9.x: big messages, many frames, many messages; 1009 past ``ws_max_size``.

Autobahn goes up to 16 MiB messages; here the limit is 1 MiB so the suite stays fast, and
the same shapes are checked against it: at the limit, one byte over, in many fragments, in
small reads, and many small messages in flight at once.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from .wire import BINARY, CONTINUATION, TEXT, Binary, Frame, Text, frame, serve

LIMIT = 1 << 20


def data(opcode: int, size: int) -> bytes:
    return (
        b"x" * size if opcode == TEXT else bytes(range(256)) * (size // 256) + b"!" * (size % 256)
    )


def fragments(opcode: int, payload: bytes, size: int) -> list[bytes]:
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [
        frame(opcode if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["9.1", "9.2"])
async def test_big_messages_up_to_the_limit(autojump_clock: MockClock, opcode: int) -> None:
    async with serve(ws_max_size=LIMIT) as server:
        peer = await server.connect()
        for size in (64 << 10, 256 << 10, LIMIT):
            payload = data(opcode, size)
            await peer.send(frame(opcode, payload))
            assert await peer.receive() == Frame(opcode, payload)
        await peer.close()


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
async def test_one_byte_over_the_limit_is_1009(autojump_clock: MockClock, opcode: int) -> None:
    async with serve(ws_max_size=LIMIT) as server:
        peer = await server.connect()
        await peer.send(frame(opcode, data(opcode, LIMIT + 1)))
        await peer.expect_close(1009)
        assert (await server.app.disconnect())[0] == 1009
        assert server.app.received == 0


async def test_oversized_frame_fails_before_it_ends(autojump_clock: MockClock) -> None:
    # The frame announces 2 MiB; the server fails as soon as it holds more than the limit.
    payload = data(BINARY, 2 * LIMIT)
    whole = frame(BINARY, payload)
    header = len(whole) - len(payload)
    async with serve(ws_max_size=LIMIT) as server:
        peer = await server.connect()
        await peer.send(whole[: header + LIMIT])
        await peer.expect_nothing()
        await peer.send(whole[header + LIMIT : header + LIMIT + 1])
        await peer.expect_close(1009)


async def test_fragmented_message_over_the_limit_fails_before_it_ends(
    autojump_clock: MockClock,
) -> None:
    async with serve(ws_max_size=LIMIT) as server:
        peer = await server.connect()
        quarter = data(BINARY, LIMIT // 4)
        await peer.send(*(frame(BINARY if i == 0 else 0, quarter, fin=False) for i in range(4)))
        await peer.expect_nothing()
        await peer.send(frame(CONTINUATION, b"!", fin=False))  # not even the last fragment
        await peer.expect_close(1009)


async def test_text_limit_counts_utf8_bytes_not_characters(autojump_clock: MockClock) -> None:
    async with serve(ws_max_size=LIMIT) as server:
        peer = await server.connect()
        exact = ("é" * (LIMIT // 2)).encode()  # 2 bytes per character: exactly the limit
        await peer.send(frame(TEXT, exact))
        assert await peer.receive() == Text(exact)
        over = ("€" * (LIMIT // 3 + 1)).encode()  # fewer characters than the limit, more bytes
        await peer.send(frame(TEXT, over))
        await peer.expect_close(1009)


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["9.3", "9.4"])
@pytest.mark.parametrize("size", [64, 256, 1024, 4096, 16384, 65536, 262144, LIMIT])
async def test_message_in_fragments_of_every_size(
    autojump_clock: MockClock, opcode: int, size: int
) -> None:
    # Autobahn sends 4 MiB; 64-byte fragments of 256 KiB are already 4096 frames.
    total = LIMIT if size >= 1024 else 256 << 10
    payload = data(opcode, total)
    async with serve(ws_max_size=LIMIT) as server:
        peer = await server.connect()
        await peer.send(*fragments(opcode, payload, size))
        assert await peer.receive() == Frame(opcode, payload)
        await peer.close()


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["9.5", "9.6"])
@pytest.mark.parametrize("chop", [64, 128, 256, 512, 1024, 2048])
async def test_message_read_in_small_chops(
    autojump_clock: MockClock, opcode: int, chop: int
) -> None:
    payload = data(opcode, 256 << 10)
    async with serve(ws_max_size=LIMIT) as server:
        peer = await server.connect()
        peer.chop(chop)
        await peer.send(frame(opcode, payload))
        assert await peer.receive() == Frame(opcode, payload)
        await peer.close()


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["9.7", "9.8"])
@pytest.mark.parametrize("size", [0, 16, 64, 256, 1024, 4096])
async def test_many_small_messages_in_flight(
    autojump_clock: MockClock, opcode: int, size: int
) -> None:
    """1000 messages written as fast as possible while the echoes are read concurrently
    (as a real client does: neither side's buffers can hold them all)."""
    count = 1000 if size <= 256 else 200
    # Each message carries its number, so a lost or reordered echo is noticed.
    messages = [(b"%08d" % i + data(opcode, size))[:size] if size else b"" for i in range(count)]
    async with serve(ws_max_size=LIMIT, ws_max_queue=8) as server:
        peer = await server.connect()
        async with trio.open_nursery() as nursery:

            async def send_all() -> None:
                for message in messages:
                    await peer.send(frame(opcode, message))

            nursery.start_soon(send_all)
            for message in messages:
                assert await peer.receive() == Frame(opcode, message)
        await peer.close()
        assert server.app.received == count


async def test_9_9_many_4k_frames_up_to_the_limit_and_one_more(autojump_clock: MockClock) -> None:
    chunk = data(BINARY, 4096)
    async with serve(ws_max_size=LIMIT) as server:
        peer = await server.connect()
        frames = LIMIT // 4096
        await peer.send(*fragments(BINARY, chunk * frames, 4096))
        assert await peer.receive() == Binary(chunk * frames)
        await peer.send(*fragments(BINARY, chunk * (frames + 1), 4096))
        await peer.expect_close(1009)
