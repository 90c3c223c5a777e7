"""The chat example through trio_asgi's in-process client: every byte still goes through the
server's h11/wsproto stack, over bounded in-memory streams (so a client that stops reading
backs up like a real socket, which the slow-member tests rely on)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from examples.chat import create_app
from trio_asgi.testing import Closed, TestClient, WebSocketClient, WebSocketDenied


@contextlib.asynccontextmanager
async def join(client: TestClient, path: str) -> AsyncIterator[WebSocketClient]:
    """Open a chat WebSocket."""
    async with client.websocket(path) as ws:
        yield ws


async def receive_until(ws: WebSocketClient, event_type: str, **fields: Any) -> dict[str, Any]:
    """Skip events until one of ``event_type`` with the given field values arrives."""
    while True:
        event = await ws.receive_json()
        if event["type"] == event_type and all(event.get(k) == v for k, v in fields.items()):
            return event


def names(event: dict[str, Any]) -> list[str]:
    return [member["name"] for member in event["members"]]


async def test_serves_the_page_and_its_assets() -> None:
    async with TestClient(create_app()) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert b'<script src="chat.js"' in page.content
        script = await client.get("/chat.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert b"new WebSocket(" in script.content
        assert (await client.get("/chat.css")).status_code == 200

        head = await client.head("/")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(page.content))

        assert (await client.get("/missing")).status_code == 404
        post = await client.post("/", content=b"x")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"


async def test_presence_and_broadcast() -> None:
    async with TestClient(create_app()) as client:
        async with join(client, "/ws/lobby?name=alice") as alice:
            welcome = await alice.receive_json()
            assert welcome["type"] == "welcome"
            assert (welcome["room"], welcome["name"]) == ("lobby", "alice")
            assert names(welcome) == ["alice"]
            assert welcome["history"] == []
            await receive_until(alice, "join", name="alice")

            async with join(client, "/ws/lobby?name=bob") as bob:
                assert names(await bob.receive_json()) == ["alice", "bob"]
                joined = await receive_until(alice, "join", name="bob")
                assert names(joined) == ["alice", "bob"]
                assert (await client.get("/rooms")).json() == {"lobby": 2}

                await bob.send_json({"type": "message", "text": "  hi alice  "})
                for ws in (alice, bob):
                    said = await receive_until(ws, "message")
                    assert (said["name"], said["text"]) == ("bob", "hi alice")
                    assert said["id"] != welcome["id"]

            left = await receive_until(alice, "leave", name="bob")
            assert left["reason"] == "left"
            assert names(left) == ["alice"]
        # The closing handshake completes before the app has seen the disconnect; once
        # everything settled, the empty room is gone.
        await trio.testing.wait_all_tasks_blocked()
        assert (await client.get("/rooms")).json() == {}


async def test_rooms_are_separate() -> None:
    async with (
        TestClient(create_app()) as client,
        join(client, "/ws/one?name=a") as one,
        join(client, "/ws/two?name=b") as two,
    ):
        await receive_until(one, "join", name="a")
        await receive_until(two, "join", name="b")
        await one.send_json({"type": "message", "text": "only for room one"})
        assert (await receive_until(one, "message"))["text"] == "only for room one"
        await two.send_json({"type": "message", "text": "room two"})
        # Room two's first message is its own: nothing leaked from room one.
        assert (await receive_until(two, "message"))["text"] == "room two"
        assert (await client.get("/rooms")).json() == {"one": 1, "two": 1}


async def test_newcomers_get_recent_history() -> None:
    async with (
        TestClient(create_app(history_size=2)) as client,
        join(client, "/ws/r?name=a") as a,
    ):
        for text in ("one", "two", "three"):
            await a.send_json({"type": "message", "text": text})
            await receive_until(a, "message", text=text)
        async with join(client, "/ws/r?name=b") as b:
            welcome = await b.receive_json()
            assert [m["text"] for m in welcome["history"]] == ["two", "three"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", "guest-1"), ("?name=", "guest-1"), ("?name=%20Ada%20%20%20L.%20", "Ada L.")],
)
async def test_names(query: str, expected: str) -> None:
    async with TestClient(create_app()) as client, join(client, "/ws/r" + query) as ws:
        assert (await ws.receive_json())["name"] == expected


async def test_long_names_are_cut() -> None:
    async with TestClient(create_app()) as client, join(client, "/ws/r?name=" + "n" * 99) as ws:
        assert (await ws.receive_json())["name"] == "n" * 32


async def test_bad_input_gets_an_error_not_a_disconnect() -> None:
    async with TestClient(create_app()) as client, join(client, "/ws/r?name=a") as ws:
        await receive_until(ws, "join")
        for bad in ("not json", "[1]", '{"type": "message"}', '{"type": "message", "text": 3}'):
            await ws.send_text(bad)
            assert "expected" in (await ws.receive_json())["error"]
        await ws.send_json({"type": "message", "text": "   "})
        assert (await ws.receive_json())["error"] == "empty message"
        await ws.send_json({"type": "message", "text": "x" * 2001})
        assert "2000 characters" in (await ws.receive_json())["error"]
        await ws.send_json({"type": "message", "text": "still here"})
        assert (await ws.receive_json())["text"] == "still here"


async def test_binary_frames_close_with_1003() -> None:
    async with TestClient(create_app()) as client, join(client, "/ws/r?name=a") as ws:
        await receive_until(ws, "join")
        await ws.send_bytes(b"\x00\x01")
        assert await ws.wait_closed() == Closed(1003, "send JSON text frames")


async def test_other_websocket_paths_are_denied() -> None:
    async with TestClient(create_app()) as client:
        for path in ("/", "/ws/a/b", "/ws/"):
            with pytest.raises(WebSocketDenied) as denied:
                async with client.websocket(path):
                    pass
            assert denied.value.status_code == 403


# A bad room name is closed right after the accept (see test_examples_chat_e2e for the
# check against the real server). In-process, that close is often lost:
async def test_close_right_after_accept_reaches_the_in_process_client(
    autojump_clock: Any,
) -> None:
    async with TestClient(create_app()) as client:
        # About half the attempts hit the race; 40 make a pass by luck ~1e-12 unlikely,
        # and the virtual clock makes the lost ones' 5 s timeouts free.
        for _ in range(40):
            async with client.websocket("/ws/" + "x" * 41) as ws:
                closed = await ws.wait_closed()
                assert closed.code == 1008, closed
                assert "room names" in closed.reason


async def test_server_shutdown_closes_members_with_1001() -> None:
    async with TestClient(create_app()) as client, join(client, "/ws/r?name=a") as ws:
        await receive_until(ws, "join")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.shutdown)
            assert (await ws.wait_closed()).code == 1001


async def flood_until_dropped(
    fast: WebSocketClient, slow_name: str, *, limit: int = 500
) -> dict[str, Any]:
    """Send from ``fast`` until the room drops ``slow_name``. Every message's echo must come
    back to ``fast`` meanwhile: the stalled member never holds the room up."""
    text = "m" * 1000
    for _ in range(limit):
        await fast.send_json({"type": "message", "text": text})
        while True:
            event = await fast.receive_json()
            if event["type"] == "leave" and event["name"] == slow_name:
                return event
            if event["type"] == "message":
                break  # our own echo: the room keeps going
    raise AssertionError(f"{slow_name} was not dropped after {limit} messages")


async def test_a_stalled_member_is_dropped_with_1013() -> None:
    app = create_app(queue_size=4, kick_grace=60)
    async with (
        TestClient(app, buffer_size=4096) as client,
        join(client, "/ws/r?name=slow") as slow,
        join(client, "/ws/r?name=fast") as fast,
    ):
        await receive_until(slow, "join", name="fast")
        slow.pause_reading()  # a stalled client: its socket buffer fills up
        await receive_until(fast, "join", name="fast")
        left = await flood_until_dropped(fast, "slow")
        assert left["reason"] == "dropped (too slow)"
        assert names(left) == ["fast"]
        assert (await client.get("/rooms")).json() == {"r": 1}

        # The stalled client wakes up within the grace period: after the bytes that were
        # already on their way, it is told why it was dropped.
        slow.pause_reading(False)
        closed = await slow.wait_closed()
        assert closed.code == 1013
        assert "too slow" in closed.reason

        await fast.send_json({"type": "message", "text": "after"})
        await receive_until(fast, "message", text="after")  # the room goes on


async def test_a_member_stalled_past_the_grace_period_is_cut_off(autojump_clock: Any) -> None:
    app = create_app(queue_size=4, kick_grace=5)
    async with (
        TestClient(app, buffer_size=4096) as client,
        join(client, "/ws/r?name=slow") as slow,
        join(client, "/ws/r?name=fast") as fast,
    ):
        await receive_until(slow, "join", name="fast")
        slow.pause_reading()
        await receive_until(fast, "join", name="fast")
        await flood_until_dropped(fast, "slow")
        # Virtual time: well past the grace period (and the server's close timeout).
        await trio.sleep(30)
        slow.pause_reading(False)
        # The unfinished send was cancelled, so no close frame could follow it.
        assert (await slow.wait_closed()).code == 1006
