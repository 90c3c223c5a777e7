"""The one ASGI app every server in the benchmark runs, so only the servers differ.

Plain ASGI 3, no framework and no per-request work beyond what the protocol needs:
- ``GET`` (any path): ``Hello, world!``;
- ``POST /echo``: the request body back; any other ``POST``: the body is read and dropped,
  the answer is its length (the upload workload measures the server's receive path only);
- WebSocket (any path): every text or binary message echoed as it came;
- lifespan: acknowledged, so no server spends time on its "lifespan unsupported" path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HELLO = b"Hello, world!"
# Built once: the benchmark measures servers, not header list construction in the app.
HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(HELLO)).encode()),
    ],
}
HELLO_BODY = {"type": "http.response.body", "body": HELLO}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(receive, send)
    elif kind == "lifespan":
        await lifespan(receive, send)


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        await send(HELLO_START)
        await send(HELLO_BODY)
        return
    echo = scope["path"] == "/echo"
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        size += len(body)
        if echo:
            chunks.append(body)
        if not message.get("more_body", False):
            break
    payload = b"".join(chunks) if echo else str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream" if echo else b"text/plain"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def websocket(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        elif kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.disconnect":
            return


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
