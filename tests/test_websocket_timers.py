"""WebSocket keepalive and timeouts, in virtual time (MockClock with autojump)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_asgi import ClientDisconnected
from trio_asgi.testing import TestClient, WebSocketDenied, build_frame

Scope = dict[str, Any]
HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def session_app(log: list[Any], *, before_accept: float = 0, consume_every: float | None = None):
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await trio.sleep(before_accept)
        try:
            await send({"type": "websocket.accept"})
        except ClientDisconnected:
            log.append("accept raised ClientDisconnected")
            return
        while True:
            if consume_every is not None:
                await trio.sleep(consume_every)
            message = await receive()
            log.append(message)
            if message["type"] == "websocket.disconnect":
                return

    return app


async def read_frame(stream: Any) -> tuple[int, bytes]:
    """One unmasked server frame (small payloads only) from a raw stream."""
    header = await stream.receive_some(2)
    while len(header) < 2:
        header += await stream.receive_some(2 - len(header))
    length = header[1] & 0x7F
    payload = b""
    while len(payload) < length:
        payload += await stream.receive_some(length - len(payload))
    return header[0] & 0x0F, payload


async def raw_websocket(client: TestClient) -> Any:
    stream = await client.connect()
    await stream.send_all(HANDSHAKE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return stream


async def test_pings_keep_an_answering_client_alive(autojump_clock: Any) -> None:
    log: list[Any] = []
    async with TestClient(session_app(log), ws_ping_interval=20, ws_ping_timeout=20) as client:
        async with client.websocket("/") as ws:
            await trio.sleep(210)
            assert ws.pings_received == 10
            assert ws.closed is None
    assert log[-1]["code"] == 1000


async def test_pings_carry_a_payload_and_a_missing_pong_closes_with_1011(
    autojump_clock: Any,
) -> None:
    log: list[Any] = []
    async with TestClient(session_app(log), ws_ping_interval=20, ws_ping_timeout=5) as client:
        stream = await raw_websocket(client)
        start = trio.current_time()
        opcode, payload = await read_frame(stream)
        assert (opcode, trio.current_time() - start) == (0x9, 20)
        assert len(payload) == 4
        # A pong with the wrong payload does not count.
        await stream.send_all(build_frame(0xA, b"nope"))
        opcode, close = await read_frame(stream)
        assert opcode == 0x8 and close[:2] == b"\x03\xf3"  # 1011
        assert trio.current_time() - start == 25
    assert log == [
        {"type": "websocket.disconnect", "code": 1011, "reason": "keepalive ping timeout"}
    ]


async def test_matching_pong_keeps_the_connection(autojump_clock: Any) -> None:
    log: list[Any] = []
    async with TestClient(session_app(log), ws_ping_interval=20, ws_ping_timeout=5) as client:
        stream = await raw_websocket(client)
        for _ in range(3):
            opcode, payload = await read_frame(stream)
            assert opcode == 0x9
            await stream.send_all(build_frame(0xA, payload))
        await stream.send_all(build_frame(0x8, b"\x03\xe8"))
        assert (await read_frame(stream))[0] == 0x8
    assert log[-1]["code"] == 1000


@pytest.mark.parametrize("interval", [None, 0])
async def test_pings_can_be_disabled(autojump_clock: Any, interval: float | None) -> None:
    log: list[Any] = []
    async with TestClient(session_app(log), ws_ping_interval=interval) as client:
        async with client.websocket("/") as ws:
            await trio.sleep(1000)
            assert ws.pings_received == 0


async def test_no_pong_timeout_while_backpressure_holds_the_pong(autojump_clock: Any) -> None:
    """The app is slow and the client floods: reading pauses, so the client's pong sits
    behind data we refuse to read. That must not count as a dead client."""
    log: list[Any] = []
    app = session_app(log, consume_every=1)
    async with TestClient(
        app, ws_ping_interval=10, ws_ping_timeout=5, ws_max_queue=2, buffer_size=8192
    ) as client:
        async with client.websocket("/") as ws:
            for i in range(100):
                await ws.send_bytes(bytes([i]) * 1000)
            # 100 messages at one per second: many ping intervals pass while paused.
            while len(log) < 100:
                await trio.sleep(1)
            assert ws.closed is None
            assert ws.pings_received >= 3  # one outstanding ping at a time
    assert [m["bytes"][0] for m in log[:100]] == list(range(100))


async def test_accept_timeout(autojump_clock: Any) -> None:
    log: list[Any] = []
    app = session_app(log, before_accept=100)
    async with TestClient(app, ws_accept_timeout=10, timeout=60) as client:
        start = trio.current_time()
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket("/"):
                pass  # pragma: no cover
        assert info.value.status_code == 503
        assert trio.current_time() - start == 10
        await trio.sleep(100)
    assert log == ["accept raised ClientDisconnected"]


async def test_close_handshake_timeout_drops_a_silent_peer(autojump_clock: Any) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})

    async with TestClient(app, ws_ping_interval=None) as client:
        stream = await raw_websocket(client)
        opcode, payload = await read_frame(stream)
        assert (opcode, payload) == (0x8, b"\x0f\xa0")
        start = trio.current_time()
        assert await stream.receive_until_eof() == b""  # we never answer the close
        assert trio.current_time() - start == 5


async def test_send_timeout_disconnects_a_stalled_client(autojump_clock: Any) -> None:
    outcome: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": b"x" * 100_000})
        except ClientDisconnected:
            outcome.append(trio.current_time())
        outcome.append(await receive())

    async with TestClient(app, ws_send_timeout=7, ws_ping_interval=None) as client:
        async with client.websocket("/") as ws:
            ws.pause_reading()
            start = trio.current_time()
            while not outcome:
                await trio.sleep(1)
            assert outcome[0] - start == pytest.approx(7)
            ws.drop()
    assert outcome[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


async def test_stalled_client_does_not_block_shutdown(autojump_clock: Any) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            await send({"type": "websocket.send", "bytes": b"x" * 100_000})

    async with TestClient(
        app, ws_send_timeout=1000, timeout_graceful_shutdown=3, raise_app_exceptions=False
    ) as client:
        async with client.websocket("/") as ws:
            ws.pause_reading()
            await trio.sleep(1)
            start = trio.current_time()
            await client.shutdown()
            assert trio.current_time() - start <= 3
            ws.drop()


async def test_upgrade_request_with_a_stalled_body_is_dropped(autojump_clock: Any) -> None:
    """An upgrade request whose announced body never comes cannot hold a connection open
    (it would otherwise wait for those bytes forever: a slowloris through the handshake)."""
    log: list[Any] = []
    async with TestClient(session_app(log), timeout_request_body=7, timeout=60) as client:
        stream = await client.connect()
        await stream.send_all(HANDSHAKE.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\nab"))
        start = trio.current_time()
        with trio.fail_after(60):  # (it used to wait forever)
            answer = await stream.receive_until_eof()
        assert trio.current_time() - start == 7
        assert answer.startswith(b"HTTP/1.1 408 ")
    assert log == []


async def test_upgrade_request_expecting_100_continue_gets_it(autojump_clock: Any) -> None:
    """An upgrade request announcing a body with Expect: 100-continue (odd for a GET, but
    valid): the server reads that body before judging the handshake, so it must first say
    100 (RFC 9110 10.1.1) instead of waiting for the 408."""
    log: list[Any] = []
    async with TestClient(session_app(log), timeout_request_body=7, timeout=60) as client:
        stream = await client.connect()
        expecting = b"\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        await stream.send_all(HANDSHAKE.replace(b"\r\n\r\n", expecting))
        with trio.fail_after(1):
            assert await stream.receive_some() == b"HTTP/1.1 100 Continue\r\n\r\n"
        await stream.send_all(b"hello")
        head = b""
        with trio.fail_after(1):
            while b"\r\n\r\n" not in head:
                head += await stream.receive_some()
        assert head.startswith(b"HTTP/1.1 101 ")
        await stream.send_all(build_frame(0x8, b"\x03\xe8", mask=True))
        with trio.fail_after(10):
            await stream.receive_until_eof()
    assert log == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]
