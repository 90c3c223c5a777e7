"""Work an app does after its response does not hold back its connection's next request.

Starlette's ``BackgroundTasks``, a final log flush or metrics push: the app keeps running
once its response is complete. The client has its answer and sends its next request on the
same keep-alive connection; that request is served at once, as by Uvicorn and Hypercorn,
while the first app finishes in its own time.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi.testing import TestClient


class LingeringApp:
    """``/bg`` answers, then keeps running until ``release`` is set; others just answer."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.finished: list[str] = []
        self.after: list[dict[str, Any]] = []  # what receive() gave the lingering app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "hi"})
            await send({"type": "websocket.close"})
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": path.encode()})
        if path.startswith("/bg"):
            await self.release.wait()
            self.after.append(await receive())
            if path == "/bg-crash":
                raise RuntimeError("background task failed")
            self.finished.append(path)


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, count: int = 1) -> bytes:
    received = b""
    with trio.fail_after(5):
        while received.count(marker) < count:
            received += await stream.receive_some(65536)
    return received


async def test_next_request_is_served_while_the_app_still_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = LingeringApp()
    async with TestClient(app, timeout=5) as client:
        first = await client.get("/bg")
        assert first.text == "/bg"
        second = await client.get("/next")  # the first app is still running
        assert second.text == "/next"
        third = await client.get("/again")
        assert first.connection_id == second.connection_id == third.connection_id
        assert app.finished == []
        app.release.set()
        # The lingering app hears that its response is done, then returns.
        with trio.fail_after(1):
            while not app.finished:
                await trio.sleep(0.01)
        assert app.after == [{"type": "http.disconnect"}]
        assert app.finished == ["/bg"]


async def test_pipelined_request_is_served_while_the_app_still_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = LingeringApp()
    async with TestClient(app, timeout=5) as client:
        stream = await client.connect()
        await stream.send_all(
            b"GET /bg HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        received = await read_until(stream, b"\r\n0\r\n\r\n", count=2)  # two chunked bodies
        assert received.count(b"HTTP/1.1 200 OK") == 2 and b"5\r\n/next\r\n" in received
        assert app.finished == []
        app.release.set()
        await stream.aclose()


def count_tasks() -> int:
    def tasks_under(task: trio.lowlevel.Task) -> int:
        return 1 + sum(
            tasks_under(child) for nursery in task.child_nurseries for child in nursery.child_tasks
        )

    return tasks_under(trio.lowlevel.current_root_task())


async def test_many_lingering_apps_on_one_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each handoff starts the connection's next loop; all the apps finish in the end, and
    the tasks that ran them are gone (a keep-alive connection from a proxy may carry
    millions of requests: finished tasks must not pile up waiting on each other)."""
    app = LingeringApp()
    async with TestClient(app, timeout=5) as client:
        responses = [await client.get(f"/bg{i}") for i in range(20)]
        assert len({response.connection_id for response in responses}) == 1
        assert (await client.get("/last")).text == "/last"
        app.release.set()
        with trio.fail_after(1):
            while len(app.finished) < 20:
                await trio.sleep(0.01)
        assert sorted(app.finished) == sorted(f"/bg{i}" for i in range(20))
        await trio.sleep(0.1)
        tasks = count_tasks()
        # One more request on the connection that another task took over: as many tasks.
        assert (await client.get("/more")).text == "/more"
        assert count_tasks() == tasks
        assert tasks < 20


async def test_websocket_upgrade_after_a_lingering_app(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The task that took the connection over also serves a WebSocket on it."""
    app = LingeringApp()
    async with TestClient(app, timeout=5) as client:
        stream = await client.connect()
        await stream.send_all(b"GET /bg HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_until(stream, b"\r\n0\r\n\r\n")
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        received = await read_until(stream, b"\x81\x02hi")  # the app's text, unmasked
        assert received.startswith(b"HTTP/1.1 101 ")
        assert app.finished == []
        app.release.set()
        await stream.aclose()


@pytest.mark.parametrize("hang", [0, 1], ids=["at-once", "later"])
async def test_crash_after_the_response_is_logged_and_the_connection_lives_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, hang: float
) -> None:
    """The failed work after the response is the app's error to report; the client got a
    complete answer, and its later requests on the connection are not failed for it,
    whether the app failed at once or after the next request was taken elsewhere."""
    app = LingeringApp()
    async with TestClient(app, timeout=5, raise_app_exceptions=False) as client:
        first = await client.get("/bg-crash")
        assert first.status_code == 200
        await trio.sleep(hang)
        app.release.set()
        await trio.sleep(1)  # the app crashes meanwhile
        second = await client.get("/next")
        assert second.text == "/next"
        assert second.connection_id == first.connection_id
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Exception in ASGI application" in errors[0].getMessage()


async def test_graceful_stop_waits_for_the_lingering_app(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The idle connection is closed at once; the app's work after its response is in
    flight like any other and finishes within the drain deadline."""
    app = LingeringApp()

    async def release_later() -> None:
        await trio.sleep(3)
        app.release.set()

    async with TestClient(app, timeout=5, timeout_graceful_shutdown=10) as client:
        assert (await client.get("/bg")).status_code == 200
        assert (await client.get("/next")).status_code == 200
        async with trio.open_nursery() as nursery:
            nursery.start_soon(release_later)
            started = trio.current_time()
            await client.shutdown()
            assert 3 <= trio.current_time() - started < 4
    assert app.finished == ["/bg"]


async def test_request_limit_per_connection_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The last request a connection may take is not followed by another one on it."""
    app = LingeringApp()
    async with TestClient(app, timeout=5, limit_max_requests_per_connection=1) as client:
        first = await client.get("/bg")
        assert first.headers["connection"] == "close"
        second = await client.get("/next")
        assert second.connection_id != first.connection_id
        app.release.set()


async def test_access_log_line_comes_with_the_response(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A request's line is written once its response is complete, with the time the
    response took: the work the app does after it is not what the client waited for."""
    app = LingeringApp()
    caplog.set_level(logging.INFO, logger="trio_asgi.access")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]

    fmt = "{request_line} {status} {duration_s:.1f}"
    async with TestClient(app, timeout=5, access_log_format=fmt) as client:
        assert (await client.get("/bg")).status_code == 200
        await trio.sleep(10)  # the app runs on
        assert lines() == ["GET /bg HTTP/1.1 200 0.0"]
        assert (await client.get("/next")).status_code == 200
        app.release.set()
        with trio.fail_after(1):
            while not app.finished:
                await trio.sleep(0.01)
    assert lines() == ["GET /bg HTTP/1.1 200 0.0", "GET /next HTTP/1.1 200 0.0"]


async def test_test_client_still_raises_app_errors_after_a_handoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The task that takes a connection over runs in the connection's context, as the
    task it took over from: here the test client tells its connections apart by it (the
    client address in the scope is the forwarded one)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/fail":
            raise ValueError("the app's own error")
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})
        await trio.sleep(1)

    config = {"proxy_headers": True, "forwarded_allow_ips": "*"}
    async with TestClient(app, timeout=5, **config) as client:
        headers = {"x-forwarded-for": "203.0.113.9"}
        assert (await client.get("/linger", headers=headers)).text == "ok"
        with pytest.raises(ValueError, match="the app's own error"):
            await client.get("/fail", headers=headers)


async def test_a_response_sent_by_a_task_of_the_app(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The app's own coroutine may be waiting (on a nursery, or on the asyncio bridge)
    while another of its tasks sends the response and then goes on working."""
    release = trio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        async def respond() -> None:
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": scope["path"].encode()})
            if scope["path"] == "/linger":
                await release.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(respond)

    async with TestClient(app, timeout=5) as client:
        first = await client.get("/linger")
        second = await client.get("/next")
        assert second.text == "/next" and second.connection_id == first.connection_id
        release.set()
