"""Autobahn 7.x: the closing handshake, close codes and reasons.

The server echoes the client's close (code and reason), then closes TCP itself (RFC 6455
7.1.1); a malformed close fails with 1002, or 1007 for a reason that is not UTF-8. The
codes that only report local events (1005, 1006, 1015) never appear on the wire, but reach
the app in ``websocket.disconnect``.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from trio_asgi.asgi.websocket import CLOSE_HANDSHAKE_TIMEOUT

from .wire import (
    CLOSE,
    CONTINUATION,
    PING,
    TEXT,
    Close,
    Text,
    close_payload,
    frame,
    serve,
)

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999]
VALID_CODES += [4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]
OUT_OF_RANGE_CODES = [5000, 65535]  # 7.13.x: Autobahn only reports what happens

# wsproto's CloseReason enum lacks 1014, and wsproto rejects unknown codes below 3000.
CODE_1014 = (
    "close code 1014 (Bad Gateway, IANA-registered, RFC 6455 7.4.2) from the client is "
    "treated as invalid: wsproto's _process_close fails it with 1002 because its CloseReason "
    "enum has no 1014; expected the echo of 1014 (the server itself may send 1014)"
)


async def test_7_1_1_message_then_client_close(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(TEXT, b"Hello World!"))
        assert await peer.receive() == Text("Hello World!")
        assert await peer.close(1000) == Close(1000)
        assert await server.app.disconnect() == (1000, "")


async def test_7_1_2_second_close_is_ignored(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(CLOSE, close_payload(1000)), frame(CLOSE, close_payload(1001)))
        await peer.expect_close(1000)
        assert await server.app.disconnect() == (1000, "")


async def test_7_1_3_ping_after_close_gets_no_pong(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(CLOSE, close_payload(1000)), frame(PING, b"too late"))
        await peer.expect_close(1000)


async def test_7_1_4_text_after_close_is_ignored(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(CLOSE, close_payload(1000)), frame(TEXT, b"too late"))
        await peer.expect_close(1000)
        assert await server.app.disconnect() == (1000, "")
        assert server.app.received == 0


async def test_7_1_5_close_between_fragments(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(
            frame(TEXT, b"fragment1", fin=False),
            frame(CLOSE, close_payload(1000)),
            frame(CONTINUATION, b"fragment2"),
        )
        await peer.expect_close(1000)
        assert server.app.received == 0


async def test_7_1_6_big_message_close_and_ping(autojump_clock: MockClock) -> None:
    """Informational in Autobahn: the echoes may or may not make it before the close."""
    big = b"BAsd7&jh23" * (256 * 1024 // 10)
    async with serve() as server:
        peer = await server.connect()
        await peer.send(
            frame(TEXT, big),
            frame(TEXT, b"Hello World!"),
            frame(CLOSE, close_payload(1000)),
            frame(PING, b""),
        )
        received = []
        while (next_frame := await peer.receive()).opcode != CLOSE:
            received.append(next_frame)
        assert next_frame == Close(1000)
        await peer.expect_eof()
        assert received in ([], [Text(big)], [Text(big), Text("Hello World!")])


async def test_7_3_1_close_without_code_is_echoed_without_code(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        assert await peer.close(None) == Close(None)  # not 1005: that never goes on the wire
        assert await server.app.disconnect() == (1005, "")


async def test_7_3_2_close_with_one_byte_is_1002(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(CLOSE, b"\x03"))
        await peer.expect_close(1002)
        assert (await server.app.disconnect())[0] == 1002


@pytest.mark.parametrize(
    "reason",
    [b"", b"Hello World!", "Größe".encode(), b"r" * 123],
    ids=["7.3.3", "7.3.4", "utf8", "7.3.5"],
)
async def test_7_3_close_code_and_reason_are_echoed(
    autojump_clock: MockClock, reason: bytes
) -> None:
    async with serve() as server:
        peer = await server.connect()
        assert await peer.close(1000, reason) == Close(1000, reason)
        assert await server.app.disconnect() == (1000, reason.decode())


async def test_7_3_6_close_reason_of_124_bytes_is_1002(autojump_clock: MockClock) -> None:
    # 2 + 124 = 126 bytes: more than a control frame may carry.
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(CLOSE, close_payload(1000, b"r" * 124)))
        await peer.expect_close(1002)
        assert (await server.app.disconnect())[0] == 1002


@pytest.mark.parametrize(
    "reason",
    [bytes.fromhex("cebae1bdb9cf83cebcceb5eda080656469746564"), b"\xff", b"ok\xc0"],
    ids=["7.5.1-surrogate", "ff", "truncated-overlong"],
)
async def test_7_5_1_close_reason_not_utf8_is_1007(
    autojump_clock: MockClock, reason: bytes
) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(CLOSE, close_payload(1000, reason)))
        await peer.expect_close(1007)
        assert (await server.app.disconnect())[0] == 1007


@pytest.mark.parametrize(
    "code",
    [
        *VALID_CODES,
        pytest.param(1014, marks=pytest.mark.xfail(strict=True, reason=CODE_1014)),
    ],
)
async def test_7_7_valid_close_codes_are_echoed(autojump_clock: MockClock, code: int) -> None:
    async with serve() as server:
        peer = await server.connect()
        assert await peer.close(code) == Close(code)
        assert await server.app.disconnect() == (code, "")


@pytest.mark.parametrize("code", INVALID_CODES + OUT_OF_RANGE_CODES)
async def test_7_9_7_13_invalid_close_codes_are_1002(autojump_clock: MockClock, code: int) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(CLOSE, close_payload(code)))
        await peer.expect_close(1002)
        assert (await server.app.disconnect())[0] == 1002


@pytest.mark.parametrize("chop", [1, None])
async def test_close_frame_read_in_pieces(autojump_clock: MockClock, chop: int | None) -> None:
    async with serve() as server:
        peer = await server.connect()
        peer.chop(chop)
        assert await peer.close(4321, b"split reason") == Close(4321, b"split reason")


async def test_app_close_waits_for_the_answer_and_ignores_data(autojump_clock: MockClock) -> None:
    """The app closes: its code and reason go out; data that crosses the close is dropped,
    pings are not answered any more, and TCP closes once the peer answered."""
    async with serve() as server:
        peer = await server.connect("/close")
        await peer.send(frame(TEXT, b"4000 bye now"))
        assert await peer.receive() == Close(4000, b"bye now")
        await peer.send(frame(TEXT, b"crossing the close"), frame(PING, b"p"))
        await peer.expect_nothing()  # the server waits for our close frame
        await peer.send(frame(CLOSE, close_payload(4000)))
        await peer.expect_eof()
        assert await server.app.disconnect() == (4000, "bye now")
        assert server.app.received == 1


async def test_app_close_unanswered_drops_tcp_after_the_timeout(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect("/close")
        await peer.send(frame(TEXT, b"1001"))
        assert await peer.receive() == Close(1001)
        start = trio.current_time()
        await peer.expect_eof(timeout=2 * CLOSE_HANDSHAKE_TIMEOUT)
        assert trio.current_time() - start == pytest.approx(CLOSE_HANDSHAKE_TIMEOUT)


async def test_client_gone_without_close_is_1006_for_the_app_only(
    autojump_clock: MockClock,
) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(TEXT, b"half a message", fin=False))
        await peer.stream.send_eof()
        await peer.expect_eof()  # no close frame: nobody is left to read a 1006
        assert await server.app.disconnect() == (1006, "")


async def test_client_reset_is_1006_for_the_app(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(TEXT, b"hello"))
        assert await peer.receive() == Text("hello")
        peer.stream.abort()
        assert await server.app.disconnect() == (1006, "")


async def test_server_shutdown_closes_with_1001(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect()
        server.client.server.request_shutdown()
        assert await peer.receive() == Close(1001)
        await peer.send(frame(CLOSE, close_payload(1001)))
        await peer.expect_eof()
        assert (await server.app.disconnect())[0] == 1001
