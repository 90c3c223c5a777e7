"""FastAPI on trio_asgi, end to end over real sockets: validation, dependencies with
``yield``, StreamingResponse, server-sent events, WebSocket close codes.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
run time, and the dependency they name is local to ``make_app``.
"""

import json
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import EventSourceResponse, StreamingResponse
from fastapi.sse import ServerSentEvent
from framework_helpers import TIMEOUT, ASGIApp, Probe, in_thread
from pydantic import BaseModel
from websockets.sync.client import connect

from trio_asgi.testing import LiveServer, serve_in_background


class Order(BaseModel):
    item: str
    quantity: int


def make_app(probe: Probe) -> ASGIApp:
    app = FastAPI()

    async def session() -> AsyncIterator[str]:
        # A dependency with cleanup: it runs after the response was sent.
        yield "session-1"
        probe.record("session closed")

    @app.post("/orders")
    async def create_order(order: Order, db: Annotated[str, Depends(session)]) -> dict[str, object]:
        return {"order": order.model_dump(), "session": db}

    @app.get("/connected")
    async def connected(request: Request) -> dict[str, bool]:
        return {"disconnected": await request.is_disconnected()}

    @app.get("/numbers")
    async def numbers(count: int) -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            for n in range(count):
                yield f"{n}\n"

        return StreamingResponse(lines(), media_type="text/plain")

    @app.get("/sse", response_class=EventSourceResponse)
    async def sse(count: int = 0) -> AsyncIterator[ServerSentEvent]:
        n = 0
        try:
            while not count or n < count:
                yield ServerSentEvent(data={"n": n}, event="tick", id=str(n))
                n += 1
                await anyio.sleep(0.01)
        finally:
            probe.record("sse generator closed", n)

    @app.websocket("/ws/{name}")
    async def ws(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"to": name, "data": data})
        except WebSocketDisconnect as exc:
            probe.record("client closed", (exc.code, exc.reason))

    return probe.wrap(app)


@pytest.fixture
async def server(probe: Probe) -> AsyncIterator[LiveServer]:
    async with serve_in_background(make_app(probe)) as live:
        yield live


async def test_validation_and_dependency_cleanup(server: LiveServer, probe: Probe) -> None:
    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
            ok = http.post("/orders", json={"item": "tea", "quantity": 2})
            assert ok.json() == {"order": {"item": "tea", "quantity": 2}, "session": "session-1"}
            invalid = http.post("/orders", json={"item": "tea", "quantity": "many"})
            assert invalid.status_code == 422
            assert invalid.json()["detail"][0]["loc"] == ["body", "quantity"]
            assert http.get("/connected").json() == {"disconnected": False}

    await in_thread(client)
    await probe.wait("session closed")


async def test_streaming_response(server: LiveServer) -> None:
    def client() -> list[str]:
        with httpx.stream("GET", server.url + "/numbers?count=500", timeout=TIMEOUT) as response:
            return list(response.iter_lines())

    assert await in_thread(client) == [str(n) for n in range(500)]


async def test_server_sent_events(server: LiveServer, probe: Probe) -> None:
    def client() -> list[dict[str, str]]:
        with httpx.stream("GET", server.url + "/sse?count=3", timeout=TIMEOUT) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            blocks = response.read().decode().strip().split("\n\n")
        return [dict(line.split(": ", 1) for line in block.splitlines()) for block in blocks]

    events = await in_thread(client)
    assert [(e["event"], e["id"], json.loads(e["data"])) for e in events] == [
        ("tick", str(n), {"n": n}) for n in range(3)
    ]
    assert await probe.wait("sse generator closed") == 3


async def test_server_sent_events_stop_when_the_client_leaves(
    server: LiveServer, probe: Probe
) -> None:
    def client() -> None:
        with httpx.stream("GET", server.url + "/sse", timeout=TIMEOUT) as response:
            lines: Iterator[str] = response.iter_lines()
            assert next(lines) == "event: tick"

    await in_thread(client)
    # The endless generator is cancelled once the server's send() fails.
    assert await probe.wait("sse generator closed") >= 1


async def test_websocket_disconnect_carries_the_clients_close_code(
    server: LiveServer, probe: Probe
) -> None:
    def client() -> None:
        with connect(server.ws_url + "/ws/ada", open_timeout=TIMEOUT) as ws:
            ws.send(json.dumps([1, "two"]))
            assert json.loads(ws.recv(timeout=TIMEOUT)) == {"to": "ada", "data": [1, "two"]}
            ws.close(code=4002, reason="done here")

    await in_thread(client)
    assert await probe.wait("client closed") == (4002, "done here")
