"""Streaming and bounds of the WSGI adaptor: uploads in bounded memory, responses with
backpressure, disconnects, the thread limiter, shutdown, and a real socket."""

from __future__ import annotations

import hashlib
import logging
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_asgi import ClientDisconnected, Config, Server
from trio_asgi.testing import TestClient, serve_in_background
from trio_asgi.wsgi import WSGIAdaptor

from .wsgi_helpers import THREAD_WAIT, Flag, Gate, wait_in_thread

Environ = dict[str, Any]

MiB = 1024 * 1024
UPLOAD_CHUNK = 64 * 1024
UPLOAD_SIZE = 50 * MiB


async def upload_body(size: int = UPLOAD_SIZE) -> AsyncIterator[bytes]:
    """``size`` bytes sent chunked, without ever holding more than one chunk."""
    chunk = bytes(range(256)) * (UPLOAD_CHUNK // 256)
    for _ in range(size // UPLOAD_CHUNK):
        yield chunk


def expected_digest(size: int = UPLOAD_SIZE) -> str:
    digest = hashlib.sha256()
    chunk = bytes(range(256)) * (UPLOAD_CHUNK // 256)
    for _ in range(size // UPLOAD_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


# -- uploads ---------------------------------------------------------------------------------


async def test_50_mib_upload_streams_through_in_bounded_memory() -> None:
    """The app reads the body in 64 KiB pieces as it arrives; nothing holds it whole.

    tracemalloc sees every allocation in the process (server, client, app thread), so its
    peak is an upper bound on what the upload cost: a fraction of the body's 50 MiB.
    """
    reads: list[int] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        digest = hashlib.sha256()
        stream = environ["wsgi.input"]
        while chunk := stream.read(UPLOAD_CHUNK):
            reads.append(len(chunk))
            digest.update(chunk)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [digest.hexdigest().encode()]

    async with TestClient(app, interface="wsgi") as client:
        tracemalloc.start()
        try:
            response = await client.post("/upload", content=upload_body())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 200
    assert response.text == expected_digest()
    assert sum(reads) == UPLOAD_SIZE
    assert max(reads) <= UPLOAD_CHUNK
    assert len(reads) >= UPLOAD_SIZE // UPLOAD_CHUNK
    assert peak < 4 * MiB, f"peak {peak / MiB:.1f} MiB during a 50 MiB upload"


async def test_client_leaving_mid_upload_raises_in_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A truncated body is an error the app sees (an OSError), never a silent short read;
    and the server treats it as the client's doing, not the app's: nothing is logged."""
    halfway = Flag()
    outcome = Flag()

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        received = 0
        try:
            while chunk := environ["wsgi.input"].read(1000):
                received += len(chunk)
                if received == 5000:
                    halfway.set()
        except OSError as exc:
            outcome.set((received, exc))
            raise
        outcome.set((received, None))
        start_response("200 OK", [])
        return []

    with caplog.at_level(logging.INFO, logger="trio_asgi"):
        async with TestClient(app, interface="wsgi") as client:
            stream = await client.connect()
            head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            await stream.send_all(head + b"a" * 5000)
            await halfway.wait()
            stream.abort()
            received, error = await outcome.wait()
    assert received == 5000
    assert isinstance(error, ClientDisconnected)
    assert "before sending the whole body" in str(error)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_request_cancelled_during_a_body_read_lets_go_of_the_connection() -> None:
    """A router that gives up on a WSGI app (a timeout around it) answers by itself and the
    connection goes on: the body read the app's thread had started in the server is ended
    with the request, instead of reading the socket behind the server's back."""
    outcome = Flag()

    def reader(environ: Environ, start_response: Any) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            outcome.set(exc)
            raise
        start_response("200 OK", [])
        return []

    wsgi = WSGIAdaptor(reader)

    async def router(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"still here"})
            return
        reads = 0
        second_read = trio.Event()

        async def counted_receive() -> Any:
            nonlocal reads
            reads += 1
            if reads == 2:  # the thread took the first chunk and waits for more
                second_read.set()
            return await receive()

        with trio.CancelScope() as give_up:
            async with trio.open_nursery() as nursery:

                async def watchdog() -> None:
                    await second_read.wait()
                    give_up.cancel()

                nursery.start_soon(watchdog)
                await wsgi(scope, counted_receive, send)
        headers = [(b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 504, "headers": headers})
        await send({"type": "http.response.body"})

    async with TestClient(router) as client:
        stream = await client.connect()
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n12345")
        response = b""
        with trio.fail_after(THREAD_WAIT):
            while b"\r\n\r\n" not in response:
                response += await stream.receive_some()
        assert response.startswith(b"HTTP/1.1 504 ")
        assert isinstance(await outcome.wait(), ClientDisconnected)
        # The rest of the body, then the next request on the same connection.
        await stream.send_all(b"678901234567890" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(THREAD_WAIT):
            while b"still here" not in response:
                more = await stream.receive_some()
                assert more, f"connection closed: {response!r}"
                response += more


# -- streaming responses ---------------------------------------------------------------------


class Producer:
    """An endless response iterable that counts what it made and records close()."""

    def __init__(self, chunk_size: int) -> None:
        self.chunk = b"x" * chunk_size
        self.produced = 0
        self.condition = threading.Condition()
        self.closed = Flag()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            with self.condition:
                self.produced += 1
                self.condition.notify_all()
            yield self.chunk

    def close(self) -> None:
        self.closed.set()

    async def wait_for(self, count: int) -> None:
        await wait_in_thread(lambda: self.produced >= count, self.condition)


async def test_slow_client_holds_the_app_back() -> None:
    """Each chunk is sent before the next is asked for: with the client not reading, the app
    stops once the transport's buffer (here 64 KiB) and one chunk in flight are full."""
    producer = Producer(chunk_size=16 * 1024)

    def app(environ: Environ, start_response: Any) -> Producer:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return producer

    async with (
        TestClient(app, interface="wsgi", buffer_size=64 * 1024) as client,
        client.stream("GET", "/") as response,
    ):
        response.pause_reading()
        await producer.wait_for(3)
        # Give an app that could run ahead every chance to: it must stay stuck.
        await trio.sleep(0.2)
        stalled_at = producer.produced
        assert stalled_at <= 64 // 16 + 2, f"the app ran {stalled_at} chunks ahead"
        response.pause_reading(False)
        received = 0
        async for piece in response.aiter_bytes():
            received += len(piece)
            if received >= 100 * 16 * 1024:
                break
        assert producer.produced >= 100
        response.drop()
    assert await producer.closed.wait()


async def test_client_disconnect_stops_the_iteration_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = Producer(chunk_size=4096)

    def app(environ: Environ, start_response: Any) -> Producer:
        start_response("200 OK", [])
        return producer

    with caplog.at_level(logging.INFO, logger="trio_asgi"):
        async with TestClient(app, interface="wsgi") as client:
            async with client.stream("GET", "/") as response:
                assert await response.receive_chunk()
                response.drop()
            assert await producer.closed.wait()
            stopped_at = producer.produced
    assert producer.produced == stopped_at  # not asked for more after close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_generator_cleanup_runs_on_disconnect() -> None:
    cleaned_up = Flag()

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            while True:
                yield b"event\n"
        finally:
            cleaned_up.set()

    async with TestClient(app, interface="wsgi") as client:
        async with client.stream("GET", "/events") as response:
            assert await response.receive_chunk()
            response.drop()
        assert await cleaned_up.wait()


# -- threads ---------------------------------------------------------------------------------


async def test_slow_wsgi_requests_do_not_hold_up_asgi_traffic() -> None:
    """A router sends /wsgi to a WSGI app limited to 3 threads and everything else to an
    async handler. With 10 WSGI requests stuck, 3 run and 7 wait for a thread, and the async
    requests on the same server are answered all the while."""
    gate = Gate()

    def slow(environ: Environ, start_response: Any) -> list[bytes]:
        gate.pass_through()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi done"]

    wsgi = WSGIAdaptor(slow, threads=3)

    async def router(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/wsgi"):
            await wsgi(scope, receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"async done"})

    results: list[bytes] = []

    async def wsgi_request(client: TestClient) -> None:
        results.append((await client.get("/wsgi")).content)

    async with TestClient(router, lifespan="off") as client, trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(wsgi_request, client)
        await gate.wait_inside(3)
        await trio.testing.wait_all_tasks_blocked()
        assert wsgi.limiter.statistics().borrowed_tokens == 3
        assert wsgi.limiter.statistics().tasks_waiting == 7
        for _ in range(20):
            assert (await client.get("/async")).content == b"async done"
        assert gate.inside == 3 and gate.entered == 3  # the WSGI side is still stuck
        gate.release()
    assert results == [b"wsgi done"] * 10
    assert gate.peak == 3


async def test_wsgi_threads_setting_limits_the_app() -> None:
    gate = Gate()

    def slow(environ: Environ, start_response: Any) -> list[bytes]:
        gate.pass_through()
        start_response("200 OK", [])
        return [b"done"]

    statuses: list[int] = []

    async def request(client: TestClient) -> None:
        statuses.append((await client.get("/")).status_code)

    async with (
        TestClient(slow, interface="wsgi", wsgi_threads=2) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(6):
            nursery.start_soon(request, client)
        await gate.wait_inside(2)
        await trio.testing.wait_all_tasks_blocked()
        assert gate.entered == 2
        gate.release()
    assert statuses == [200] * 6
    assert gate.peak == 2


def test_server_builds_the_adaptor_from_config() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        return []

    server = Server(app, Config(interface="wsgi", wsgi_threads=7))
    assert isinstance(server.state.app, WSGIAdaptor)
    assert server.state.app.threads == 7


async def test_shutdown_does_not_wait_for_a_stuck_thread() -> None:
    """A thread cannot be interrupted: once the drain deadline passes the server stops
    waiting for it; when the thread wakes up, its next send fails and close() runs."""
    gate = Gate()
    body_closed = Flag()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"late"

        def close(self) -> None:
            body_closed.set()

    def stuck(environ: Environ, start_response: Any) -> Body:
        gate.pass_through()
        start_response("200 OK", [])
        return Body()

    failures: list[BaseException] = []

    async def request(client: TestClient) -> None:
        try:
            await client.get("/")
        except Exception as exc:
            failures.append(exc)

    with trio.fail_after(10):  # real seconds; without the fix this never returns
        async with (
            TestClient(stuck, interface="wsgi", timeout_graceful_shutdown=0.1) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(request, client)
            await gate.wait_inside(1)
            await client.shutdown()
    assert len(failures) == 1  # the client saw the connection close, without a response
    assert not body_closed.is_set()
    gate.release()
    assert await body_closed.wait()


# -- a real socket ---------------------------------------------------------------------------


async def test_over_a_real_socket_with_httpx() -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        size = 0
        while chunk := environ["wsgi.input"].read(UPLOAD_CHUNK):
            size += len(chunk)
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"received %d\n" % size
        for index in range(3):
            yield b"line %d\n" % index

    async with (
        serve_in_background(app, interface="wsgi", access_log=False) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.post("/", content=upload_body(4 * MiB))
        streamed = []
        async with http.stream("GET", "/") as response_stream:
            async for line in response_stream.aiter_lines():
                streamed.append(line)
    assert response.text == "received 4194304\nline 0\nline 1\nline 2\n"
    assert streamed == ["received 0", "line 0", "line 1", "line 2"]


def test_a_thread_that_outlives_the_server_gets_client_disconnected() -> None:
    """README: a thread the server stopped waiting for gets ClientDisconnected from its next
    call into the server, also once the server's trio run has ended (it got trio's
    RunFinishedError)."""
    started = threading.Event()
    release = threading.Event()
    outcome: list[BaseException] = []
    done = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        started.set()
        release.wait(THREAD_WAIT)
        try:
            write(b"too late")
        except BaseException as exc:
            outcome.append(exc)
        done.set()
        return []

    async def main() -> None:
        config = {"interface": "wsgi", "timeout_graceful_shutdown": 0, "access_log": False}
        async with serve_in_background(app, **config) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await trio.to_thread.run_sync(started.wait, THREAD_WAIT)
        await stream.aclose()

    trio.run(main)  # returns without waiting for the app's thread
    release.set()
    assert done.wait(THREAD_WAIT)
    assert len(outcome) == 1 and isinstance(outcome[0], ClientDisconnected), outcome
