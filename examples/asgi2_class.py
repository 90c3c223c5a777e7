"""A legacy ASGI 2 ("double callable") application: one instance per connection.

ASGI 2 apps are called as ``App(scope)``, which returns an instance that is then awaited
as ``instance(receive, send)``. A class whose ``__init__`` takes the scope is the classic
form. trio_asgi recognises it (``--interface auto``, the default, decides the way asgiref
does) and adapts it to ASGI 3 once, at load time; ``--interface asgi2`` forces it.

Run it:  python -m trio_asgi examples.asgi2_class:App
Try it:  curl http://127.0.0.1:8000/anything   and   python -m websockets ws://127.0.0.1:8000/
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class App:
    """HTTP: describes the request it got. WebSocket: echoes, counting the messages."""

    def __init__(self, scope: dict[str, Any]) -> None:
        # The instance lives exactly as long as its connection, so per-connection state
        # can simply be attributes.
        self.scope = scope
        self.messages = 0

    async def __call__(self, receive: Receive, send: Send) -> None:
        kind = self.scope["type"]
        if kind == "http":
            await self.http(receive, send)
        elif kind == "websocket":
            await self.websocket(receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        payload = json.dumps(
            {
                "interface": "asgi2",
                "method": self.scope["method"],
                "path": self.scope["path"],
                "query": self.scope["query_string"].decode("latin-1"),
                "body_bytes": len(body),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def websocket(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                self.messages += 1
                text = message.get("text")
                if text is None:
                    text = message["bytes"].decode("utf-8", "replace")
                await send({"type": "websocket.send", "text": f"{self.messages}: {text}"})
            elif message["type"] == "websocket.disconnect":
                return

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


# The usual name, so that `examples.asgi2_class:app` works too.
app = App
