"""How to test an ASGI app with trio_asgi: the echo example, tested the way a user would.

Run with ``pytest examples/test_echo.py`` (pytest-trio's ``trio_mode`` is on in this repo's
pyproject; elsewhere mark the tests ``@pytest.mark.trio``). The ``asgi_client`` and
``asgi_server`` fixtures come from trio_asgi's pytest plugin, installed with the package.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from examples.echo import app as echo_app
from trio_asgi.testing import Closed, TestClient


@pytest.fixture
def app() -> Any:
    return echo_app


async def test_http(asgi_client: TestClient) -> None:
    response = await asgi_client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello, world!\n"
    echoed = await asgi_client.post("/", content=b"ping")
    assert echoed.content == b"ping"


async def test_websocket_echo(asgi_client: TestClient) -> None:
    async with asgi_client.websocket("/ws") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes() == b"\x00\x01"
        assert await ws.close(1000, "bye") == Closed(1000, "bye")


async def test_a_slow_client_and_a_bytewise_one(asgi_client: TestClient) -> None:
    async with asgi_client.websocket("/ws") as ws:
        ws.set_write_chunk(1)  # the server gets our frames one byte at a time
        await ws.send_text("x" * 1000)
        assert await ws.receive_text() == "x" * 1000


async def test_keepalive_in_virtual_time(autojump_clock: Any) -> None:
    """Minutes of keepalive in milliseconds: MockClock jumps over the idle time."""
    async with TestClient(echo_app, ws_ping_interval=20) as client:
        async with client.websocket("/ws") as ws:
            await trio.sleep(120)
            assert ws.pings_received == 5
            await ws.send_text("still here")
            assert await ws.receive_text() == "still here"


async def test_over_a_real_socket(asgi_server: Any) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(asgi_server.url)
    assert response.text == "Hello, world!\n"
