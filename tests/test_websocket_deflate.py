"""permessage-deflate (RFC 7692) on the wire: what the extension must get right beyond
Autobahn's cases (tests/conformance/test_12*, test_13*)."""

from __future__ import annotations

import sys
import zlib

import trio

from .conformance.wire import CLOSE, RSV1, TEXT, EndOfStream, Frame, frame, serve

PMD = "permessage-deflate"


def deflate_with_bfinal(data: bytes) -> bytes:
    """A message compressed the way RFC 7692 7.2.3.4 allows on platforms without a sync
    flush: one complete DEFLATE stream (its last block has BFINAL set), then the single
    octet 0x00 so that the receiver's appended 0x00 0x00 0xff 0xff parses."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH) + b"\x00"


async def test_messages_flushed_with_bfinal_are_all_inflated() -> None:
    """RFC 7692 7.2.3.4: a sender may end each message with a BFINAL block (PHP's zlib
    streams do). The RFC's own example payload for "Hello" is f3 48 cd c9 c9 07 00 00.
    The server inflates the first such message, but its inflater then stays at the end of
    the DEFLATE stream and turns every later message into an empty one: silent data loss.
    (Other implementations restart the inflater at the stream end.)"""
    assert deflate_with_bfinal(b"Hello") == bytes.fromhex("f348cdc9c9070000")  # RFC example
    with trio.fail_after(10):
        async with serve() as server:
            peer = await server.connect(extensions=[PMD])
            assert peer.deflate is not None
            for text in (b"Hello", b"Hello", b"second message", b"third"):
                await peer.send(frame(TEXT, deflate_with_bfinal(text), rsv=RSV1))
                assert await peer.receive() == Frame(TEXT, text)
            await peer.aclose()


async def test_new_message_inside_a_compressed_fragmented_message_is_1002() -> None:
    """RFC 6455 5.4 / 7.4.1: a new data frame while a fragmented message is unfinished is a
    protocol error, 1002 (what the server answers without compression, and what the
    websockets library answers with it). With a compressed message open, the extension
    feeds the new, uncompressed message's bytes to the old message's inflater (it decides
    "compressed" per message, not per opcode), so zlib fails first and the client gets
    1007 "error in extension" instead."""
    with trio.fail_after(10):
        async with serve() as server:
            peer = await server.connect(extensions=[PMD])
            assert peer.deflate is not None
            start = peer.deflate.compress(b"Hello, world")[:5]
            await peer.send(
                frame(TEXT, start, fin=False, rsv=RSV1),  # a compressed message begins
                frame(TEXT, b"a new message"),  # not a continuation: protocol error
            )
            received = await peer.receive()
            assert received.opcode == CLOSE, received
            assert received.close_code == 1002, received
            await peer.aclose()


async def test_compressed_message_under_the_largest_ws_max_size() -> None:
    """ws_max_size accepts any positive integer, and sys.maxsize is the natural "no limit".
    The inflater then calls decompress(data, room + 1) with room + 1 == 2**63, which raises
    OverflowError; it escapes the connection's task and, through the server's connections
    nursery, stops the whole server at the first compressed message any client sends (seen
    with `python -m trio_asgi examples.echo:app --ws-max-size 9223372036854775807`)."""
    with trio.fail_after(10):
        async with serve(ws_max_size=sys.maxsize) as server:
            peer = await server.connect(extensions=[PMD])
            assert peer.deflate is not None
            await peer.send_message(TEXT, b"hello")
            try:
                echo = await peer.receive()
            except EndOfStream:
                raise AssertionError(
                    "the server dropped the connection at a compressed message "
                    "(OverflowError in the inflater)"
                ) from None
            assert echo == Frame(TEXT, b"hello")
            await peer.aclose()
