"""The Quart app of the bridge workloads: the benchmark app's answers, written in Quart (the
asyncio one), so trio_asgi serves it through ``--app-loop asyncio`` and Uvicorn natively."""

from __future__ import annotations

from quart import Quart, websocket

app = Quart(__name__)


@app.get("/")
async def hello() -> str:
    return "Hello, world!"


@app.websocket("/ws")
async def echo() -> None:
    while True:
        await websocket.send(await websocket.receive())
