"""Starlette on trio_asgi: HTTP routes, a WebSocket echo and a server-sent event stream.

Starlette is written against anyio, and anyio finds out at run time that it is running on
trio, so there is nothing to configure: its task groups become trio nurseries, its sleeps
trio sleeps. Needs ``pip install starlette``.

Run it:  python -m trio_asgi examples.starlette_app:app
Try it:  curl http://127.0.0.1:8000/hello/you
         curl -d '{"a": 1}' http://127.0.0.1:8000/echo
         curl -N 'http://127.0.0.1:8000/events?count=5'
         python -m websockets ws://127.0.0.1:8000/ws
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import sniffio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    # What is yielded here is copied into every request's scope["state"] (request.state).
    yield {"started_at": time.time()}


async def homepage(request: Request) -> Response:
    return PlainTextResponse(f"Hello from Starlette on {sniffio.current_async_library()}!\n")


async def hello(request: Request) -> Response:
    return JSONResponse(
        {
            "hello": request.path_params["name"],
            "async_library": sniffio.current_async_library(),
            "uptime": round(time.time() - request.state.started_at, 3),
        }
    )


async def echo(request: Request) -> Response:
    try:
        data = await request.json()
    except ValueError:
        return JSONResponse({"error": "send a JSON body"}, status_code=400)
    return JSONResponse({"received": data})


async def events(request: Request) -> Response:
    """Server-sent events: a ``tick`` every ``interval`` seconds, ``count`` of them (or
    forever). When the client goes away, the server's next ``send()`` raises and Starlette
    stops iterating, which closes this generator."""
    count = int(request.query_params.get("count", "0")) or None
    interval = float(request.query_params.get("interval", "1"))

    async def ticks() -> AsyncIterator[str]:
        sent = 0
        while count is None or sent < count:
            yield f"id: {sent}\nevent: tick\ndata: {json.dumps({'n': sent})}\n\n"
            sent += 1
            await anyio.sleep(interval)

    return StreamingResponse(
        ticks(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


async def websocket_echo(websocket: WebSocket) -> None:
    """Echo text messages until the client leaves; its close code reaches us intact."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass  # exc.code / exc.reason: the client's close code and reason


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/hello/{name}", hello),
        Route("/echo", echo, methods=["POST"]),
        Route("/events", events),
        WebSocketRoute("/ws", websocket_echo),
    ],
    lifespan=lifespan,
)
