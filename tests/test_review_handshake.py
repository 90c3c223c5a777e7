"""Review of c83856c..6ef9d54 (helper 29): the handshake's accept wait moved into the loop
scope and the Heartbeat holding targets by key. A task that handed its connection off
cleaned up, when it finally left, the WebSocket that the next task had opened meanwhile."""

from __future__ import annotations

from typing import Any

import trio
import wsproto
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Request,
)

from trio_asgi.testing import TestClient

KEEP_ALIVE_GET = b"GET /bg HTTP/1.1\r\nHost: x\r\n\r\n"


async def read_http_response(stream: Any) -> bytes:
    data = b""
    with trio.fail_after(30):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some()
            assert chunk, data
            data += chunk
    head, _, _ = data.partition(b"\r\n\r\n")
    return head


class RawWS:
    """A WebSocket client over a raw stream that already carried HTTP requests."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.events: list[Any] = []

    async def handshake(self, path: str = "/ws") -> None:
        await self.stream.send_all(self.ws.send(Request(host="x", target=path)))
        with trio.fail_after(30):
            while True:
                data = await self.stream.receive_some()
                assert data
                self.ws.receive_data(data)
                for event in self.ws.events():
                    if isinstance(event, AcceptConnection):
                        return
                    raise AssertionError(event)

    async def pump(self, seconds: float) -> list[Any]:
        """Read (answering pings) for ``seconds`` or until the connection ends."""
        seen: list[Any] = []
        with trio.move_on_after(seconds):
            while True:
                data = await self.stream.receive_some()
                if not data:
                    break
                self.ws.receive_data(data)
                for event in self.ws.events():
                    seen.append(event)
                    if isinstance(event, Ping) or (
                        isinstance(event, CloseConnection)
                        and self.ws.state == wsproto.connection.ConnectionState.REMOTE_CLOSING
                    ):
                        await self.stream.send_all(self.ws.send(event.response()))
        self.events += seen
        return seen


def background_then_ws(run_on: float) -> Any:
    """/bg answers, then runs on for ``run_on`` seconds (a handoff); a WebSocket is accepted
    and kept open, its app waiting for the end."""
    done = trio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"2")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
            await trio.sleep(run_on)
            done.set()
            return
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    app.done = done  # type: ignore[attr-defined]
    return app


async def test_keepalive_pings_go_on_after_the_handed_off_app_of_an_earlier_request_ends(
    autojump_clock: Any,
) -> None:
    """A request's app runs on after its response (background work): the connection's next
    request, a WebSocket upgrade, is served by a new task. When the first app returns, the
    first task's cleanup must not take the WebSocket of the new task as its own: it forgot
    the session in the Heartbeat, so no keepalive ping was ever sent again."""
    app = background_then_ws(run_on=5)
    async with TestClient(app, ws_ping_interval=10, ws_ping_timeout=10) as client:
        stream = await client.connect()
        await stream.send_all(KEEP_ALIVE_GET)
        assert (await read_http_response(stream)).startswith(b"HTTP/1.1 200")
        await trio.sleep(1)  # (handed off by now: the app sleeps after its response)
        ws = RawWS(stream)
        await ws.handshake()
        await app.done.wait()  # the first request's app returns at t=5
        events = await ws.pump(60)
        pings = [e for e in events if isinstance(e, Ping)]
        assert len(pings) >= 4, events
        await stream.aclose()


async def test_shutdown_closes_a_websocket_opened_after_a_handoff_once_the_earlier_app_ended(
    autojump_clock: Any,
) -> None:
    """Same handoff as above: the connection no longer knew its WebSocket once the first
    request's app returned, so a graceful stop did not send it the 1001 close frame (the
    connection was only cut when the graceful timeout ran out)."""
    app = background_then_ws(run_on=5)
    async with TestClient(app, ws_ping_interval=None, timeout_graceful_shutdown=30) as client:
        stream = await client.connect()
        await stream.send_all(KEEP_ALIVE_GET)
        assert (await read_http_response(stream)).startswith(b"HTTP/1.1 200")
        await trio.sleep(1)
        ws = RawWS(stream)
        await ws.handshake()
        await app.done.wait()
        await trio.sleep(1)
        client.server.request_shutdown()
        events = await ws.pump(5)
        closes = [e for e in events if isinstance(e, CloseConnection)]
        assert [c.code for c in closes] == [1001], events
