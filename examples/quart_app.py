"""A Quart app (asyncio Quart, not Quart-Trio): trio_asgi runs it in an asyncio loop.

    python -m trio_asgi examples.quart_app:app

``--app-loop auto`` (the default) recognises a Quart app and says so at startup.
"""

from __future__ import annotations

from quart import Quart, request, websocket

app = Quart(__name__)
app.config["state"] = "not started"


@app.before_serving
async def startup() -> None:
    app.config["state"] = "serving"


@app.after_serving
async def shutdown() -> None:
    app.config["state"] = "stopped"


@app.get("/")
async def hello() -> str:
    return "Hello from Quart"


@app.get("/state")
async def state() -> dict[str, str]:
    return {"state": app.config["state"]}


@app.post("/echo")
async def echo() -> bytes:
    return await request.get_data()


@app.websocket("/ws")
async def ws_echo() -> None:
    while True:
        message = await websocket.receive()
        await websocket.send(message)
