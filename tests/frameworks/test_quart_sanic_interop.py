"""Quart (the asyncio one) and Sanic on trio_asgi through the asyncio bridge, end to end over
real sockets: examples/quart_app.py and examples/sanic_app.py, with httpx and websockets."""

from __future__ import annotations

import httpx
import pytest
from framework_helpers import TIMEOUT, in_thread
from websockets.sync.client import connect

from trio_asgi.asyncio_apps import detect_app_loop
from trio_asgi.testing import serve_in_background

pytest.importorskip("trio_asyncio")
quart_example = pytest.importorskip("examples.quart_app")
sanic_example = pytest.importorskip("examples.sanic_app")


def test_quart_and_sanic_are_recognised_as_asyncio_apps() -> None:
    assert detect_app_loop(quart_example.app) == ("asyncio", "a Quart app")
    assert detect_app_loop(sanic_example.app) == ("asyncio", "a Sanic app")


async def test_quart_lifespan_routes_and_websocket_echo() -> None:
    app = quart_example.app
    async with serve_in_background(app) as server:

        def client() -> None:
            with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
                assert http.get("/").text == "Hello from Quart"
                # before_serving ran, through the bridge, before the first request
                assert http.get("/state").json() == {"state": "serving"}
                assert http.post("/echo", content=b"\x00quart").content == b"\x00quart"
            with connect(server.ws_url + "/ws", open_timeout=TIMEOUT) as ws:
                for message in ("one", b"two", "three" * 1000):
                    ws.send(message)
                    assert ws.recv(timeout=TIMEOUT) == message

        await in_thread(client)
    assert app.config["state"] == "stopped"  # after_serving: lifespan shutdown


async def test_sanic_route_and_websocket_echo() -> None:
    async with serve_in_background(sanic_example.app) as server:

        def client() -> None:
            with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
                assert http.get("/").text == "Hello from Sanic"
                assert http.post("/echo", content=b"sanic").text == "sanic"
            with connect(server.ws_url + "/ws", open_timeout=TIMEOUT) as ws:
                ws.send("hi")
                assert ws.recv(timeout=TIMEOUT) == "hi"

        await in_thread(client)
