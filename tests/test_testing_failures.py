"""trio_asgi.testing when things go wrong: requests it cannot send, requests given up on,
timeouts on every call, connections that close under a call, and the app's exceptions."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi.testing import ClientTimeout, TestClient, WebSocketClosed


def disconnect_recorder(heard: trio.Event) -> Any:
    """An HTTP app that never answers; it sets ``heard`` once it hears http.disconnect."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            if (await receive())["type"] == "http.disconnect":
                heard.set()
                return

    return app


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


# -- requests the client cannot send, requests given up on ---------------------------------


async def test_a_request_h11_refuses_fails_at_once(autojump_clock: Any) -> None:
    """A header value with CR LF cannot be sent: a ValueError before anything is sent, not a
    ClientTimeout after waiting for the response to a request that never left."""
    async with TestClient(echo, timeout=5) as client:
        start = trio.current_time()
        with pytest.raises(ValueError, match="cannot send this request"):
            await client.get("/", headers={"x-bad": "a\r\nInjected: 1"})
        assert trio.current_time() == start
        assert client.connections_opened == 0
        assert (await client.get("/")).text == "ok"


async def test_a_cancelled_request_closes_its_connection(autojump_clock: Any) -> None:
    """A request cancelled while it waits for the response (a test's move_on_after, a
    failing sibling task) leaves like a real client: the app hears http.disconnect now,
    not when the client shuts down."""
    heard = trio.Event()
    async with TestClient(disconnect_recorder(heard), timeout=None) as client:
        with trio.move_on_after(1):
            await client.get("/")
        with trio.move_on_after(30):
            await heard.wait()
        assert heard.is_set(), "the app never heard that the client left"


async def test_a_request_that_timed_out_closes_its_connection(autojump_clock: Any) -> None:
    """Same after a ClientTimeout: the app does not keep waiting (and hold up shutdown)."""
    heard = trio.Event()
    async with TestClient(disconnect_recorder(heard), timeout=2) as client:
        with pytest.raises(ClientTimeout):
            await client.get("/")
        with trio.move_on_after(30):
            await heard.wait()
        assert heard.is_set(), "the app never heard that the client left"


# -- timeouts: "default bound, in seconds, for every client call" --------------------------


async def stalls(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sends one byte of the body, then nothing more."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await trio.sleep_forever()


@pytest.mark.parametrize("read", ["aread", "receive_chunk", "aiter_bytes"])
async def test_reading_a_streamed_body_is_bounded_by_the_timeout(
    autojump_clock: Any, read: str
) -> None:
    async def read_all(response: Any) -> None:
        if read == "aiter_bytes":
            async for _ in response.aiter_bytes():
                pass
        else:
            while await getattr(response, read)():
                pass

    async with TestClient(stalls, timeout=3, timeout_graceful_shutdown=0) as client:
        with trio.move_on_after(60) as guard:
            async with client.stream("GET", "/stalls") as response:
                start = trio.current_time()
                with pytest.raises(ClientTimeout, match="the body of GET /stalls"):
                    await read_all(response)
                assert trio.current_time() == start + 3
        assert not guard.cancelled_caught, f"{read}() waited 60 s despite timeout=3"


async def test_websocket_send_is_bounded_by_the_timeout(autojump_clock: Any) -> None:
    """An app that stops reading makes sends back up; after ``timeout`` the send raises
    ClientTimeout (and resets the connection: half a frame may be on the wire)."""

    async def deaf(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await trio.sleep_forever()

    async with TestClient(deaf, timeout=3, timeout_graceful_shutdown=0) as client:
        async with client.websocket("/") as ws:
            with trio.move_on_after(60) as guard:
                with pytest.raises(ClientTimeout, match="room to send"):
                    for _ in range(1000):  # 100 MB: far beyond every buffer on the way
                        await ws.send_bytes(b"x" * 100_000)
                with pytest.raises(WebSocketClosed):
                    await ws.send_bytes(b"after the reset")
            ws.drop()
        assert not guard.cancelled_caught, "send_bytes() blocked 60 s despite timeout=3"


# -- connections that close under a call ---------------------------------------------------


async def test_ping_on_a_connection_that_closes_raises_websocket_closed(
    autojump_clock: Any,
) -> None:
    """The server closes (1009, message too big) before it reads our ping, so no pong will
    ever come: ``ping()`` raises WebSocketClosed once the close arrived, as ``send_*`` and
    ``receive*`` do, instead of waiting out the timeout."""
    async with TestClient(echo, timeout=5, ws_max_size=1000) as client:
        async with client.websocket("/") as ws:
            start = trio.current_time()
            await ws.send_bytes(b"x" * 2000)  # the server answers with close 1009
            with pytest.raises(WebSocketClosed) as info:
                await ws.ping()
            assert info.value.code == 1009
            assert trio.current_time() == start


# -- the app's exceptions ------------------------------------------------------------------


async def test_app_exception_in_a_websocket_is_raised_from_the_waiting_receive() -> None:
    """``raise_app_exceptions``: the app's own exception, not WebSocketClosed(1011), comes
    out of the ``receive_text()`` that was waiting (as Starlette's TestClient does)."""

    async def crashes(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await receive()
            raise LookupError("bug in the websocket handler")

    with trio.fail_after(10):
        async with TestClient(crashes) as client:
            async with client.websocket("/ws") as ws:
                await ws.send_text("hello")
                with pytest.raises(LookupError, match="bug in the websocket handler"):
                    await ws.receive_text()
        async with TestClient(crashes, raise_app_exceptions=False) as client:
            async with client.websocket("/ws") as ws:
                await ws.send_text("hello")
                with pytest.raises(WebSocketClosed) as info:
                    await ws.receive_text()
                assert info.value.code == 1011


async def test_app_exception_while_streaming_is_raised_from_the_streamed_read() -> None:
    """As ``request()`` does: the app's exception, not h11's "peer closed connection without
    sending complete message body"."""

    async def crashes_midway(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            await trio.sleep(0.01)
            raise LookupError("bug while streaming")

    with trio.fail_after(10):
        async with TestClient(crashes_midway) as client:
            async with client.stream("GET", "/") as response:
                with pytest.raises(LookupError, match="bug while streaming"):
                    await response.aread()


async def test_a_shutdown_failure_is_raised_once() -> None:
    """A test that checks a failing lifespan shutdown with ``await client.shutdown()`` gets
    the RuntimeError there, and not a second time when it leaves the block."""

    async def shutdown_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.failed", "message": "cannot flush"})

    with trio.fail_after(10):
        async with TestClient(shutdown_fails) as client:
            with pytest.raises(RuntimeError, match="cannot flush"):
                await client.shutdown()
            await client.shutdown()  # already stopped, already reported
