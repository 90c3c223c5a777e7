"""Starlette on trio_asgi, end to end over real sockets (Starlette runs on trio via anyio)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
import trio
import trio.testing
from framework_helpers import TIMEOUT, ASGIApp, Probe, in_thread
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from trio_asgi.testing import LiveServer, serve_in_background


def make_app(probe: Probe) -> ASGIApp:
    async def echo(request: Request) -> Response:
        return JSONResponse(
            {
                "json": await request.json(),
                "query": dict(request.query_params),
                "header": request.headers.get("x-test"),
            }
        )

    async def upload(request: Request) -> Response:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return JSONResponse({"size": size})

    async def poll_disconnect(request: Request) -> Response:
        """Poll is_disconnected() up to ``polls`` times, 10 ms apart, the usual idiom."""
        noticed = False
        for _ in range(int(request.query_params["polls"])):
            if await request.is_disconnected():
                noticed = True
                break
            probe.record("polled while connected")
            await anyio.sleep(0.01)
        probe.record("noticed the disconnect", noticed)
        return PlainTextResponse(f"noticed: {noticed}")

    async def stream(request: Request) -> Response:
        count = int(request.query_params["count"])

        async def lines() -> AsyncIterator[str]:
            for n in range(count):
                yield f"line {n}\n"

        return StreamingResponse(lines(), media_type="text/plain")

    async def endless(request: Request) -> Response:
        async def lines() -> AsyncIterator[str]:
            n = 0
            while True:
                yield f"line {n}\n"
                n += 1
                await anyio.sleep(0.01)

        return StreamingResponse(lines(), media_type="text/plain")

    async def ws_echo(websocket: WebSocket) -> None:
        offered = websocket.scope["subprotocols"]
        await websocket.accept(subprotocol="v1" if "v1" in offered else None)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message["code"], message.get("reason"))
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect as exc:
            probe.record("client closed", (exc.code, exc.reason))

    async def ws_close(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(code=4003, reason="go away")

    async def ws_deny(websocket: WebSocket) -> None:
        # The websocket.http.response extension: a real HTTP answer instead of a handshake.
        await websocket.send_denial_response(PlainTextResponse("members only", status_code=401))

    async def with_background(request: Request) -> Response:
        async def work() -> None:
            await probe.wait("released")
            probe.record("background done")

        port = str(request.client.port if request.client else None)
        return PlainTextResponse(port, background=BackgroundTask(work))

    async def client_port(request: Request) -> Response:
        return PlainTextResponse(str(request.client.port if request.client else None))

    app = Starlette(
        routes=[
            Route("/background", with_background),
            Route("/port", client_port),
            Route("/echo", echo, methods=["POST"]),
            Route("/upload", upload, methods=["POST"]),
            Route("/poll", poll_disconnect),
            Route("/stream", stream),
            Route("/endless", endless),
            WebSocketRoute("/ws", ws_echo),
            WebSocketRoute("/ws/close", ws_close),
            WebSocketRoute("/ws/deny", ws_deny),
        ]
    )
    return probe.wrap(app)


@pytest.fixture
async def server(probe: Probe) -> AsyncIterator[LiveServer]:
    async with serve_in_background(make_app(probe)) as live:
        yield live


async def test_http_requests(server: LiveServer) -> None:
    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
            echoed = http.post("/echo?a=1&b=two", json={"x": [1, 2]}, headers={"x-test": "yes"})
            assert echoed.json() == {
                "json": {"x": [1, 2]},
                "query": {"a": "1", "b": "two"},
                "header": "yes",
            }
            assert http.get("/nowhere").status_code == 404
            assert http.get("/echo").status_code == 405

            # A chunked upload, streamed to request.stream() piece by piece.
            def pieces():
                for _ in range(64):
                    yield b"x" * 10_000

            assert http.post("/upload", content=pieces()).json() == {"size": 640_000}

    await in_thread(client)


async def test_background_task_does_not_hold_back_the_next_request(
    server: LiveServer, probe: Probe
) -> None:
    """httpx sends its next request on the same keep-alive connection once it has the
    response; it is answered while the background task still runs (as under Uvicorn)."""

    def client() -> tuple[str, str]:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
            first = http.get("/background").text
            second = http.get("/port").text
            return first, second

    first, second = await in_thread(client)
    assert first == second  # one connection
    assert "background done" not in probe.values
    probe.record("released")
    assert await probe.wait("background done")


async def test_streaming_response(server: LiveServer) -> None:
    def client() -> None:
        with (
            httpx.Client(timeout=TIMEOUT) as http,
            http.stream("GET", server.url + "/stream?count=200") as response,
        ):
            assert response.headers["transfer-encoding"] == "chunked"
            lines = list(response.iter_lines())
        assert lines == [f"line {n}" for n in range(200)]

    await in_thread(client)


async def test_streaming_response_stops_when_the_client_leaves(
    server: LiveServer, probe: Probe
) -> None:
    def client() -> None:
        with (
            httpx.Client(timeout=TIMEOUT) as http,
            http.stream("GET", server.url + "/endless") as response,
        ):
            lines = response.iter_lines()
            assert [next(lines) for _ in range(3)] == ["line 0", "line 1", "line 2"]
        # leaving the block closes the connection mid-stream

    await in_thread(client)
    # The server's send() raised (ASGI spec 2.4), which Starlette turns into ClientDisconnect.
    assert isinstance(await probe.wait("raised /endless"), ClientDisconnect)


async def test_a_client_leaving_a_stream_is_not_logged_as_an_error(
    server: LiveServer, probe: Probe, server_errors: list[logging.LogRecord]
) -> None:
    def client() -> None:
        with (
            httpx.Client(timeout=TIMEOUT) as http,
            http.stream("GET", server.url + "/endless") as r,
        ):
            next(r.iter_lines())

    await in_thread(client)
    await probe.wait("raised /endless")
    await trio.testing.wait_all_tasks_blocked()
    assert [record.getMessage() for record in server_errors] == []


async def test_is_disconnected_while_connected(server: LiveServer) -> None:
    def client() -> str:
        return httpx.get(server.url + "/poll?polls=3", timeout=TIMEOUT).text

    assert await in_thread(client) == "noticed: False"


async def test_is_disconnected_notices_a_client_that_left(server: LiveServer, probe: Probe) -> None:
    stream = await trio.open_tcp_stream(server.host, server.port)
    await stream.send_all(b"GET /poll?polls=100 HTTP/1.1\r\nhost: test\r\n\r\n")
    await probe.wait("polled while connected")
    await stream.aclose()
    assert await probe.wait("noticed the disconnect") is True


async def test_websocket_disconnect_carries_the_clients_close_code(
    server: LiveServer, probe: Probe
) -> None:
    def client() -> str | None:
        offered = [Subprotocol("v2"), Subprotocol("v1")]
        with connect(server.ws_url + "/ws", subprotocols=offered, open_timeout=TIMEOUT) as ws:
            ws.send("text ✓")
            assert ws.recv(timeout=TIMEOUT) == "text ✓"
            ws.send(b"\x00bytes")
            assert ws.recv(timeout=TIMEOUT) == b"\x00bytes"
            ws.close(code=4001, reason="bye now")
            return ws.subprotocol

    assert await in_thread(client) == "v1"
    assert await probe.wait("client closed") == (4001, "bye now")


async def test_websocket_close_from_the_app(server: LiveServer) -> None:
    def client() -> None:
        with connect(server.ws_url + "/ws/close", open_timeout=TIMEOUT) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
            assert (ws.close_code, ws.close_reason) == (4003, "go away")

    await in_thread(client)


async def test_websocket_denial_response(server: LiveServer) -> None:
    def client() -> None:
        with pytest.raises(InvalidStatus) as denied:
            connect(server.ws_url + "/ws/deny", open_timeout=TIMEOUT)
        assert denied.value.response.status_code == 401
        assert denied.value.response.body == b"members only"

    await in_thread(client)
