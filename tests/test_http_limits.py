"""Overload behaviour and per-connection limits: concurrency, max requests, slow clients."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_asgi import ClientDisconnected
from trio_asgi.testing import TestClient

from .conftest import raw_exchange, status_of

Scope = dict[str, Any]


async def hello(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_body_read_timeout_answers_408(autojump_clock: Any) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (message := await receive())["type"] == "http.request":
            seen.append(f"{len(message['body'])} bytes")
        seen.append(message["type"])

    async with TestClient(app, timeout_request_body=5) as client:
        stream = await client.connect()
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        start = trio.current_time()
        response = await stream.receive_until_eof()
    assert status_of(response) == 408
    assert trio.current_time() - start == pytest.approx(5)
    assert seen == ["3 bytes", "http.disconnect"]


async def test_trickled_body_within_the_per_read_timeout_is_fine(autojump_clock: Any) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message["body"]
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": body})

    async with TestClient(app, timeout_request_body=5) as client:
        stream = await client.connect()
        await stream.send_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        )
        for byte in b"hello":
            await trio.sleep(4)
            await stream.send_all(bytes([byte]))
        response = await stream.receive_until_eof()
    assert status_of(response) == 200 and b"hello" in response


async def test_write_timeout_drops_a_client_that_stops_reading(autojump_clock: Any) -> None:
    outcome: list[float] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        except ClientDisconnected:
            outcome.append(trio.current_time())

    async with TestClient(app, timeout_write=8) as client:
        async with client.stream("GET", "/") as response:
            response.pause_reading()
            start = trio.current_time()
            while not outcome:
                await trio.sleep(1)
            assert outcome[0] - start == pytest.approx(8)


async def test_limit_concurrency_stops_accepting() -> None:
    async with TestClient(hello, limit_concurrency=2) as client:
        first, second = await client.connect(), await client.connect()
        for stream in (first, second):  # two connections held open (keep-alive)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(await stream.receive_some()) == 200
        third = await client.connect()  # sits in the "backlog": not accepted
        await third.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.05):
            await third.receive_some()
            raise AssertionError("the third connection was served over the limit")
        await first.aclose()  # a slot frees up: the third is accepted and answered
        assert status_of(await third.receive_until_eof()) == 200
        await second.aclose()


async def test_limit_concurrency_503_mode() -> None:
    async with TestClient(hello, limit_concurrency=1, limit_concurrency_mode="503") as client:
        held = await client.connect()
        await held.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(await held.receive_some()) == 200
        over = await raw_exchange(await client.connect(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(over) == 503
        await held.aclose()


async def test_max_requests_per_connection() -> None:
    async with TestClient(hello, limit_max_requests_per_connection=2) as client:
        responses = [await client.get("/") for _ in range(5)]
    ids = [response.connection_id for response in responses]
    assert ids[0] == ids[1] != ids[2] == ids[3] != ids[4]
    assert responses[1].headers["connection"] == "close"
    assert "connection" not in responses[0].headers


async def test_max_requests_per_process_shuts_down_gracefully() -> None:
    async with TestClient(hello, limit_max_requests=3, keep_alive=False) as client:
        for _ in range(3):
            assert (await client.get("/")).status_code == 200
        with trio.fail_after(5):
            while not client.server.state.shutting_down:
                await trio.sleep(0.001)
        with pytest.raises(ConnectionRefusedError):
            await client.get("/")


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n folded\r\n\r\nhello",
        b"POST / HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX\x00: y\r\n\r\n",
    ],
)
async def test_request_smuggling_checklist(raw: bytes) -> None:
    """Ambiguous framing gets 400 (or 501) and a closed connection; the body never reaches
    the app and nothing after it is parsed as a second request."""
    received: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        received.append(await receive())
        await hello(scope, receive, send)

    async with TestClient(app) as client:
        response = await raw_exchange(
            await client.connect(), raw + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        )
    assert status_of(response) in (400, 501)
    assert response.count(b"HTTP/1.1") == 1
    # A bad head never reaches the app; a bad body reaches it only as a disconnect.
    assert received in ([], [{"type": "http.disconnect"}])
