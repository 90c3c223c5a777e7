"""WebSocket keepalive and timeouts, in virtual time (MockClock with autojump)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from trio_asgi import ClientDisconnected
from trio_asgi.config_file import load_config_file
from trio_asgi.testing import Binary, TestClient, WebSocketClosed, WebSocketDenied, build_frame

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


@pytest.mark.parametrize("source", ["python", "toml"])
async def test_ws_ping_timeout_zero_means_do_not_wait(
    source: str, tmp_path: Path, autojump_clock: Any
) -> None:
    """``--ws-ping-timeout`` help: "(0 or none: do not wait)", also from Python and from a
    config file, where 0 used to stay 0.0 and made every pong due the instant its ping was
    scheduled: each WebSocket closed with 1011 at its first ping."""
    settings: dict[str, Any] = {"ws_ping_interval": 5, "ws_ping_timeout": 0}
    if source == "toml":
        path = tmp_path / "server.toml"
        path.write_text('app = "x:app"\nws_ping_interval = 5\nws_ping_timeout = 0\n')
        _, settings = load_config_file(str(path))
    log: list[Any] = []
    async with TestClient(session_app(log), **settings) as client:
        async with client.websocket("/") as ws:
            await trio.sleep(30)
            assert ws.closed is None, f"closed by the server: {ws.closed}"
            assert ws.pings_received >= 5
    assert log == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


async def test_keepalive_does_not_time_out_a_ping_stuck_behind_our_own_data(
    autojump_clock: Any,
) -> None:
    """A client that reads steadily (64 KiB/s) is sent one 4 MiB message, 64 s on the wire.
    The keepalive ping queues behind it for the write lock; its pong is due from when it
    went out, not from when it was scheduled (the client used to be closed with 1011 at
    10 s for a ping that had never been sent)."""
    size = 4 * 1024 * 1024
    heard: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": b"x" * size})
        heard.append(await receive())

    async with TestClient(app, ws_ping_interval=5, ws_ping_timeout=5, ws_send_timeout=20) as client:
        stream = await client.connect(buffer_size=16 * 1024)
        await stream.send_all(HANDSHAKE)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(1)
        buffer = buffer.split(b"\r\n\r\n", 1)[1]
        frames: list[tuple[int, bytes]] = []
        with trio.fail_after(300):
            # read 16 KiB every 0.25 s, answer pings at once, until 40 s after the message
            done_at = None
            while done_at is None or trio.current_time() < done_at + 40:
                await trio.sleep(0.25)
                data = await stream.receive_some(16 * 1024)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 2:
                    length, offset = buffer[1] & 0x7F, 2
                    if length == 126:
                        length, offset = int.from_bytes(buffer[2:4], "big"), 4
                    elif length == 127:
                        length, offset = int.from_bytes(buffer[2:10], "big"), 10
                    if len(buffer) < offset + length:
                        break
                    opcode, payload = buffer[0] & 0x0F, buffer[offset : offset + length]
                    buffer = buffer[offset + length :]
                    frames.append((opcode, payload if opcode != 2 else b""))
                    if opcode == 0x2:
                        done_at = trio.current_time()
                    elif opcode == 0x9:
                        await stream.send_all(build_frame(0xA, payload))
                    elif opcode == 0x8:
                        await stream.send_all(build_frame(0x8, payload[:2]))
        closes = [payload for opcode, payload in frames if opcode == 0x8]
        assert closes == [], f"server closed a healthy client: {closes}, app heard {heard}"
        assert heard == []


async def test_send_cancelled_mid_frame_ends_the_session(autojump_clock: Any) -> None:
    """The app bounds a send with a timeout (a common way to shed slow clients) and the
    cancellation lands with the frame half written: the stream is unusable, so the session
    ends at once and the app hears it, as for a failed write (it used to stay open, the
    reader waiting on the socket and the client holding half a frame)."""
    heard = trio.Event()
    messages: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        with trio.move_on_after(1):
            await send({"type": "websocket.send", "bytes": b"x" * 1_000_000})
        messages.append(await receive())
        heard.set()

    outcome: list[Any] = []
    async with TestClient(
        app, ws_ping_interval=None, buffer_size=64 * 1024, timeout=None
    ) as client:
        async with client.websocket("/") as ws:
            ws.pause_reading()
            await trio.sleep(2)  # the app's send is cancelled with part of the frame out
            ws.pause_reading(False)
            # Either outcome is fine: the frame is completed after all (the client gets the
            # whole message), or the session ends (the app hears a disconnect). Not: neither.
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:

                    async def client_gets_something() -> None:
                        try:
                            event = await ws.receive()
                        except WebSocketClosed:
                            return  # the session ended: the app must hear it too
                        if isinstance(event, Binary) and not messages:
                            outcome.append(event)
                            nursery.cancel_scope.cancel()

                    async def app_hears_the_end() -> None:
                        await heard.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(client_gets_something)
                    nursery.start_soon(app_hears_the_end)
            first = list(outcome) or list(messages)
    assert first, "neither the client nor the app heard anything"
    if messages and first[0] is messages[0]:
        assert messages[0]["type"] == "websocket.disconnect"
    else:
        assert getattr(first[0], "data", None) == b"x" * 1_000_000, first


async def test_close_cancelled_before_its_frame_went_out_drops_the_connection(
    autojump_clock: Any,
) -> None:
    """The app's close waits for the write lock behind its own large send to a stalled
    client, and its timeout cancels it there: no close frame can follow, so the connection
    is dropped rather than left open with neither side ever closing (pings are off)."""
    heard: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, {"type": "websocket.send", "bytes": b"x" * 1_000_000})
            await trio.sleep(0.5)
            with trio.move_on_after(1):
                await send({"type": "websocket.close", "code": 4000})
            heard.append(await receive())
            await trio.sleep(5)
            nursery.cancel_scope.cancel()

    async with TestClient(
        app, ws_ping_interval=None, buffer_size=64 * 1024, timeout=None
    ) as client:
        async with client.websocket("/") as ws:
            ws.pause_reading()
            await trio.sleep(2)
            ws.pause_reading(False)
            with trio.fail_after(60):
                closed = await ws.wait_closed()
    assert closed.code == 1006
    assert heard == [{"type": "websocket.disconnect", "code": 4000, "reason": ""}]
