"""Autobahn 2.x: pings are answered with pongs carrying the same payload; pongs need nothing."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from .wire import PING, PONG, TEXT, Pong, Text, frame, serve


@pytest.mark.parametrize(
    "data",
    [
        b"",  # 2.1
        b"Hello, world!",  # 2.2
        bytes([0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF]),  # 2.3: not UTF-8
        bytes(range(125)),  # 2.4: the largest control payload
    ],
    ids=["empty", "text", "binary", "125-bytes"],
)
async def test_2_1_to_2_4_ping_gets_pong_with_the_same_payload(
    autojump_clock: MockClock, data: bytes
) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(PING, data))
        assert await peer.receive() == Pong(data)
        await peer.close()
        assert await server.app.disconnect() == (1000, "")


async def test_2_5_ping_with_126_bytes_fails_with_1002(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(PING, b"\xfe" * 126))
        await peer.expect_close(1002)  # and no pong before it
        assert (await server.app.disconnect())[0] == 1002


async def test_2_5_oversized_ping_fails_on_its_header_alone(autojump_clock: MockClock) -> None:
    # A control frame announcing 126+ bytes is wrong before any payload arrives.
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(PING, b"\xfe" * 200)[:4])
        await peer.expect_close(1002)


async def test_2_6_ping_delivered_one_byte_at_a_time(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        peer.chop(1)
        await peer.send(frame(PING, bytes(range(125))))
        assert await peer.receive() == Pong(bytes(range(125)))
        await peer.close()


@pytest.mark.parametrize("data", [b"", b"unsolicited pong payload"])
async def test_2_7_2_8_unsolicited_pong_is_ignored(autojump_clock: MockClock, data: bytes) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(PONG, data))
        # Nothing answers the pong: the next frame is the answer to the next request.
        await peer.send(frame(TEXT, b"after"))
        assert await peer.receive() == Text("after")
        await peer.close()


async def test_2_9_unsolicited_pong_then_ping(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(PONG, b"unsolicited"), frame(PING, b"solicited"))
        assert await peer.receive() == Pong(b"solicited")
        await peer.close()


@pytest.mark.parametrize("chop", [None, 1], ids=["one-write", "octet-wise"])
async def test_2_10_2_11_ten_pings_get_ten_pongs_in_order(
    autojump_clock: MockClock, chop: int | None
) -> None:
    async with serve() as server:
        peer = await server.connect()
        peer.chop(chop)
        payloads = [f"payload-{i}".encode() for i in range(10)]
        await peer.send(*(frame(PING, data) for data in payloads))
        for data in payloads:
            assert await peer.receive() == Pong(data)
        await peer.close()
