"""Review of trio_asgi.testing: each test here fails on the current code because of a bug.

Every test is bounded (trio.fail_after on the real clock, or virtual time under autojump).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi.testing import ClientTimeout, TestClient, WebSocketClosed

# -- helper apps ---------------------------------------------------------------------------


async def scope_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers HTTP with the interesting parts of its scope, as JSON; WebSocket likewise."""
    if scope["type"] == "http":
        while (await receive()).get("more_body"):
            pass
        info = {
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "scheme": scope["scheme"],
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(info).encode()})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({"scheme": scope["scheme"]})})
        while (await receive())["type"] != "websocket.disconnect":
            pass


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


# -- requests the client cannot build ------------------------------------------------------


async def test_request_that_h11_refuses_fails_at_once_instead_of_timing_out(
    autojump_clock: Any,
) -> None:
    """A header value with CR LF cannot be sent. h11 says so (LocalProtocolError) when the
    request is built, but ``_exchange``'s sender swallows LocalProtocolError, so the client
    waits for a response to a request that was never sent: ClientTimeout after ``timeout``
    (forever with ``timeout=None``), claiming the app did nothing. Expected: a prompt,
    clear error (httpx raises at once for such a header)."""
    async with TestClient(scope_echo, timeout=5) as client:
        start = trio.current_time()
        with pytest.raises(Exception) as info:
            await client.get("/", headers={"x-bad": "a\r\nInjected: 1"})
        assert not isinstance(info.value, trio.TooSlowError), info.value
        assert trio.current_time() == start


# -- abandoned requests --------------------------------------------------------------------


async def test_a_cancelled_request_closes_its_connection(autojump_clock: Any) -> None:
    """A request cancelled while waiting for the response head (a test's move_on_after, a
    failing sibling task) leaves its connection open: ``stream()`` closes the connection
    only for h11/Broken errors, not for Cancelled. The app never hears http.disconnect
    (until the whole client shuts down), unlike with a real client that goes away."""
    heard = trio.Event()
    async with TestClient(disconnect_recorder(heard), timeout=None) as client:
        with trio.move_on_after(1):
            await client.get("/")
        with trio.move_on_after(30):
            await heard.wait()
        assert heard.is_set(), "the app never heard that the client left"


async def test_a_request_that_timed_out_closes_its_connection(autojump_clock: Any) -> None:
    """Same after a ClientTimeout: the client gave up on the request, but the connection is
    left open and the app keeps waiting (and holds up the graceful shutdown)."""
    heard = trio.Event()
    async with TestClient(disconnect_recorder(heard), timeout=2) as client:
        with pytest.raises(ClientTimeout):
            await client.get("/")
        with trio.move_on_after(30):
            await heard.wait()
        assert heard.is_set(), "the app never heard that the client left"


# -- timeouts: "default bound, in seconds, for every client call" --------------------------


async def test_reading_a_streamed_body_is_bounded_by_the_timeout(autojump_clock: Any) -> None:
    """``client.stream()`` bounds only the wait for the head; ``aread()`` /
    ``receive_chunk()`` / ``aiter_bytes()`` wait forever for a body that stalls, instead of
    raising ClientTimeout after ``timeout`` as the TestClient docstring promises."""

    async def stalls(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            await trio.sleep_forever()

    async with TestClient(stalls, timeout=3, timeout_graceful_shutdown=0) as client:
        with trio.move_on_after(60) as guard:
            async with client.stream("GET", "/") as response:
                with pytest.raises(ClientTimeout):
                    await response.aread()
        assert not guard.cancelled_caught, "aread() waited 60 s despite timeout=3"


async def test_websocket_send_is_bounded_by_the_timeout(autojump_clock: Any) -> None:
    """An app that stops reading makes ``send_bytes`` block (backpressure) with no bound:
    it never raises ClientTimeout, whatever the client's ``timeout``."""

    async def deaf(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await trio.sleep_forever()

    async with TestClient(deaf, timeout=3, timeout_graceful_shutdown=0) as client:
        async with client.websocket("/") as ws:
            with trio.move_on_after(60) as guard:
                with pytest.raises(ClientTimeout):
                    for _ in range(1000):  # 100 MB: far beyond every buffer on the way
                        await ws.send_bytes(b"x" * 100_000)
            ws.drop()
        assert not guard.cancelled_caught, "send_bytes() blocked 60 s despite timeout=3"


# -- WebSocket -----------------------------------------------------------------------------


async def test_ping_on_a_connection_that_closes_raises_websocket_closed(
    autojump_clock: Any,
) -> None:
    """The server closes (1009, message too big) before it reads our ping, so no pong will
    ever come. ``ping()`` still waits for it: ClientTimeout after ``timeout`` (a hang with
    ``timeout=None``) instead of WebSocketClosed once the close arrived, as ``send_*`` and
    ``receive*`` do."""

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass

    async with TestClient(echo, timeout=5, ws_max_size=1000) as client:
        async with client.websocket("/") as ws:
            await ws.send_bytes(b"x" * 2000)  # the server answers with close 1009
            with pytest.raises(WebSocketClosed) as info:
                await ws.ping()
            assert info.value.code == 1009


async def test_app_exception_in_a_websocket_is_raised_in_the_test() -> None:
    """``raise_app_exceptions`` (the default): "an exception that escapes the app is raised
    again from the client call that was waiting". When the test is in ``receive_text()``,
    it gets WebSocketClosed(1011) and the app's own exception is lost for good (the block
    exits by exception, so ``_raise_app_error`` never runs). Starlette's TestClient raises
    the app's exception here."""

    async def crashes(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await receive()
            raise LookupError("bug in the websocket handler")

    with trio.fail_after(10):
        async with TestClient(crashes) as client:
            with pytest.raises(LookupError, match="bug in the websocket handler"):
                async with client.websocket("/ws") as ws:
                    await ws.send_text("hello")
                    await ws.receive_text()


# -- HTTP app exceptions -------------------------------------------------------------------


async def test_app_exception_while_streaming_is_raised_from_the_streamed_read() -> None:
    """``request()`` re-raises the app's exception when the body breaks off, but a body read
    through ``client.stream()`` raises h11's "peer closed connection without sending
    complete message body" and the app's exception is never raised."""

    async def crashes_midway(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            await trio.sleep(0.01)
            raise LookupError("bug while streaming")

    with trio.fail_after(10):
        async with TestClient(crashes_midway) as client:
            with pytest.raises(LookupError, match="bug while streaming"):
                async with client.stream("GET", "/") as response:
                    await response.aread()


# -- lifespan ------------------------------------------------------------------------------


async def test_a_shutdown_failure_seen_through_shutdown_is_not_raised_again_on_exit() -> None:
    """README: ``await client.shutdown()`` runs the shutdown on demand, to test how the app
    drains. A test that checks a failing lifespan shutdown this way cannot pass: leaving the
    block calls ``shutdown()`` again, which raises the same RuntimeError a second time."""

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


# -- URLs ----------------------------------------------------------------------------------


async def test_url_fragment_is_not_sent() -> None:
    """A fragment is not part of the request-target (RFC 9110 4.2.1 / RFC 3986 3.5; httpx
    and Starlette's TestClient drop it). The client sends it, so the app's path (or query)
    ends in "#section"."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            page = (await client.get("/page#section")).json()
            query = (await client.get("/page?x=1#section")).json()
    assert (page["path"], page["query_string"]) == ("/page", "")
    assert (query["path"], query["query_string"]) == ("/page", "x=1")


async def test_non_ascii_path_is_percent_encoded(autojump_clock: Any) -> None:
    """``client.get("/café")`` works with httpx and Starlette's TestClient (sent as
    /caf%C3%A9). Here h11 refuses the raw UTF-8 target and, because of the swallowed
    LocalProtocolError, the call times out."""
    async with TestClient(scope_echo, timeout=5) as client:
        info = (await client.get("/café")).json()
    assert info["path"] == "/café"
    assert info["raw_path"] == "/caf%C3%A9"


async def test_relative_urls_become_origin_form_targets() -> None:
    """RFC 9112 3.2.1: origin-form is an absolute path. ``client.get("items")`` and
    ``client.get("?page=2")`` are sent as the targets ``items`` and ``?page=2`` (the app sees
    path "items" and ""). httpx and Starlette's TestClient resolve them against base_url."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            relative = (await client.get("items")).json()
            query_only = (await client.get("?page=2")).json()
    assert relative["path"] == "/items"
    assert (query_only["path"], query_only["query_string"]) == ("/", "page=2")


async def test_absolute_url_sets_the_host_header() -> None:
    """``client.get("http://example.org/x")`` keeps only the path; Host stays "testserver".
    httpx and Starlette's TestClient send the URL's host (apps routing on Host, e.g.
    Starlette's Host router or TrustedHostMiddleware, are tested this way)."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            info = (await client.get("http://example.org/x")).json()
    assert ["host", "example.org"] in info["headers"]


async def test_https_base_url_gives_https_scope() -> None:
    """``TestClient(app, base_url="https://testserver")`` takes port 443 from it for
    scope["server"] but leaves scope["scheme"] "http" (and "ws"): the app sees an
    inconsistent, plain-HTTP request. Starlette's TestClient gives "https"/"wss"."""
    with trio.fail_after(10):
        async with TestClient(scope_echo, base_url="https://testserver") as client:
            http_scheme = (await client.get("/")).json()["scheme"]
            async with client.websocket("/ws") as ws:
                ws_scheme = (await ws.receive_json())["scheme"]
    assert (http_scheme, ws_scheme) == ("https", "wss")
