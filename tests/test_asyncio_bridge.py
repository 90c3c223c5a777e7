"""--app-loop asyncio: plain asyncio ASGI apps through the bridge, in the test client.

What crosses the bridge (messages, cancellation both ways, errors), the one loop per server,
and how the loop for an app is chosen. The frameworks themselves are in tests/frameworks.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h11
import pytest
import sniffio
import trio
from trio.testing import MockClock

from trio_asgi.app_loader import adapt
from trio_asgi.asyncio_apps import ASYNCIO_HINT, detect_app_loop, looks_like_asyncio_on_trio
from trio_asgi.asyncio_bridge import CANCEL_GRACE, AsyncioBridge
from trio_asgi.errors import AppLoadError
from trio_asgi.testing import Closed, TestClient

pytest.importorskip("trio_asyncio")

Scope = dict[str, Any]
Message = dict[str, Any]


async def respond(send: Any, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Any, send: Any, events: list[str] | None = None) -> None:
    while True:
        message = await receive()
        kind = message["type"].rpartition(".")[2]
        if events is not None:
            events.append(f"{kind}, loop closed: {asyncio.get_running_loop().is_closed()}")
        await send({"type": f"{message['type']}.complete"})
        if kind == "shutdown":
            return


# -- messages and the loop -------------------------------------------------------------------


async def test_an_asyncio_app_serves_http_on_its_own_loop() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await asyncio.sleep(0)  # an asyncio primitive, which would fail on trio
        library = sniffio.current_async_library()
        await respond(send, f"{library}: {len(body)} bytes".encode())

    async with TestClient(app, app_loop="asyncio") as client:
        response = await client.post("/", content=b"x" * 300_000)
        assert response.text == "asyncio: 300000 bytes"


async def test_an_asyncio_app_running_on_after_its_response() -> None:
    """The next request on the connection goes to a new task meanwhile (handoff.py); that
    task still reaches the server's asyncio loop."""
    release = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        await respond(send, scope["path"].encode())
        if scope["path"] == "/linger":
            await release.wait()
        else:
            release.set()

    async with TestClient(app, app_loop="asyncio", timeout=5) as client:
        first = await client.get("/linger")
        second = await client.get("/next")  # answered while /linger's app still waits
        assert second.text == "/next" and second.connection_id == first.connection_id


async def test_one_loop_for_lifespan_and_every_request_open_until_after_shutdown() -> None:
    events: list[str] = []
    loops: set[asyncio.AbstractEventLoop] = set()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        loops.add(asyncio.get_running_loop())
        if scope["type"] == "lifespan":
            return await lifespan(receive, send, events)
        await respond(send, b"ok")

    async with TestClient(app, app_loop="asyncio") as client:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(client.get, "/")
    [loop] = loops
    assert events == ["startup, loop closed: False", "shutdown, loop closed: False"]
    assert loop.is_closed()


async def test_receive_in_one_task_while_sending_from_another() -> None:
    """Frameworks wait for http.disconnect in one asyncio task while another sends: the two
    calls are served at the same time, or the response would never finish."""
    listened: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        await receive()  # the (empty) body

        async def listen() -> None:
            listened.append((await receive())["type"])

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0)  # the listener is now waiting in receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for n in range(100):
            await send({"type": "http.response.body", "body": b"%d\n" % n, "more_body": True})
        await send({"type": "http.response.body"})
        await listener  # the complete response releases it with http.disconnect

    async with TestClient(app, app_loop="asyncio") as client:
        response = await client.get("/")
    assert response.text.split() == [str(n) for n in range(100)]
    assert listened == ["http.disconnect"]


async def test_websocket_session_through_the_bridge() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "chat"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "bye":
                await send({"type": "websocket.close", "code": 4100, "reason": "bye"})
                return
            await send({**message, "type": "websocket.send"})

    async with TestClient(app, app_loop="asyncio") as client:
        async with client.websocket("/", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send_text("é" * 1000)
            assert await ws.receive_text() == "é" * 1000
            await ws.send_bytes(b"\x00\x01")
            assert await ws.receive_bytes() == b"\x00\x01"
            await ws.send_text("bye")
            assert await ws.receive() == Closed(4100, "bye")


# -- cancellation, both ways -----------------------------------------------------------------


async def cut_short(client: TestClient, path: str) -> None:
    """A request the server gives up on at shutdown: the connection closes unanswered."""
    with pytest.raises(h11.RemoteProtocolError):
        await client.get(path)


async def test_an_asyncio_timeout_on_receive_cancels_the_trio_call_and_loses_nothing(
    autojump_clock: MockClock,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        await receive()
        await send({"type": "websocket.accept"})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receive(), timeout=5)
        await send({"type": "websocket.send", "text": "timed out"})
        message = await receive()  # the next message is not taken by the cancelled call
        await send({"type": "websocket.send", "text": f"got {message['text']}"})
        await receive()

    async with TestClient(app, app_loop="asyncio") as client:
        async with client.websocket("/") as ws:
            assert await ws.receive_text() == "timed out"
            await ws.send_text("m1")
            assert await ws.receive_text() == "got m1"


class NumberedMessages:
    """The server side of a bridge: ``receive()`` gives numbered messages (once ``arrived``
    is set, if given)."""

    def __init__(self, arrived: trio.Event | None = None) -> None:
        self.arrived = arrived
        self.taken = 0

    async def serve(self, app: Any, timeout: float) -> bool:
        """Run ``app`` over the bridge with this as the server; False if it timed out."""
        bridge = AsyncioBridge(app)
        async with bridge.open():
            with trio.move_on_after(timeout) as waited:
                await bridge({"type": "http"}, self.receive, self.send)
        return not waited.cancelled_caught

    async def receive(self) -> Message:
        if self.arrived is not None:
            await self.arrived.wait()
        self.taken += 1
        return {"type": "test.message", "n": self.taken}

    async def send(self, message: Message) -> None:
        raise AssertionError("not used")


async def outcome_then_next(first: asyncio.Future[Any], receive: Any) -> list[object]:
    """What a cancelled ``first`` receive() gave ("cancelled" if nothing), then the next."""
    try:
        got: list[object] = [await first]
    except asyncio.CancelledError:
        got = ["cancelled"]
    got.append(await receive())
    return got


@pytest.mark.parametrize("when", ["before-the-message", "with-the-message", "after-the-call"])
async def test_a_receive_cancelled_as_its_message_arrives_loses_nothing(when: str) -> None:
    """An asyncio task cancelled just as (or after) the trio side took its message: the
    message comes from the next receive(), in order (it was lost)."""
    arrived = trio.Event()
    server = NumberedMessages(arrived)
    got: list[object] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        first = asyncio.ensure_future(receive())
        while arrived.statistics().tasks_waiting == 0:  # the trio side waits now
            await asyncio.sleep(0)
        if when == "before-the-message":
            first.cancel()
            arrived.set()
        elif when == "with-the-message":
            arrived.set()
            first.cancel()
        else:
            arrived.set()
            while server.taken == 0:
                await asyncio.sleep(0)
            first.cancel()
        got.extend(await outcome_then_next(first, receive))

    assert await server.serve(app, timeout=5)
    messages = [item for item in got if item != "cancelled"]
    assert messages[0] == {"type": "test.message", "n": 1}, got


async def test_bridge_receive_after_a_receive_cancelled_before_its_servant_ran(
    autojump_clock: Any,
) -> None:
    """An asyncio task cancelled while waiting in receive(), before the trio servant started
    the call: the app's next receive() must return the next message. It hangs forever.

    ``_make_call`` (asyncio_bridge.py) returns early when the future is already cancelled,
    before its try/finally, leaving ``servant.call`` pointing at the call and never setting
    ``call.finished``. When the asyncio task then handles its CancelledError in ``_submit``,
    ``servant.call is call`` still holds, so it creates ``call.finished`` and records the
    call as ``_given_up``; the next receive() awaits ``given_up.finished``, which nobody
    will ever set. The servant gets to run between the cancel and the task's own handling
    whenever the loop yields to trio in between: here the asyncio loop is busy (more ready
    callbacks than one trio round runs, CALLBACK_BATCH), as under load. Before 6790a4f the
    next receive() simply made a new call."""
    server = NumberedMessages()
    got: list[object] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(receive())
        await asyncio.sleep(0)  # it submits its call; the servant has not run yet
        for _ in range(1000):  # a busy loop: the task handles its cancel rounds later
            loop.call_soon(lambda: None)
        first.cancel()
        got.extend(await outcome_then_next(first, receive))

    assert await server.serve(app, timeout=30), f"the second receive() never returned: {got}"
    assert got == ["cancelled", {"type": "test.message", "n": 1}], got


async def test_shutdown_drains_then_cancels_the_asyncio_task(autojump_clock: MockClock) -> None:
    seen: list[str] = []
    started = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        started.set()  # a trio Event: the asyncio side runs in the same thread
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append(f"cancelled at {asyncio.get_running_loop().time():.0f}")
            raise

    client = TestClient(app, app_loop="asyncio", timeout_graceful_shutdown=7, timeout=None)
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(cut_short, client, "/")
        await started.wait()
        begun = trio.current_time()
        await client.shutdown()
        assert round(trio.current_time() - begun) == 7
    assert seen == [f"cancelled at {begun + 7:.0f}"]


async def test_an_app_ignoring_its_cancellation_is_abandoned_after_a_grace_period(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    started = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3 * CANCEL_GRACE)  # stubborn, but the loop's close ends it

    client = TestClient(app, app_loop="asyncio", timeout_graceful_shutdown=1, timeout=None)
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(cut_short, client, "/")
        await started.wait()
        begun = trio.current_time()
        await client.shutdown()
        assert trio.current_time() - begun == pytest.approx(1 + CANCEL_GRACE)
    assert "ignored its cancellation" in caplog.text


# -- errors ----------------------------------------------------------------------------------


async def test_app_errors_are_500_and_1011_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["path"] == "/boom":
            raise ValueError("boom over asyncio")
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            raise KeyError("ws boom")
        await respond(send, b"fine")

    async with TestClient(app, app_loop="asyncio", raise_app_exceptions=False) as client:
        assert (await client.get("/boom")).status_code == 500
        async with client.websocket("/ws") as ws:
            assert await ws.receive() == Closed(1011, "")
        assert (await client.get("/")).text == "fine"
    assert "boom over asyncio" in caplog.text and "ws boom" in caplog.text


async def test_an_error_asyncio_cannot_hand_to_anyone_is_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["path"] == "/orphan":

            async def fails() -> None:
                raise RuntimeError("nobody awaits me")

            task = asyncio.create_task(fails())
            await asyncio.sleep(0)
            del task
            gc.collect()  # "Task exception was never retrieved" goes to the loop's handler
        await respond(send, b"ok")

    async with TestClient(app, app_loop="asyncio") as client:
        assert (await client.get("/orphan")).text == "ok"
        assert (await client.get("/")).text == "ok"
    assert "Task exception was never retrieved" in caplog.text
    assert "nobody awaits me" in caplog.text


async def test_run_in_executor_takes_any_executor() -> None:
    """asgiref (Django's sync views) passes its own ThreadPoolExecutor."""

    def where(tag: str) -> str:
        return f"{tag} in main thread: {threading.current_thread() is threading.main_thread()}"

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1) as pool:
            own = await loop.run_in_executor(pool, where, "own pool")
        default = await loop.run_in_executor(None, where, "default")
        await respond(send, f"{own}; {default}".encode())

    async with TestClient(app, app_loop="asyncio") as client:
        response = await client.get("/")
    assert response.text == "own pool in main thread: False; default in main thread: False"


async def test_an_asyncio_app_on_trio_gets_a_hint_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await asyncio.sleep(0.01)  # needs asyncio's loop

    async with TestClient(app, app_loop="trio", raise_app_exceptions=False) as client:
        assert (await client.get("/")).status_code == 500
    assert ASYNCIO_HINT in caplog.text


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("no running event loop"), True),
        (TypeError("trio.run received unrecognized yield message <Future>"), True),
        (ExceptionGroup("g", [ValueError("x"), RuntimeError("no running event loop")]), True),
        (RuntimeError("something else"), False),
        ("lifespan startup: no running event loop", True),
    ],
)
def test_asyncio_on_trio_is_recognised(error: Any, expected: bool) -> None:
    assert looks_like_asyncio_on_trio(error) is expected


# -- choosing the loop -----------------------------------------------------------------------


class FakeQuart:
    """Stands in for a class named like Quart's, without importing Quart."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        pass


FakeQuart.__module__, FakeQuart.__qualname__ = "quart.app", "Quart"


class FakeQuartTrio(FakeQuart):
    pass


FakeQuartTrio.__module__, FakeQuartTrio.__qualname__ = "quart_trio.app", "QuartTrio"


class Middleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def plain_app(scope: Scope, receive: Any, send: Any) -> None:
    pass


def test_detection_sees_through_middleware_and_wrappers() -> None:
    assert detect_app_loop(FakeQuart()) == ("asyncio", "a Quart app")
    assert detect_app_loop(FakeQuartTrio())[0] == "trio"
    assert detect_app_loop(Middleware(Middleware(FakeQuart())))[0] == "asyncio"
    wrapped = functools.wraps(FakeQuart())(lambda scope, receive, send: None)
    assert detect_app_loop(wrapped)[0] == "asyncio"
    assert detect_app_loop(Middleware(plain_app)) == ("trio", "")
    looped = Middleware(None)
    looped.app = looped  # a cycle ends the search
    assert detect_app_loop(looped) == ("trio", "")


def test_auto_bridges_recognised_apps_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trio_asgi.error")
    bridged = adapt(Middleware(FakeQuart()), "asgi3", app_loop="auto")
    assert isinstance(bridged, AsyncioBridge)
    assert "is a Quart app: running it in an asyncio loop" in caplog.text
    assert adapt(plain_app, "auto", app_loop="auto") is plain_app
    assert isinstance(adapt(plain_app, "auto", app_loop="asyncio"), AsyncioBridge)


def test_wsgi_apps_do_not_take_an_asyncio_loop() -> None:
    def wsgi(environ: Any, start_response: Any) -> list[bytes]:
        return []

    with pytest.raises(AppLoadError, match="is a WSGI application, which runs in threads"):
        adapt(wsgi, "auto", app_loop="asyncio")
    with pytest.raises(AppLoadError, match="is for ASGI applications, not WSGI"):
        adapt(wsgi, "wsgi", app_loop="asyncio")
    assert not isinstance(adapt(wsgi, "auto", app_loop="auto"), AsyncioBridge)


def test_without_trio_asyncio_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trio_asyncio", None)  # import fails
    with pytest.raises(AppLoadError, match=r"pip install 'trio-asgi\[asyncio\]'"):
        adapt(plain_app, "asgi3", app_loop="asyncio")
    with pytest.raises(AppLoadError, match="is a Quart app, which runs on asyncio: install"):
        adapt(FakeQuart(), "asgi3", app_loop="auto")
