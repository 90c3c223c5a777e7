"""Concurrency and request limits, access-log lines, trailers and file bodies: each test here
once failed (a review found them) and pins the behaviour its docstring states."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_asgi
from trio_asgi import Config
from trio_asgi.server import Server
from trio_asgi.testing import TestClient, WebSocketDenied

from .test_http_limits import hello

Scope = dict[str, Any]


def _blocking_request(address: tuple[str, int], timeout: float) -> bytes:
    """One request on a fresh TCP connection, read until the server closes (thread)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
        return received


# -- --limit-concurrency ------------------------------------------------------------------------


async def test_limit_concurrency_backlog_serves_every_bind() -> None:
    """--limit-concurrency 1 with two binds: two requests, one after the other (each on its
    own connection, nothing else going on), must both be answered.

    Each accept loop takes a slot *before* it waits in accept(), so with two binds the idle
    accept loop of one bind holds the only slot while the other bind's clients wait in the
    kernel backlog (with N binds, N-1 slots are held by idle loops). Which bind starves
    depends on scheduling: it alternates after each connection, so two requests in a row
    to the same bind always meet the starved state once."""
    config = Config(bind=("127.0.0.1:0", "127.0.0.1:0"), limit_concurrency=1, access_log=False)
    responses: list[bytes] = []
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(trio_asgi.serve, hello, config)
        assert len(addresses) == 2
        with trio.fail_after(10):
            for _ in range(2):
                responses.append(
                    await trio.to_thread.run_sync(_blocking_request, addresses[0], 3.0)
                )
        nursery.cancel_scope.cancel()
    assert [r[:12] for r in responses] == [b"HTTP/1.1 200"] * 2, responses


async def test_limit_concurrency_503_counts_a_burst_of_connections() -> None:
    """--limit-concurrency 1 --limit-concurrency-mode 503: of three connections that arrive
    together, one is served and two get 503. The overload check counts
    ``state.connections``, but a connection joins it only when its task first runs; the
    accept loop takes the whole backlog (and decides "overloaded") before any of them ran,
    so all three are let through to the app."""
    config = Config(port=0, limit_concurrency=1, limit_concurrency_mode="503", access_log=False)
    release = trio.Event()
    in_app = 0

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        nonlocal in_app
        if scope["type"] != "http":
            return
        in_app += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    async with trio.open_nursery() as nursery:
        [address] = await nursery.start(trio_asgi.serve, app, config)
        # Three clients complete their TCP handshakes before the server looks (the kernel
        # queues them in the backlog), as a burst of clients does.
        socks = [socket.create_connection(address, timeout=5) for _ in range(3)]
        try:
            for sock in socks:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            statuses: list[bytes] = []

            def read_all(sock: socket.socket) -> bytes:
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
                return data

            with trio.fail_after(10):
                while in_app == 0:
                    await trio.sleep(0.01)
                await trio.sleep(0.5)  # time for the others to (wrongly) reach the app too
                seen_in_app = in_app
                release.set()
                for sock in socks:
                    statuses.append((await trio.to_thread.run_sync(read_all, sock))[:12])
        finally:
            for sock in socks:
                sock.close()
        nursery.cancel_scope.cancel()
    assert seen_in_app == 1, f"{seen_in_app} requests reached the app with limit 1"
    assert sorted(statuses) == [b"HTTP/1.1 200", b"HTTP/1.1 503", b"HTTP/1.1 503"]


# -- --limit-max-requests -----------------------------------------------------------------------


async def test_limit_max_requests_last_response_says_close() -> None:
    """With --limit-max-requests 2, the second request on a keep-alive connection is the
    last this server will answer: it shuts down and closes the connection right after. Its
    response should say ``Connection: close`` (the server does so for the last request of
    --limit-max-requests-per-connection and for heads written while shutting down; Gunicorn
    does it for max_requests), otherwise a keep-alive client sends its next request into a
    connection being closed and sees a reset instead of a retryable refusal. The request
    is only counted after its response, so the head never knows."""
    async with TestClient(hello, limit_max_requests=2) as client:
        stream = await client.connect()
        with trio.fail_after(10):
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b"0\r\n\r\n"):
                first += await stream.receive_some()
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            second = await stream.receive_until_eof()  # the server closes after it
    assert b"connection: close" not in first.lower()
    assert second.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in second.lower(), second


# -- access log ---------------------------------------------------------------------------------


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]


async def test_access_log_bytes_of_a_server_500(caplog: pytest.LogCaptureFixture) -> None:
    """README: ``{bytes}`` is "response body bytes sent". When the app crashes before its
    response, the server sends ``500`` with a 22-byte body; the line says 0."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raise RuntimeError("boom")

    async with TestClient(
        app, raise_app_exceptions=False, access_log_format="{status} {bytes}"
    ) as client:
        response = await client.get("/")
    assert response.status_code == 500
    assert _access_lines(caplog) == [f"500 {len(response.content)}"]


async def test_response_headers_of_a_server_500_are_the_ones_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``{response_header[...]}`` shows the head that went out: after a crash between
    ``http.response.start`` and the body, that is the server's 500, not the app's head,
    which never reached the client."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"x-app", b"1"), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise RuntimeError("boom")

    fmt = "{status} {response_header[x-app]} {response_header[content-type]}"
    async with TestClient(app, raise_app_exceptions=False, access_log_format=fmt) as client:
        response = await client.get("/")
    assert response.status_code == 500
    assert "x-app" not in response.headers
    assert _access_lines(caplog) == [f"500 - {response.headers['content-type']}"]


async def test_denied_websocket_handshake_gets_an_access_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """README: the access logger writes "one line per request and per WebSocket session".
    A handshake the app refuses (websocket.close before accept: 403; or a denial response)
    is a request answered with an HTTP status, but it is not logged at all (Uvicorn logs
    ``"WebSocket /path" 403``). Denied handshakes are what an operator looks for first
    (authentication failures)."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        if scope["path"] == "/denied":
            await send({"type": "websocket.close"})
        else:
            await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"no"})

    async with TestClient(app) as client:
        for path, status in (("/denied", 403), ("/unauthorized", 401)):
            with pytest.raises(WebSocketDenied) as denied:
                async with client.websocket(path):
                    pass
            assert denied.value.status_code == status
    lines = _access_lines(caplog)
    assert any("/denied" in line and "403" in line for line in lines), lines
    assert any("/unauthorized" in line and "401" in line for line in lines), lines


# -- trailers -----------------------------------------------------------------------------------


async def test_trailers_never_carry_framing_or_routing_fields() -> None:
    """RFC 9110 6.5.1: fields that describe framing or routing (Content-Length,
    Transfer-Encoding, Host, ...) cannot be processed outside the header section, and "a
    sender MUST NOT generate a trailer field unless the sender knows the corresponding
    header field name's definition permits the field to be sent in trailers". The server
    is the sender here; it writes whatever trailer fields the app passed, including a
    Content-Length that contradicts the body. (Dropping them, or refusing the message,
    both satisfy this test.)"""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        try:
            await send(
                {
                    "type": "http.response.trailers",
                    "headers": [
                        (b"content-length", b"999"),
                        (b"transfer-encoding", b"chunked"),
                        (b"host", b"elsewhere.example"),
                        (b"x-checksum", b"abc"),
                    ],
                }
            )
        except Exception:  # a refusal is a fine outcome
            pass

    async with TestClient(app, raise_app_exceptions=False) as client:
        stream = await client.connect()
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n"
        )
        with trio.fail_after(10):
            raw = await stream.receive_until_eof()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"200" in head.split(b"\r\n")[0]
    trailer_section = body.lower().split(b"\r\n0\r\n", 1)[-1]
    for name in (b"content-length", b"transfer-encoding", b"host"):
        assert name + b":" not in trailer_section, raw


# -- pathsend / zerocopysend --------------------------------------------------------------------


def _slow_reader(address: tuple[str, int], seconds: float) -> tuple[str, int, float]:
    """GET, then read 8 KiB every 0.1 s (80 KiB/s) for at most ``seconds``: how it ended."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(5)
    start = time.monotonic()
    received = 0
    try:
        sock.connect(address)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        while time.monotonic() - start < seconds:
            data = sock.recv(8192)
            if not data:
                return "closed", received, time.monotonic() - start
            received += len(data)
            time.sleep(0.1)
    except OSError:
        return "closed", received, time.monotonic() - start
    finally:
        sock.close()
    return "still open", received, time.monotonic() - start


async def test_pathsend_write_timeout_is_per_256_kib_like_other_bodies(tmp_path: Path) -> None:
    """--timeout-write: "Seconds a client may take to accept each 256 KiB of a response
    before it is considered stalled and disconnected". A client taking 80 KiB/s (3.2 s per
    256 KiB) with --timeout-write 1 is dropped after ~2 s when the body comes as
    http.response.body messages, but the sendfile path applies the timeout to each wait for
    writability (a few KiB), so the same client holds a pathsend response for as long as
    it likes (slow-read attack on file downloads)."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(4 << 20))

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.pathsend", "path": str(path)})

    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    # small kernel buffers, so that the client's pace shows within seconds
    listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
    address = listener.socket.getsockname()
    server = Server(app, Config(timeout_write=1.0, access_log=False))
    async with trio.open_nursery() as nursery:

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await server.serve(listeners=[listener], task_status=task_status)

        await nursery.start(run)
        with trio.fail_after(10):
            outcome = await trio.to_thread.run_sync(_slow_reader, address, 7.0)
        nursery.cancel_scope.cancel()
    assert outcome[0] == "closed", f"a 80 KiB/s reader was never dropped: {outcome}"
