"""Autobahn 12.x: permessage-deflate round trips with the default offer.

Autobahn sends 1000 messages per case, cut from five corpora (JSON, a bitmap, German prose,
HTML, a PDF) at sizes from 16 bytes to 128 KiB, whole or with the compressed payload split
into frames. Here synthetic corpora of the same kinds stand in, with fewer messages; each
message is the next slice of the corpus, so both sides' compression contexts carry over
from message to message, as in Autobahn.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from functools import cache

import pytest
from trio.testing import MockClock

from trio_asgi.protocols.deflate import MIN_COMPRESS_SIZE

from .wire import BINARY, RSV1, TEXT, Frame, frame, serve

OFFER = "permessage-deflate; client_max_window_bits"  # what browsers send
SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072]


# Messages per connection: at least two (so contexts carry over), at most ~256 KiB in all.
def message_count(size: int) -> int:
    return max(2, min(8, (256 << 10) // size))


@cache
def corpus(kind: str) -> str | bytes:
    """About 300 KiB of data of one kind, the same on every run."""
    rng = random.Random(kind)
    if kind == "json":
        records = [
            {"id": i, "name": f"user{rng.randrange(10**6)}", "tags": ["a", "b"][: i % 3]}
            for i in range(4000)
        ]
        return json.dumps(records)
    if kind == "html":
        rows = "".join(
            f'<tr class="row-{i % 2}"><td>{i}</td><td>{rng.random():.6f}</td></tr>\n'
            for i in range(6000)
        )
        return f"<html><body><table>\n{rows}</table></body></html>"
    if kind == "prose":
        words = ["Größe", "über", "Fräulein", "Straße", "Faust", "Geist", "ça", "κόσμε", "und"]
        return " ".join(rng.choice(words) for _ in range(50000))
    if kind == "bitmap":
        return bytes((x * y // 64 + rng.randrange(4)) % 256 for y in range(512) for x in range(600))
    assert kind == "random"
    return rng.randbytes(300_000)


def slices(kind: str, size: int, count: int) -> Iterator[tuple[int, bytes]]:
    """Consecutive slices of ``size`` characters (text) or bytes, wrapping around."""
    data = corpus(kind)
    opcode = TEXT if isinstance(data, str) else BINARY
    start = 0
    for _ in range(count):
        piece = data[start : start + size]
        piece += data[: size - len(piece)]
        start = (start + size) % len(data)
        yield opcode, piece.encode() if isinstance(piece, str) else piece


@pytest.mark.parametrize("kind", ["json", "bitmap", "prose", "html", "random"])
@pytest.mark.parametrize("size", SIZES)
async def test_12_compressed_round_trips(autojump_clock: MockClock, kind: str, size: int) -> None:
    async with serve() as server:
        # Whole frames, then (as in 12.x.11-18) the compressed payload split into frames.
        for fragment in (None, 256, 4096) if size >= 8192 else (None,):
            peer = await server.connect(extensions=[OFFER])
            assert peer.deflate is not None
            for opcode, payload in slices(kind, size, message_count(size)):
                await peer.send_message(opcode, payload, fragment=fragment)
                assert await peer.receive() == Frame(opcode, payload)
            await peer.close()


@pytest.mark.parametrize("size", [0, 1, MIN_COMPRESS_SIZE - 1, MIN_COMPRESS_SIZE, 10_000])
async def test_12_which_echoes_are_compressed(autojump_clock: MockClock, size: int) -> None:
    """The server compresses messages from MIN_COMPRESS_SIZE bytes on (a per-message choice
    RFC 7692 allows), and every compressed message inflates to the original."""
    async with serve() as server:
        peer = await server.connect(extensions=[OFFER])
        assert peer.deflate is not None
        payload = b"abc" * (size // 3) + b"x" * (size % 3)
        await peer.send_message(BINARY, payload)
        echo = await peer.read_frame()
        assert echo is not None and echo.opcode == BINARY and echo.fin
        compressed = bool(echo.rsv & RSV1)
        assert compressed == (size >= MIN_COMPRESS_SIZE)
        assert (peer.deflate.decompress(echo.payload) if compressed else echo.payload) == payload
        await peer.close()


async def test_12_compressed_and_plain_messages_mix(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[OFFER])
        for i, (opcode, payload) in enumerate(slices("json", 3000, 10)):
            await peer.send_message(opcode, payload, compress=i % 3 != 0)
            assert await peer.receive() == Frame(opcode, payload)
        await peer.close()


async def test_12_compressed_messages_in_one_read_and_in_small_chops(
    autojump_clock: MockClock,
) -> None:
    async with serve() as server:
        for chop in (None, 7):
            peer = await server.connect(extensions=[OFFER])
            peer.chop(chop)
            messages = list(slices("prose", 500, 20))
            for opcode, payload in messages:
                await peer.send_message(opcode, payload, fragment=50)
            for opcode, payload in messages:
                assert await peer.receive() == Frame(opcode, payload)
            await peer.close()


@pytest.mark.parametrize("payload", [b"", b"\x00"], ids=["no-bytes", "empty-stored-block"])
async def test_12_compressed_empty_message(autojump_clock: MockClock, payload: bytes) -> None:
    # RFC 7692 7.2.3.6: an empty message may be sent compressed as nothing, or as 0x00.
    async with serve() as server:
        peer = await server.connect(extensions=[OFFER])
        await peer.send(frame(TEXT, payload, rsv=RSV1))
        assert await peer.receive() == Frame(TEXT, b"")
        await peer.close()
