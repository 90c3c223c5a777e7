"""A WebSocket whose peer stopped cooperating is dropped, over real TCP and TLS sockets.

The frame reader runs in no cancel scope of its own (one less per idle connection): when the
peer never answers our close frame, or a write to it fails, the session closes the stream
under the reader. How that wakes the reader differs per stream (a plain socket is closed at
once, TLS says goodbye first), so these run the real server on loopback with both;
tests/conformance cover the same over in-memory streams.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import trio
import trio.testing

from tests.conformance.wire import TEXT, Close, Peer, frame, open_peer
from tests.conftest import TLSFiles
from trio_asgi import ClientDisconnected, Config, serve
from trio_asgi.asgi.websocket import CLOSE_HANDSHAKE_TIMEOUT

BIG = b"x" * (1024 * 1024)


class App:
    """Accepts; a text "close" closes with 1000, "flood" sends 1 MiB messages until the
    client stops taking them. Records how each session ended."""

    def __init__(self) -> None:
        self.disconnects: list[int] = []
        self.send_failed = trio.Event()
        self.ended = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 1000})
        elif message.get("text") == "flood":
            try:
                while True:
                    await send({"type": "websocket.send", "bytes": BIG})
            except ClientDisconnected:
                self.send_failed.set()
        message = await receive()
        assert message["type"] == "websocket.disconnect"
        self.disconnects.append(message["code"])
        self.ended.set()


@pytest.fixture(params=["tcp", "tls"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Client:
    def __init__(self, nursery: trio.Nursery, transport: str, tls: TLSFiles) -> None:
        self.nursery = nursery
        self.transport = transport
        self.tls = tls

    async def open_ws(self, app: App, **config: Any) -> Peer:
        """The server, on loopback with the transport under test, and a WebSocket to it."""
        config.setdefault("lifespan", "off")
        config.setdefault("ws_ping_interval", None)
        if self.transport == "tls":
            config.update(self.tls.config)
        [(host, port)] = await self.nursery.start(
            serve, app, Config(host="127.0.0.1", port=0, **config)
        )
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        if self.transport == "tls":
            context = self.tls.client_context()
            stream = trio.SSLStream(stream, context, server_hostname="localhost")
        return await open_peer(stream)


async def test_unanswered_close_drops_the_connection_after_the_timeout(
    autojump_clock: trio.testing.MockClock, transport: str, tls: TLSFiles
) -> None:
    app = App()
    async with trio.open_nursery() as nursery:
        peer = await Client(nursery, transport, tls).open_ws(app)
        await peer.send(frame(TEXT, b"close"))
        assert await peer.receive() == Close(1000)
        start = trio.current_time()
        await peer.expect_eof(timeout=2 * CLOSE_HANDSHAKE_TIMEOUT)  # we never answer
        assert trio.current_time() - start == pytest.approx(CLOSE_HANDSHAKE_TIMEOUT)
        with trio.fail_after(1):
            await app.ended.wait()
        assert app.disconnects == [1000]
        nursery.cancel_scope.cancel()


async def test_failed_write_drops_the_connection(
    autojump_clock: trio.testing.MockClock, transport: str, tls: TLSFiles
) -> None:
    app = App()
    async with trio.open_nursery() as nursery:
        peer = await Client(nursery, transport, tls).open_ws(app, ws_send_timeout=3.0)
        await peer.send(frame(TEXT, b"flood"))  # and then read nothing
        with trio.fail_after(60):
            await app.send_failed.wait()
            await app.ended.wait()
        assert app.disconnects == [1006]
        # The reader was waiting for our next frame: it must have let go of the socket.
        # (A TLS stream whose write was cut can only end without close_notify.)
        with trio.fail_after(1), contextlib.suppress(trio.BrokenResourceError):
            while await peer.stream.receive_some(1024 * 1024):
                pass
        nursery.cancel_scope.cancel()
