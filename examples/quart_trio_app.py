"""Quart-Trio on trio_asgi: routes, a streamed response and a WebSocket.

Quart-Trio is Quart (the async Flask) with trio as its event loop. It needs the lifespan
protocol: its startup opens the nursery that the app's background work runs in, which
trio_asgi provides. Needs ``pip install quart-trio``.

Run it:  python -m trio_asgi examples.quart_trio_app:app
Try it:  curl http://127.0.0.1:8000/hello/you
         curl -d '{"a": 1}' -H 'content-type: application/json' http://127.0.0.1:8000/echo
         curl -N 'http://127.0.0.1:8000/events?count=3'
         python -m websockets ws://127.0.0.1:8000/ws
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import sniffio
import trio
from quart import Response, request, websocket
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio

app = QuartTrio(__name__)


@app.get("/")
async def index() -> dict[str, Any]:
    return {"message": "Hello from Quart-Trio", "async_library": sniffio.current_async_library()}


@app.get("/hello/<name>")
async def hello(name: str) -> dict[str, Any]:
    return {"hello": name}


@app.post("/echo")
async def echo() -> ResponseReturnValue:
    data = await request.get_json(silent=True)
    if data is None:
        return {"error": "send a JSON body"}, 400
    return {"received": data}


@app.get("/events")
async def events() -> ResponseReturnValue:
    """Server-sent events from an async generator; ``count=0`` streams until the client
    leaves."""
    count = request.args.get("count", default=0, type=int)
    interval = request.args.get("interval", default=1.0, type=float)

    async def ticks() -> AsyncIterator[bytes]:
        sent = 0
        while not count or sent < count:
            yield f"id: {sent}\nevent: tick\ndata: {json.dumps({'n': sent})}\n\n".encode()
            sent += 1
            await trio.sleep(interval)

    response = Response(
        ticks(), content_type="text/event-stream", headers={"cache-control": "no-cache"}
    )
    response.timeout = None  # Quart would otherwise end a response after 60 s
    return response


@app.websocket("/ws")
async def ws() -> None:
    """Echo with a prefix. Quart accepts on the first receive; when the client leaves,
    Quart cancels this handler."""
    while True:
        message = await websocket.receive()
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        await websocket.send(f"echo: {message}")
