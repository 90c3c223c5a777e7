"""A Sanic app: trio_asgi runs it in an asyncio loop.

python -m trio_asgi examples.sanic_app:app
"""

from __future__ import annotations

from sanic import Request, Sanic, Websocket
from sanic.response import HTTPResponse, text

app = Sanic("trio_asgi_example")


@app.get("/")
async def hello(request: Request) -> HTTPResponse:
    return text("Hello from Sanic")


@app.post("/echo")
async def echo(request: Request) -> HTTPResponse:
    return text(request.body.decode())


@app.websocket("/ws")
async def ws_echo(request: Request, ws: Websocket) -> None:
    # Under ASGI Sanic's websocket is not async-iterable: recv() in a loop.
    while True:
        message = await ws.recv()
        if message is None:
            return
        await ws.send(message)
