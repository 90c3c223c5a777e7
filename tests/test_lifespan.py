"""The lifespan protocol: startup before serving, shutdown after, failures reported."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from trio_asgi import Config, StartupFailed, serve
from trio_asgi.testing import TestClient

Scope = dict[str, Any]


def lifespan_app(
    events: list[str], *, fail_startup: str | None = None, fail_shutdown: str | None = None
):
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if fail_startup:
                        await send({"type": "lifespan.startup.failed", "message": fail_startup})
                        return
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    if fail_shutdown:
                        await send({"type": "lifespan.shutdown.failed", "message": fail_shutdown})
                    else:
                        await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            events.append(f"request, state={scope['state']}")
            await send({"type": "http.response.start", "status": 204})
            await send({"type": "http.response.body"})

    return app


async def test_startup_request_shutdown_order_and_state() -> None:
    events: list[str] = []
    async with TestClient(lifespan_app(events)) as client:
        assert events == ["lifespan.startup"]
        await client.get("/")
        assert client.lifespan_state == {"db": "connected"}
    assert events == [
        "lifespan.startup",
        "request, state={'db': 'connected'}",
        "lifespan.shutdown",
    ]


async def test_startup_failure_raises_with_the_message(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    with pytest.raises(StartupFailed, match="database is down"):
        async with TestClient(lifespan_app(events, fail_startup="database is down")):
            pass  # pragma: no cover
    assert any("database is down" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("trigger", [False, True], ids=["no-trigger", "shutdown-trigger"])
async def test_serve_raises_startup_failed_itself(trigger: bool) -> None:
    """``trio_asgi.serve`` raises StartupFailed, not an exception group around it (it did
    once it opened a nursery of its own for the shutdown trigger)."""
    events: list[str] = []
    app = lifespan_app(events, fail_startup="database is down")
    config = Config(host="127.0.0.1", port=0)
    with trio.fail_after(10), pytest.raises(StartupFailed, match="database is down"):
        await serve(app, config, trio.Event() if trigger else None)


async def test_shutdown_failure_is_reported() -> None:
    events: list[str] = []
    with pytest.raises(RuntimeError, match="flush failed"):
        async with TestClient(lifespan_app(events, fail_shutdown="flush failed")):
            pass


def hanging_shutdown_app(cancelled: list[bool]) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            await trio.sleep_forever()  # a cleanup that never ends (a stuck pool close)
        finally:
            cancelled.append(True)

    return app


@pytest.mark.parametrize(("config", "limit"), [({}, 30.0), ({"timeout_lifespan_shutdown": 5}, 5)])
async def test_a_hanging_lifespan_shutdown_is_bounded(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    config: dict[str, Any],
    limit: float,
) -> None:
    """A stop is bounded: lifespan shutdown gets --timeout-lifespan-shutdown (30 s by
    default), then it is cancelled, logged and reported as a failed shutdown."""
    cancelled: list[bool] = []
    started = trio.current_time()
    with pytest.raises(RuntimeError, match="did not finish within"):
        async with TestClient(hanging_shutdown_app(cancelled), **config):
            started = trio.current_time()
    assert trio.current_time() - started == pytest.approx(limit)
    assert cancelled == [True]
    assert "--timeout-lifespan-shutdown" in caplog.text


async def test_no_connection_is_accepted_before_startup_completes() -> None:
    """serve() binds, but start() only returns once startup completed."""
    gate = trio.Event()
    order: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await gate.wait()
            order.append("startup complete")
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})

    async with trio.open_nursery() as nursery:

        async def release() -> None:
            await trio.testing.wait_all_tasks_blocked()
            order.append("released")
            gate.set()

        nursery.start_soon(release)
        addresses = await nursery.start(serve, app, Config(port=0))
        order.append("serving")
        assert addresses[0][0] == "127.0.0.1" and addresses[0][1] > 0
        nursery.cancel_scope.cancel()
    assert order == ["released", "startup complete", "serving"]


async def test_app_without_lifespan_support_in_auto_mode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"unsupported scope {scope['type']}")
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async with TestClient(app) as client:
        assert (await client.get("/")).status_code == 204
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("lifespan" in message and "unsupported" in message for message in infos) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_raising_in_lifespan_with_mode_on_fails_startup() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise ValueError("no lifespan here")

    with pytest.raises(StartupFailed, match="no lifespan here"):
        async with TestClient(app, lifespan="on"):
            pass  # pragma: no cover


async def test_lifespan_off_never_calls_the_app() -> None:
    scopes: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        scopes.append(scope["type"])
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async with TestClient(app, lifespan="off") as client:
        await client.get("/")
    assert scopes == ["http"]


async def test_app_returning_from_lifespan_early_in_auto_mode_is_tolerated() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async with TestClient(app) as client:
        assert (await client.get("/")).status_code == 204


async def test_invalid_lifespan_message_fails_startup_in_on_mode() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})

    with pytest.raises(StartupFailed, match="unexpected lifespan message"):
        async with TestClient(app, lifespan="on"):
            pass  # pragma: no cover
