"""The ASGI 2, Starlette, FastAPI and Quart-Trio examples on a live trio_asgi server.

Each app runs in-process on a real loopback port (``serve_in_background``); the clients
are httpx and the ``websockets`` library, whose blocking APIs run in a worker thread so
that the server keeps running on trio meanwhile. A last test starts every example with the
README's own command, ``python -m trio_asgi examples.<name>:app``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
import trio
from example_servers import RunServer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from trio_asgi.testing import LiveServer, serve_in_background

TIMEOUT = 10.0
T = TypeVar("T")


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking client in a worker thread (its own timeouts bound it)."""
    return await trio.to_thread.run_sync(functools.partial(function, *args))


def read_events(http: httpx.Client, url: str) -> list[dict[str, str]]:
    """A whole (finite) server-sent event stream, as field dicts."""
    with http.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = []
    for block in filter(None, text.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append(fields)
    return events


# -- ASGI 2 ---------------------------------------------------------------------------------


def check_asgi2(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        response = http.post("/some/path?x=1", content=b"12345")
        assert response.json() == {
            "interface": "asgi2",
            "method": "POST",
            "path": "/some/path",
            "query": "x=1",
            "body_bytes": 5,
        }
    with connect(server.ws_url + "/", open_timeout=TIMEOUT) as ws:
        ws.send("a")
        ws.send(b"b")
        assert [ws.recv(timeout=TIMEOUT), ws.recv(timeout=TIMEOUT)] == ["1: a", "2: b"]
    # A new connection is a new instance: the count starts again.
    with connect(server.ws_url + "/", open_timeout=TIMEOUT) as ws:
        ws.send("c")
        assert ws.recv(timeout=TIMEOUT) == "1: c"


async def test_asgi2_class_app_is_detected_and_served() -> None:
    from examples.asgi2_class import App

    async with serve_in_background(App) as server:
        await in_thread(check_asgi2, server)


# -- Starlette ------------------------------------------------------------------------------


def check_starlette(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        assert http.get("/").text == "Hello from Starlette on trio!\n"
        hello = http.get("/hello/you").json()
        assert (hello["hello"], hello["async_library"]) == ("you", "trio")
        assert hello["uptime"] >= 0  # lifespan state reached the request
        assert http.post("/echo", json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}
        assert http.post("/echo", content=b"{nope").status_code == 400
        events = read_events(http, "/events?count=3&interval=0.01")
        assert [(e["id"], e["event"], e["data"]) for e in events] == [
            (str(n), "tick", json.dumps({"n": n})) for n in range(3)
        ]
    with connect(server.ws_url + "/ws", open_timeout=TIMEOUT) as ws:
        for text in ("one", "twö"):
            ws.send(text)
            assert ws.recv(timeout=TIMEOUT) == text


async def test_starlette_example() -> None:
    from examples.starlette_app import app

    async with serve_in_background(app) as server:
        await in_thread(check_starlette, server)


# -- FastAPI --------------------------------------------------------------------------------


def check_fastapi(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        root = http.get("/").json()
        assert root["async_library"] == "trio"
        created = http.post("/items", json={"name": "tea", "price": 2.5})
        assert created.status_code == 201
        assert created.json() == {"id": 1, "name": "tea", "price": 2.5}
        assert http.get("/items/1").json()["name"] == "tea"
        assert http.get("/items/2").status_code == 404
        assert http.post("/items", json={"name": "", "price": -1}).status_code == 422
        assert http.get("/openapi.json").json()["info"]["title"] == "trio_asgi FastAPI example"
        events = read_events(http, "/events?count=3&interval=0.01")
        assert [(e["event"], e["id"], json.loads(e["data"])) for e in events] == [
            ("tick", str(n), {"n": n}) for n in range(3)
        ]
    with connect(server.ws_url + "/ws/lobby?name=ada", open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"x": 1}))
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {
            "room": "lobby",
            "from": "ada",
            "echo": {"x": 1},
        }


async def test_fastapi_example() -> None:
    from examples.fastapi_app import app

    async with serve_in_background(app) as server:
        await in_thread(check_fastapi, server)


# -- Quart-Trio -----------------------------------------------------------------------------


def check_quart_trio(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        assert http.get("/").json() == {
            "message": "Hello from Quart-Trio",
            "async_library": "trio",
        }
        assert http.get("/hello/you").json() == {"hello": "you"}
        assert http.post("/echo", json={"a": 1}).json() == {"received": {"a": 1}}
        assert http.post("/echo", content=b"x").status_code == 400
        events = read_events(http, "/events?count=2&interval=0.01")
        assert [e["data"] for e in events] == ['{"n": 0}', '{"n": 1}']
    with connect(server.ws_url + "/ws", open_timeout=TIMEOUT) as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "echo: hi"
        ws.close()
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=TIMEOUT)


async def test_quart_trio_example() -> None:
    from examples.quart_trio_app import app

    async with serve_in_background(app) as server:
        await in_thread(check_quart_trio, server)


# -- the README's commands ------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("examples.asgi2_class:App", '"interface": "asgi2"'),
        ("examples.starlette_app:app", "Starlette on trio"),
        ("examples.fastapi_app:app", '"async_library":"trio"'),
        ("examples.quart_trio_app:app", '"async_library":"trio"'),
    ],
)
def test_examples_run_from_the_command_line(
    run_server: RunServer, target: str, expected: str
) -> None:
    server = run_server(target)
    response = httpx.get(server.url + "/", timeout=TIMEOUT)
    assert response.status_code == 200
    assert expected in response.text
