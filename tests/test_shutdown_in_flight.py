"""Requests in flight when a graceful stop begins are finished, not failed.

In a rolling restart the retiring worker may accept a connection a moment before it is told
to stop; the client has sent its request already, and closing the connection would fail it
although other workers keep serving. Such a connection gets ``FIRST_REQUEST_GRACE``. An app
still reading a request body (an upload) gets the rest of it. And when the server is
replaced, idle keep-alive connections run to their timeout instead of being closed under a
request that may be on its way.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from trio_asgi.connection import FIRST_REQUEST_GRACE, SERVICE_RESTART
from trio_asgi.testing import TestClient

from .conftest import status_of


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":  # count the body, taking a second for each piece
        size = 0
        while True:
            message = await receive()
            assert message["type"] == "http.request", message
            size += len(message["body"])
            if not message["more_body"]:
                break
            await trio.sleep(1)  # busy: the next receive() comes after the stop began
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": str(size).encode()})
        return
    if scope["path"] == "/stream":  # a second between the head and the end
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await trio.sleep(1)
        await send({"type": "http.response.body", "body": b"b"})
        return
    await send({"type": "http.response.start", "status": 204})
    await send({"type": "http.response.body"})


async def test_request_arriving_after_the_stop_on_a_new_connection_is_served(
    autojump_clock: Any,
) -> None:
    async with TestClient(app, lifespan="off") as client:
        fresh = await client.connect()
        await trio.testing.wait_all_tasks_blocked()  # accepted, waiting for the request
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.shutdown)
            await trio.testing.wait_all_tasks_blocked()
            await fresh.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = await fresh.receive_until_eof()
        assert status_of(response) == 204
        assert b"connection: close" in response.lower()


async def test_silent_new_connection_is_closed_after_the_grace(autojump_clock: Any) -> None:
    async with TestClient(app, lifespan="off", timeout_request_header=60) as client:
        silent = await client.connect()
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.shutdown)
            assert await silent.receive_until_eof() == b""
        assert trio.current_time() - start == FIRST_REQUEST_GRACE


async def test_old_silent_connection_is_closed_at_once(autojump_clock: Any) -> None:
    # A browser's speculative preconnect: accepted long ago, never used.
    async with TestClient(app, lifespan="off", timeout_request_header=60) as client:
        silent = await client.connect()
        await trio.sleep(FIRST_REQUEST_GRACE * 5)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.shutdown)
            assert await silent.receive_until_eof() == b""
        assert trio.current_time() == start


async def test_upload_in_flight_is_read_to_the_end(autojump_clock: Any) -> None:
    async with TestClient(app, lifespan="off") as client:
        upload = await client.connect()
        await upload.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        async with trio.open_nursery() as nursery:
            await trio.sleep(0.5)  # (virtual time) the app is busy with the first half
            nursery.start_soon(client.shutdown)
            await upload.send_all(b"56789")
            response = await upload.receive_until_eof()
        assert status_of(response) == 200
        assert b"\r\n10\r\n" in response, response


async def read_head(stream: Any) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some()
    return data


async def test_replaced_server_serves_what_comes_on_idle_keep_alive_connections(
    autojump_clock: Any,
) -> None:
    """Stopping with 1012 (another process takes over), an idle keep-alive connection is
    left to its timeout: a client may be reusing it right now."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    async with TestClient(app, lifespan="off", timeout_keep_alive=5) as client:
        reused, unused = await client.connect(), await client.connect()
        for stream in (reused, unused):
            await stream.send_all(request)
            assert status_of(await read_head(stream)) == 204
        start = trio.current_time()
        client.server.request_shutdown(SERVICE_RESTART)
        await trio.testing.wait_all_tasks_blocked()
        await reused.send_all(request)  # a moment after the stop began
        response = await reused.receive_until_eof()
        assert status_of(response) == 204
        assert b"connection: close" in response.lower()
        assert await unused.receive_until_eof() == b""
        assert trio.current_time() - start == 5  # its keep-alive timeout, not sooner
        await client.shutdown()


async def test_replaced_server_keeps_the_keep_alive_its_response_promised(
    autojump_clock: Any,
) -> None:
    """A response whose head went out before the stop said keep-alive: the client may reuse
    the connection as soon as the body ends, so it is not closed under it."""
    async with TestClient(app, lifespan="off") as client:
        stream = await client.connect()
        await stream.send_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await read_head(stream)
        assert b"connection: close" not in head.lower()  # keep-alive promised
        client.server.request_shutdown(SERVICE_RESTART)
        rest = head.split(b"\r\n\r\n", 1)[1]
        while not rest.endswith(b"0\r\n\r\n"):  # the last chunk comes after the stop
            rest += await stream.receive_some()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # reused at once
        response = await stream.receive_until_eof()
        assert status_of(response) == 204
        assert b"connection: close" in response.lower()
