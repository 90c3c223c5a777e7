"""WebSocket behaviour of the server (ASGI WebSocket spec 2.5), through the in-process client."""

from __future__ import annotations

import logging
import struct
from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi import ClientDisconnected
from trio_asgi.errors import ASGIProtocolError
from trio_asgi.testing import (
    Binary,
    Closed,
    TestClient,
    Text,
    WebSocketClosed,
    WebSocketDenied,
    build_frame,
)

from .conftest import raw_exchange, status_of

Scope = dict[str, Any]


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def recorder(script: Any) -> tuple[list[dict[str, Any]], Any]:
    """An app running ``script(receive, send)`` after connect, recording what it received."""
    received: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return

        async def recording_receive() -> dict[str, Any]:
            message = await receive()
            received.append(message)
            return message

        await script(scope, recording_receive, send)

    return received, app


@pytest.mark.parametrize("quitter", [0, 2])
async def test_tasks_waiting_in_receive_at_once_are_served_in_turn(quitter: int) -> None:
    """Several tasks may wait in ``receive()`` together: each message goes to the longest
    waiter, and one that gives up (cancelled) loses nothing, whether it was the longest
    waiter or not."""
    got: list[tuple[str, str]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})

        async def take(name: str, cancel_scope: trio.CancelScope | None = None) -> None:
            with cancel_scope or trio.CancelScope():
                got.append((name, (await receive())["text"]))

        gives_up = trio.CancelScope()
        names = ["first", "second", "third"]
        names.insert(quitter, "gives up")
        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(take, name, gives_up if name == "gives up" else None)
                await trio.testing.wait_all_tasks_blocked()
            gives_up.cancel()  # the longest waiter leaves before anything came
            await trio.testing.wait_all_tasks_blocked()
            await send({"type": "websocket.send", "text": "waiting"})
        await send({"type": "websocket.send", "text": "done"})

    async with TestClient(app) as client, client.websocket("/ws") as ws:
        assert await ws.receive_text() == "waiting"
        for text in ("a", "b", "c"):
            await ws.send_text(text)
        assert await ws.receive_text() == "done"
    assert got == [("first", "a"), ("second", "b"), ("third", "c")]


async def test_echo_text_and_bytes() -> None:
    async with TestClient(echo) as client, client.websocket("/ws") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "hello"
        await ws.send_bytes(b"\x00\xff")
        assert await ws.receive_bytes() == b"\x00\xff"
        await ws.send_json({"a": [1, 2]})
        assert await ws.receive_json() == {"a": [1, 2]}


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 1_000_000])
async def test_messages_of_any_size(size: int) -> None:
    payload = bytes(i % 256 for i in range(size))
    async with TestClient(echo) as client, client.websocket("/ws") as ws:
        await ws.send_bytes(payload)
        assert await ws.receive_bytes() == payload
        await ws.send_text("é" * size)
        assert await ws.receive_text() == "é" * size


async def test_messages_arrive_in_order_and_whole_when_bytes_trickle() -> None:
    async with TestClient(echo) as client, client.websocket("/ws") as ws:
        ws.set_write_chunk(1)
        for i in range(20):
            await ws.send_text(f"message {i} " + "x" * i)
        for i in range(20):
            assert await ws.receive_text() == f"message {i} " + "x" * i


async def test_scope_subprotocols_and_accept_headers() -> None:
    scopes = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        scopes.append(scope)
        await receive()
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": "v2",
                "headers": [(b"x-custom", b"yes")],
            }
        )
        await send({"type": "websocket.close"})

    async with TestClient(app) as client:
        async with client.websocket("/chat?room=1", subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
            assert ws.headers["x-custom"] == "yes"
            assert await ws.wait_closed() == Closed(1000)
    [scope] = scopes
    assert scope["subprotocols"] == ["v1", "v2"]
    assert scope["path"] == "/chat" and scope["query_string"] == b"room=1"
    assert scope["scheme"] == "ws"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert "websocket.http.response" in scope["extensions"]


async def test_subprotocol_not_offered_is_an_app_error() -> None:
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        try:
            await send({"type": "websocket.accept", "subprotocol": "nope"})
        except ASGIProtocolError as exc:
            errors.append(exc)
            raise

    async with TestClient(app, raise_app_exceptions=False) as client:
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket("/", subprotocols=["v1"]):
                pass
    assert info.value.status_code == 500
    assert "not offered" in str(errors[0])


@pytest.mark.parametrize(
    "name", [b"sec-websocket-protocol", b"sec-websocket-extensions", b"Sec-WebSocket-Accept"]
)
async def test_accept_headers_the_handshake_owns_are_an_app_error(name: bytes) -> None:
    """The server writes these from the negotiation; an app's copy could claim an extension
    that is not in force (the client would then misread compressed frames)."""
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        try:
            await send({"type": "websocket.accept", "headers": [(name, b"permessage-deflate")]})
        except ASGIProtocolError as exc:
            errors.append(exc)
            raise

    async with TestClient(app, raise_app_exceptions=False) as client:
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket("/"):
                pass
    assert info.value.status_code == 500
    assert len(errors) == 1


async def test_close_before_accept_is_403() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.close"})

    async with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket("/"):
                pass
    assert info.value.status_code == 403


async def test_denial_response_extension() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"www-authenticate", b"Bearer"), (b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you?"})

    async with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket("/"):
                pass
    assert info.value.status_code == 401
    assert info.value.headers["www-authenticate"] == "Bearer"
    assert info.value.body == b"who are you?"


@pytest.mark.parametrize("mistake", ["bad header", "wrong length", "no body"])
async def test_denial_response_that_fails_before_anything_was_written_is_a_500(
    mistake: str,
) -> None:
    """As on plain HTTP: while nothing of the denial reached the client, the app's mistake
    gets a 500 instead of a connection closed without an answer."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        headers = [(b"x-bad", b"a\r\nb")] if mistake == "bad header" else []
        if mistake == "wrong length":
            headers = [(b"content-length", b"10")]
        start = {"type": "websocket.http.response.start", "status": 403, "headers": headers}
        await send(start)
        if mistake != "no body":
            await send({"type": "websocket.http.response.body", "body": b"nope"})

    async with TestClient(app, raise_app_exceptions=False) as client:
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket("/"):
                pass  # pragma: no cover
    assert info.value.status_code == 500


async def test_app_returning_without_accepting_is_500() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        return

    async with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket("/"):
                pass
    assert info.value.status_code == 500


async def test_exception_before_accept_is_500_and_after_accept_is_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        if scope["path"] == "/early":
            raise ValueError("early")
        await send({"type": "websocket.accept"})
        await receive()
        raise ValueError("late")

    async with TestClient(app, raise_app_exceptions=False) as client:
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket("/early"):
                pass
        assert info.value.status_code == 500
        async with client.websocket("/late") as ws:
            await ws.send_text("trigger")
            assert await ws.wait_closed() == Closed(1011)
        # and the server is still fine
        async with client.websocket("/late") as ws:
            pass
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert sum("Exception in ASGI application" in m for m in messages) == 3


async def test_app_returning_after_accept_closes_with_1000() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "bye"})

    async with TestClient(app) as client, client.websocket("/") as ws:
        assert await ws.receive_text() == "bye"
        assert await ws.receive() == Closed(1000)
        with pytest.raises(WebSocketClosed):
            await ws.receive()


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (1000, "", (1000, "")),
        (4000, "custom reason", (4000, "custom reason")),
        (None, "", (1005, "")),
    ],
)
async def test_disconnect_carries_the_peers_code_and_reason(
    code: int | None, reason: str, expected: tuple[int, str]
) -> None:
    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    received, app = recorder(script)
    async with TestClient(app) as client, client.websocket("/") as ws:
        if code is None:
            await ws.send_raw(build_frame(0x8, b""))
            assert await ws.wait_closed() == Closed(1005)
        else:
            assert await ws.close(code, reason) == Closed(code, reason)
    assert received[-1] == {
        "type": "websocket.disconnect",
        "code": expected[0],
        "reason": expected[1],
    }


async def test_server_close_code_reason_and_disconnect_after() -> None:
    after: list[Any] = []

    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4321, "reason": "done here"})
        after.append(await receive())
        with pytest.raises(ASGIProtocolError):
            await send({"type": "websocket.send", "text": "too late"})
        after.append("raised")

    _, app = recorder(script)
    async with TestClient(app) as client, client.websocket("/") as ws:
        assert await ws.receive() == Closed(4321, "done here")
    assert after == [
        {"type": "websocket.disconnect", "code": 4321, "reason": "done here"},
        "raised",
    ]


async def test_send_after_client_left_raises_client_disconnected() -> None:
    outcome: list[str] = []
    left = trio.Event()

    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        assert message["type"] == "websocket.disconnect"
        outcome.append(f"disconnect {message['code']}")
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except ClientDisconnected:
            outcome.append("ClientDisconnected")
        left.set()

    _, app = recorder(script)
    async with TestClient(app) as client:
        async with client.websocket("/") as ws:
            ws.drop()
        await left.wait()
    assert outcome == ["disconnect 1006", "ClientDisconnected"]


async def test_pings_are_answered_even_while_the_app_is_busy() -> None:
    release = trio.Event()

    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()  # busy, not receiving
        assert (await receive())["text"] == "queued"

    _, app = recorder(script)
    async with TestClient(app) as client, client.websocket("/") as ws:
        await ws.send_text("queued")
        await ws.ping(b"are you there")
        await ws.ping(b"x" * 125)
        release.set()


async def test_unsolicited_pong_is_ignored() -> None:
    async with TestClient(echo) as client, client.websocket("/") as ws:
        await ws.send_raw(build_frame(0xA, b"unsolicited"))
        await ws.send_text("still fine")
        assert await ws.receive_text() == "still fine"


async def test_backpressure_stops_reading_instead_of_buffering() -> None:
    """The app does not receive; the server reads at most ws_max_queue messages, then stops
    reading, so the client's writes back up in the (bounded) transport."""
    release = trio.Event()
    got: list[str] = []

    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while (message := await receive())["type"] == "websocket.receive":
            got.append(message["text"])

    _, app = recorder(script)
    sent = 0
    async with TestClient(app, ws_max_queue=4, buffer_size=16 * 1024) as client:
        async with client.websocket("/") as ws:

            async def flood() -> None:
                nonlocal sent
                for i in range(200):
                    await ws.send_text(f"{i:05d}" + "x" * 995)
                    sent += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                await trio.testing.wait_all_tasks_blocked()
                # Blocked: 4 messages in the app's queue, plus what one 64 KiB read and
                # 16 KiB of transport buffer hold; nowhere near all 200.
                assert 4 < sent < 4 + 64 + 16 + 2
                release.set()
            await ws.send_text("last")
            await ws.close()
    assert len(got) == 201
    assert got[:3] == [f"{i:05d}" + "x" * 995 for i in range(3)]


async def test_message_over_max_size_closes_with_1009() -> None:
    received, app = recorder(echo_script)
    async with TestClient(app, ws_max_size=1000) as client, client.websocket("/") as ws:
        await ws.send_bytes(b"x" * 1000)
        assert await ws.receive_bytes() == b"x" * 1000
        await ws.send_bytes(b"x" * 1001)
        closed = await ws.wait_closed()
    assert closed.code == 1009
    assert received[-1]["type"] == "websocket.disconnect" and received[-1]["code"] == 1009


async def echo_script(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send(
            {"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")}
        )


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (build_frame(0x1, b"\xff\xfe"), 1007),
        (build_frame(0x1, b"x", rsv=4), 1002),
        (build_frame(0x8, b"\x03"), 1002),
        (build_frame(0x8, struct.pack("!H", 1006)), 1002),
        (build_frame(0x1, b"x", mask=False), 1002),
    ],
)
async def test_protocol_errors_close_with_the_rfc_code(frame: bytes, code: int) -> None:
    received, app = recorder(echo_script)
    async with TestClient(app) as client, client.websocket("/") as ws:
        await ws.send_raw(frame)
        assert (await ws.wait_closed()).code == code
    assert received[-1]["code"] == code


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 2000, 5000])
async def test_app_may_not_send_reserved_close_codes(code: int) -> None:
    errors = []

    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": code})
        except ASGIProtocolError as exc:
            errors.append(exc)
            raise

    _, app = recorder(script)
    async with TestClient(app, raise_app_exceptions=False) as client, client.websocket("/") as ws:
        assert (await ws.wait_closed()).code == 1011
    assert len(errors) == 1


async def test_close_is_sent_after_data_already_queued() -> None:
    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(send, {"type": "websocket.send", "bytes": bytes([i]) * 100_000})
            await trio.sleep(0)
            nursery.start_soon(send, {"type": "websocket.close", "code": 1000})

    _, app = recorder(script)
    async with TestClient(app, buffer_size=8192) as client, client.websocket("/") as ws:
        messages = [await ws.receive() for _ in range(6)]
    assert all(isinstance(m, Binary) and len(m.data) == 100_000 for m in messages[:5])
    assert messages[5] == Closed(1000)


async def test_invalid_send_messages() -> None:
    problems: list[str] = []

    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        for bad in (
            {"type": "websocket.send", "text": "before accept"},
            {"type": "http.response.start", "status": 200},
        ):
            with pytest.raises(ASGIProtocolError) as info:
                await send(bad)
            problems.append(str(info.value))
        await send({"type": "websocket.accept"})
        for bad in (
            {"type": "websocket.send"},
            {"type": "websocket.send", "text": "a", "bytes": b"b"},
            {"type": "websocket.send", "text": 5},
            {"type": "websocket.accept"},
        ):
            with pytest.raises(ASGIProtocolError) as info:
                await send(bad)
            problems.append(str(info.value))
        await send({"type": "websocket.send", "text": "still open"})

    _, app = recorder(script)
    async with TestClient(app) as client, client.websocket("/") as ws:
        assert await ws.receive() == Text("still open")
    assert len(problems) == 6


async def test_bad_handshakes_get_400_or_426() -> None:
    async with TestClient(echo) as client:
        no_key = await raw_exchange(
            await client.connect(),
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
        )
        old_version = await raw_exchange(
            await client.connect(),
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
    assert status_of(no_key) == 400
    assert status_of(old_version) == 426
    assert b"sec-websocket-version: 13" in old_version.lower()


async def test_upgrade_must_name_the_websocket_token() -> None:
    """RFC 6455 4.2.1: "websocket" as a token of Upgrade, not as part of another word."""
    async with TestClient(echo) as client:
        lookalike = await raw_exchange(
            await client.connect(),
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: not-websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
    # Served as a plain HTTP request, which this app leaves unanswered: 500, not 101.
    assert status_of(lookalike) == 500


async def test_handshake_bytes_and_frames_in_one_packet() -> None:
    """Frames that arrive glued to the handshake (trailing data) are not lost."""
    async with TestClient(echo) as client:
        stream = await client.connect()
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            + build_frame(0x1, b"early")
        )
        data = b""
        while b"early" not in data:
            data += await stream.receive_some()
        assert data.startswith(b"HTTP/1.1 101 ")
        assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in data
        assert data.endswith(b"\x81\x05early")
        await stream.aclose()


async def test_access_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    async with TestClient(echo) as client, client.websocket("/ws") as ws:
        await ws.close(4000)
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]
    assert lines[0].endswith('"WebSocket /ws" open')
    assert '"WebSocket /ws" closed 4000 after' in lines[1]


async def test_receive_text_on_closed_connection_raises() -> None:
    async def script(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1008})

    _, app = recorder(script)
    async with TestClient(app) as client, client.websocket("/") as ws:
        with pytest.raises(WebSocketClosed) as info:
            await ws.receive_text()
    assert info.value.code == 1008


async def test_an_ended_session_is_not_kept_until_its_next_ping() -> None:
    """The keepalive timer lets go of a session once it ends: an ended WebSocket (its
    connection, scope and buffers) is freed at once, not after up to a ping interval."""
    import gc

    from trio_asgi.asgi.websocket import WebSocketSession

    def sessions() -> int:
        gc.collect()
        return sum(type(o) is WebSocketSession for o in gc.get_objects())

    before = sessions()  # (earlier tests' failures may keep some alive in tracebacks)
    async with TestClient(echo, ws_ping_interval=20.0) as client:
        async with client.websocket("/") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "hi"
            assert sessions() == before + 1
        await trio.testing.wait_all_tasks_blocked()
        assert sessions() == before


async def test_close_reason_that_is_not_utf8_encodable_still_gets_the_client_a_1011(
    autojump_clock: Any,
) -> None:
    """A reason with a lone surrogate cannot be encoded: refused before closing, so the
    crashed app's client gets its 1011 (encoding used to fail after the session was marked
    closing, and the client got no close frame at all)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "bad \ud800"})

    async with TestClient(app, raise_app_exceptions=False) as client:
        async with client.websocket("/") as ws:
            with trio.fail_after(30):
                closed = await ws.wait_closed()
    assert closed == Closed(1011)
