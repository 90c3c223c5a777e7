"""Memory stays bounded whatever the client sends: floods, decompression bombs, compression."""

from __future__ import annotations

import tracemalloc
import zlib
from typing import Any

import trio
from wsproto.extensions import PerMessageDeflate as ClientDeflate

from trio_asgi.testing import TestClient, build_frame

Scope = dict[str, Any]


def slow_consumer(log: list[Any], *, delay: float) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            await trio.sleep(delay)
            message = await receive()
            if message["type"] == "websocket.disconnect":
                log.append(message)
                return
            log.append(len(message.get("bytes") or message.get("text") or ""))

    return app


async def test_flood_against_a_slow_app_keeps_memory_bounded(autojump_clock: Any) -> None:
    """20 MiB pushed at an app that takes one message a second: the server holds at most
    ws_max_queue messages plus one read, the client blocks, and pings still get answered."""
    log: list[Any] = []
    message = b"x" * 100_000
    async with TestClient(
        slow_consumer(log, delay=1), ws_max_queue=4, buffer_size=64 * 1024, timeout=None
    ) as client:
        async with client.websocket("/") as ws:
            tracemalloc.start()
            try:
                async with trio.open_nursery() as nursery:

                    async def flood() -> None:
                        for _ in range(200):
                            await ws.send_bytes(message)

                    nursery.start_soon(flood)
                    await trio.sleep(30)
                    # Our ping sits behind the flood; it is answered once its turn comes.
                    await ws.ping(b"still there?")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 4 * 1024 * 1024  # vs 20 MB sent
            while len(log) < 200:
                await trio.sleep(1)
    assert log[:200] == [100_000] * 200


async def test_decompression_bomb_is_refused_with_1009_and_bounded_memory() -> None:
    log: list[Any] = []
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(b"\x00" * (64 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = build_frame(0x2, payload[:-4], rsv=4)  # a 64 MiB message in ~64 KB
    assert len(bomb) < 100_000
    async with TestClient(slow_consumer(log, delay=0), ws_max_size=1 << 20) as client:
        async with client.websocket("/", compression=True) as ws:
            assert ws.extensions, "permessage-deflate was not negotiated"
            tracemalloc.start()
            try:
                await ws.send_raw(bomb)
                closed = await ws.wait_closed()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert closed.code == 1009
    assert log == [
        {
            "type": "websocket.disconnect",
            "code": 1009,
            "reason": "message larger than 1048576 bytes",
        }
    ]
    assert peak < 8 * 1024 * 1024  # the 64 MiB never existed


async def test_compression_is_negotiated_and_works_both_ways() -> None:
    async def echo(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({**message, "type": "websocket.send"})

    text = "compress me " * 1000
    async with TestClient(echo) as client:
        async with client.websocket("/", compression=True) as ws:
            [extension] = ws.extensions
            assert extension.name == "permessage-deflate"
            for _ in range(3):
                await ws.send_text(text)
                assert await ws.receive_text() == text
        async with client.websocket(
            "/",
            compression=ClientDeflate(client_no_context_takeover=True, server_max_window_bits=9),
        ) as ws:
            [extension] = ws.extensions
            assert extension.client_no_context_takeover
            assert extension.server_max_window_bits == 9
            await ws.send_bytes(b"\x01" * 50_000)
            assert await ws.receive_bytes() == b"\x01" * 50_000


async def test_compression_can_be_switched_off() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})

    async with TestClient(app, ws_per_message_deflate=False) as client:
        async with client.websocket("/", compression=True) as ws:
            assert ws.extensions == []
