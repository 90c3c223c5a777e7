"""Quart-Trio on trio_asgi, end to end over real sockets: routes, streamed bodies, WebSockets.

Quart-Trio needs the lifespan protocol (its startup opens the app's nursery), so these
tests also show that trio_asgi's lifespan support is enough for it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing
from framework_helpers import TIMEOUT, ASGIApp, Probe, in_thread
from quart import Response, make_response, request, websocket
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from trio_asgi.testing import LiveServer, serve_in_background


def make_app(probe: Probe) -> ASGIApp:
    app = QuartTrio("interop")

    @app.route("/items/<int:item_id>", methods=["GET", "PUT"])
    async def item(item_id: int) -> ResponseReturnValue:
        if request.method == "PUT":
            data = await request.get_json()
            return {"id": item_id, "stored": data}, 201, {"x-item": str(item_id)}
        return {"id": item_id, "q": request.args.get("q")}

    @app.get("/lines")
    async def lines() -> ResponseReturnValue:
        count = request.args.get("count", type=int)

        async def body() -> AsyncIterator[bytes]:
            for n in range(count or 0):
                yield f"{n}\n".encode()

        return await make_response(body(), {"content-type": "text/plain"})

    @app.get("/endless")
    async def endless() -> ResponseReturnValue:
        async def body() -> AsyncIterator[bytes]:
            n = 0
            try:
                while True:
                    yield f"{n}\n".encode()
                    n += 1
                    await trio.sleep(0.01)
            finally:
                probe.record("stream ended")

        response = Response(body(), content_type="text/plain")
        response.timeout = None
        return response

    @app.websocket("/ws")
    async def echo() -> None:
        try:
            while True:
                message = await websocket.receive()
                await websocket.send(message)
        finally:
            probe.record("handler ended")

    @app.websocket("/ws/close")
    async def close() -> None:
        await websocket.accept()
        await websocket.close(4004, "bye from quart")

    return probe.wrap(app)


@pytest.fixture
async def server(probe: Probe) -> AsyncIterator[LiveServer]:
    async with serve_in_background(make_app(probe)) as live:
        yield live


async def test_routes(server: LiveServer) -> None:
    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
            assert http.get("/items/7?q=tea").json() == {"id": 7, "q": "tea"}
            stored = http.put("/items/8", json={"name": "cup"})
            assert (stored.status_code, stored.headers["x-item"]) == (201, "8")
            assert stored.json() == {"id": 8, "stored": {"name": "cup"}}
            assert http.get("/items/not-a-number").status_code == 404
            assert http.delete("/items/1").status_code == 405

    await in_thread(client)


async def test_streamed_body(server: LiveServer) -> None:
    def client() -> list[str]:
        with httpx.stream("GET", server.url + "/lines?count=300", timeout=TIMEOUT) as response:
            return list(response.iter_lines())

    assert await in_thread(client) == [str(n) for n in range(300)]


async def test_streamed_body_stops_when_the_client_leaves(server: LiveServer, probe: Probe) -> None:
    def client() -> None:
        with httpx.stream("GET", server.url + "/endless", timeout=TIMEOUT) as response:
            assert next(response.iter_lines()) == "0"

    await in_thread(client)
    await probe.wait("stream ended")
    await probe.wait("returned /endless")


async def test_a_client_leaving_a_stream_is_not_logged_as_an_error(
    server: LiveServer, probe: Probe, server_errors: list[logging.LogRecord]
) -> None:
    def client() -> None:
        with httpx.stream("GET", server.url + "/endless", timeout=TIMEOUT) as response:
            next(response.iter_lines())

    await in_thread(client)
    await probe.wait("returned /endless")
    await trio.testing.wait_all_tasks_blocked()
    assert [record.getMessage() for record in server_errors] == []


async def test_websocket_echo_and_client_close(server: LiveServer, probe: Probe) -> None:
    def client() -> None:
        with connect(server.ws_url + "/ws", open_timeout=TIMEOUT) as ws:
            ws.send("text")
            assert ws.recv(timeout=TIMEOUT) == "text"
            ws.send(b"\x01\x02")
            assert ws.recv(timeout=TIMEOUT) == b"\x01\x02"

    await in_thread(client)
    # Quart cancels the handler once the server reports the disconnect.
    await probe.wait("handler ended")


async def test_websocket_close_from_the_app(server: LiveServer) -> None:
    def client() -> None:
        with connect(server.ws_url + "/ws/close", open_timeout=TIMEOUT) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
            assert (ws.close_code, ws.close_reason) == (4004, "bye from quart")

    await in_thread(client)
