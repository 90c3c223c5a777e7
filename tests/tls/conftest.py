"""A server whose TLS connections are in memory (certificates: ``tls`` in tests/conftest.py).

``tls_server`` runs a real ``Server`` with its real TLS setup, but its listener is an
in-memory one wrapped in ``trio.SSLListener``: handshakes, the tls extension and the
handshake timeout run exactly as on a socket, in virtual time under ``autojump_clock``.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from trio_asgi import Config, Server
from trio_asgi.listeners import secure
from trio_asgi.testing import MemoryListener

from ..conftest import TLSFiles as TLSFiles  # (re-exported for the TLS tests)


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers HTTP with a repr of the scope's scheme and tls extension; WebSocket accepts
    and sends the same as text."""
    if scope["type"] == "lifespan":
        return
    described = repr((scope["scheme"], scope["extensions"].get("tls"))).encode()
    if scope["type"] == "http":
        length = str(len(described)).encode()
        headers = [(b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": described})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": described.decode()})
        await send({"type": "websocket.close"})


class InMemoryTLS:
    """Clients of an in-memory TLS server."""

    def __init__(self, listener: MemoryListener, server: Server) -> None:
        self.listener = listener
        self.server = server
        self._port = 40000

    async def connect(self, context: ssl.SSLContext | None = None) -> trio.SSLStream[Any]:
        """A client TLS stream; its handshake happens on first use (or ``do_handshake``)."""
        self._port += 1
        raw = await self.listener.connect(("127.0.0.1", self._port))
        return trio.SSLStream(raw, context, server_hostname="localhost", https_compatible=True)

    async def connect_raw(self) -> Any:
        self._port += 1
        return await self.listener.connect(("127.0.0.1", self._port))

    async def get(self, context: ssl.SSLContext, path: str = "/") -> tuple[bytes, bytes]:
        """One ``Connection: close`` GET: (status line, body)."""
        stream = await self.connect(context)
        return await exchange(stream, path)


async def exchange(stream: trio.abc.Stream, path: str = "/") -> tuple[bytes, bytes]:
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    await stream.send_all(request.encode())
    response = await read_until_eof(stream)
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


async def read_until_eof(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


@asynccontextmanager
async def tls_server(
    app: Callable[..., Any] = scope_app, **config: Any
) -> AsyncIterator[InMemoryTLS]:
    """A server with the TLS setup of ``config``, reached through memory streams."""
    config.setdefault("lifespan", "off")
    server = Server(app, Config(**config))
    assert server.tls is not None
    listener = MemoryListener(("127.0.0.1", 443))
    async with trio.open_nursery() as nursery:
        listeners = [secure(listener, server.tls.context)]
        await nursery.start(functools.partial(server.serve, listeners=listeners))
        yield InMemoryTLS(listener, server)
        server.request_shutdown()
