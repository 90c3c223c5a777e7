"""Each HTTP request's app runs in a context of its own (``contextvars``).

Apps keep per-request facts in context variables (the current user, a request id), often
set only when they apply: an auth middleware sets the user when the request carries valid
credentials. Requests on one keep-alive connection can come from different people (a proxy
pools its upstream connections), so a value one request set must not be seen by the next.
Servers that start a task per request get this from asyncio or trio; trio_asgi runs the
requests of a connection in one task, and gives each its own copy of the connection's
context instead.
"""

from __future__ import annotations

import contextvars
from typing import Any

import trio
import trio.testing

from trio_asgi.testing import TestClient

user: contextvars.ContextVar[str] = contextvars.ContextVar("user")
outer: contextvars.ContextVar[str] = contextvars.ContextVar("outer")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": user.get("nobody")})
        await send({"type": "websocket.close"})
        return
    path = scope["path"]
    if path.startswith("/login/"):
        user.set(path.removeprefix("/login/"))
    elif path == "/outer":
        user.set(outer.get("unset"))
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": user.get("nobody").encode()})
    if path == "/login-then-linger/":
        await trio.sleep(1)  # runs on after its response: the next request goes elsewhere


async def test_a_value_set_by_one_request_is_not_seen_by_the_next() -> None:
    async with TestClient(app) as client:
        first = await client.get("/login/alice")
        assert first.text == "alice"
        second = await client.get("/whoami")
        assert second.connection_id == first.connection_id
        assert second.text == "nobody"


async def test_nor_by_a_websocket_on_the_same_connection() -> None:
    async with TestClient(app) as client:
        stream = await client.connect()
        await stream.send_all(b"GET /login/alice HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        received = b""
        with trio.fail_after(5):
            while b"\x81" not in received.partition(b" 101 ")[2]:
                received += await stream.receive_some(65536)
        assert b"\x81\x06nobody" in received  # the WebSocket app's text message
        await stream.aclose()


async def test_nor_after_its_connection_moved_to_another_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with TestClient(app) as client:
        first = await client.get("/login-then-linger/")
        assert first.text == "nobody"
        assert (await client.get("/login/bob")).text == "bob"  # served by the new task
        third = await client.get("/whoami")
        assert third.connection_id == first.connection_id
        assert third.text == "nobody"


async def test_values_from_around_the_server_are_seen() -> None:
    """A request's context starts as a copy of the server's: what the program set before
    serving (configuration, a loop the app runs on) is there."""
    outer.set("from the test")
    async with TestClient(app) as client:
        assert (await client.get("/outer")).text == "from the test"


async def test_tasks_the_app_starts_see_its_values() -> None:
    seen: list[str] = []

    async def spawning_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        user.set("carol")

        async def child() -> None:
            seen.append(user.get("nobody"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async with TestClient(spawning_app) as client:
        assert (await client.get("/")).status_code == 204
    assert seen == ["carol"]
