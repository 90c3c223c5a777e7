"""The handshake runs in the connection's task under --timeout-tls-handshake: stalled, plain-HTTP
and garbage clients cost only their own connection and are logged at debug level only."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from .conftest import TLSFiles, tls_server


def debug_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    return [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]


@pytest.mark.parametrize(("timeout", "expected"), [({}, 10.0), ({"timeout_tls_handshake": 3}, 3.0)])
async def test_stalled_handshake_is_dropped_after_the_timeout(
    tls: TLSFiles,
    autojump_clock: Any,
    caplog: pytest.LogCaptureFixture,
    timeout: dict[str, float],
    expected: float,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_asgi.error")
    async with tls_server(**tls.config, **timeout) as server:
        stalled = await server.connect_raw()
        await stalled.send_all(b"\x16\x03\x01")  # the start of a TLS record, then nothing
        start = trio.current_time()
        # Meanwhile other clients are served at once: the accept loop is not held up.
        status, _ = await server.get(tls.client_context())
        assert status == b"HTTP/1.1 200 OK"
        assert trio.current_time() == start
        assert await stalled.receive_until_eof() == b""
        assert trio.current_time() - start == pytest.approx(expected)
    assert f"TLS handshake with 127.0.0.1:40001 timed out after {expected:g}s" in debug_lines(
        caplog
    )


async def test_slow_handshake_within_the_timeout_is_served(
    tls: TLSFiles, autojump_clock: Any
) -> None:
    async with tls_server(**tls.config, timeout_tls_handshake=3) as server:
        stream = await server.connect(tls.client_context())
        await trio.sleep(2.5)
        await stream.do_handshake()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert (await stream.receive_some()).startswith(b"HTTP/1.1 200 OK")
        await stream.aclose()


async def test_plain_http_on_the_tls_port_gets_a_plain_400(
    tls: TLSFiles, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_asgi.error")
    async with tls_server(**tls.config) as server:
        raw = await server.connect_raw()
        await raw.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = await raw.receive_until_eof()
        await raw.aclose()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert body == b"This port speaks HTTPS: use an https:// URL.\r\n"
    assert "plain HTTP request from 127.0.0.1:40001 on a TLS port" in debug_lines(caplog)


async def test_garbage_instead_of_a_handshake_is_closed(
    tls: TLSFiles, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_asgi.error")
    async with tls_server(**tls.config) as server:
        raw = await server.connect_raw()
        await raw.send_all(b"\x00" * 64)
        assert await raw.receive_until_eof() == b""
        status, _ = await server.get(tls.client_context())
        assert status == b"HTTP/1.1 200 OK"
    [line] = [line for line in debug_lines(caplog) if "handshake" in line]
    assert line.startswith("TLS handshake with 127.0.0.1:40001 failed: ")


async def test_client_leaving_during_the_handshake(
    tls: TLSFiles, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_asgi.error")
    async with tls_server(**tls.config) as server:
        raw = await server.connect_raw()
        await raw.aclose()
        await trio.testing.wait_all_tasks_blocked()
    assert (
        "TLS handshake with 127.0.0.1:40001 failed: the client closed the connection"
        in debug_lines(caplog)
    )


async def test_shutdown_does_not_wait_for_pending_handshakes(
    tls: TLSFiles, autojump_clock: Any
) -> None:
    config = {**tls.config, "timeout_tls_handshake": 60, "timeout_graceful_shutdown": 30}
    async with tls_server(**config) as server:
        stalled = await server.connect_raw()
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        server.server.request_shutdown()
        assert await stalled.receive_until_eof() == b""
        assert trio.current_time() == start


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_tls_connection_is_closed_with_close_notify(tls: TLSFiles) -> None:
    """RFC 9112 9.8: "TLS implementations MUST initiate an exchange of closure alerts before
    closing a connection"; RFC 8446 6.1: each party MUST send close_notify before closing
    its write side. The server's listener is made with https_compatible=True, with which
    trio never sends close_notify: after a "Connection: close" response the server just
    drops TCP (connection.py's close_stream claims to "close politely (TLS close_notify)").
    A standard TLS client cannot tell that from a truncation attack."""
    with trio.fail_after(10):
        async with tls_server(_hello, **tls.config) as server:
            raw = await server.connect_raw()
            # A standard-conforming client (trio's default): a missing close_notify is an error.
            stream = trio.SSLStream(raw, tls.client_context(), server_hostname="localhost")
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            received = b""
            try:
                while chunk := await stream.receive_some():
                    received += chunk
            except trio.BrokenResourceError as exc:
                raise AssertionError(
                    f"the server closed without close_notify ({exc.__cause__!r}) after {received!r}"
                ) from None
            assert received.startswith(b"HTTP/1.1 200 ")
            assert received.endswith(b"5\r\nhello\r\n0\r\n\r\n")  # chunked, complete
