"""Frameworks at the edges of a request: a graceful stop with views in flight (Django, Quart,
Quart-Trio wait for http.disconnect beside every view) and FastAPI's pre-accept close.

Real frameworks on ``serve_in_background`` (a loopback socket) with raw-socket clients; each
test once failed and says what Uvicorn does for the same app (checked against Uvicorn 0.54).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import trio

# FastAPI reads endpoint annotations at run time: the names must be module globals.
from fastapi import FastAPI, WebSocket

from trio_asgi.testing import LiveServer, serve_in_background

TIMEOUT = 10.0


async def in_thread(fn: Any, *args: Any) -> Any:
    return await trio.to_thread.run_sync(functools.partial(fn, *args))


async def read_until_eof(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


# -- Graceful shutdown tells in-flight requests http.disconnect: Django, Quart cancel them


def _quart_trio_app(started: trio.Event) -> Any:
    from quart_trio import QuartTrio

    app = QuartTrio("review_quart_trio")

    @app.get("/work")
    async def work() -> str:
        started.set()
        await trio.sleep(0.5)
        return "finished"

    return app


def _quart_app(started: trio.Event) -> Any:
    import asyncio

    from quart import Quart

    app = Quart("review_quart")

    @app.get("/work")
    async def work() -> str:
        started.set()  # a trio Event: the asyncio loop runs in the same thread
        await asyncio.sleep(0.5)
        return "finished"

    return app


@pytest.fixture
def django_work_view() -> Iterator[Any]:
    """The example Django site with one more view at /work that takes half a second."""
    pytest.importorskip("trio_asyncio")
    site = pytest.importorskip("examples.django_site.asgi")
    import asyncio

    from django.http import HttpResponse
    from django.urls import clear_url_caches, path

    from examples.django_site import urls

    started = trio.Event()

    async def work(request: Any) -> HttpResponse:
        started.set()
        await asyncio.sleep(0.5)
        return HttpResponse(b"finished")

    pattern = path("work", work)
    urls.urlpatterns.append(pattern)
    clear_url_caches()
    try:
        yield site.django_app, started
    finally:
        urls.urlpatterns.remove(pattern)
        clear_url_caches()


@pytest.mark.parametrize("framework", ["quart-trio", "quart", "django"])
async def test_graceful_shutdown_lets_an_in_flight_request_finish(
    framework: str, request: pytest.FixtureRequest, server_errors: list[logging.LogRecord]
) -> None:
    """README: on SIGTERM the server lets in-flight requests finish within
    --timeout-graceful-shutdown. Django (>= 5.0), Quart and Quart-Trio run every view next to
    a task waiting in ``receive()`` for ``http.disconnect``, and cancel the view when it
    comes. ``HTTPCycle.on_shutdown`` answers that ``receive()`` with ``http.disconnect`` as
    soon as shutdown begins, so the view is cancelled at once and the client gets a 500
    ("ASGI app returned without completing a response" logged as an error), although the
    client is still there and the grace period is 5 s. The same happens on every rolling
    restart (SIGHUP, --limit-max-requests). Uvicorn only marks the connection
    ``keep_alive = False``: the same Django-style app answers ``200 finished`` with
    ``connection: close``."""
    started = trio.Event()
    if framework == "quart-trio":
        app = _quart_trio_app(started)
    elif framework == "quart":
        pytest.importorskip("trio_asyncio")
        app = _quart_app(started)
    else:
        app, started = request.getfixturevalue("django_work_view")

    with trio.fail_after(15):
        async with serve_in_background(app, timeout_graceful_shutdown=5) as server:
            stream = await trio.open_tcp_stream(server.host, server.port)
            await stream.send_all(b"GET /work HTTP/1.1\r\nhost: x\r\n\r\n")
            await started.wait()
            server.server.request_shutdown()  # what SIGTERM does
            response = await read_until_eof(stream)
    assert response.startswith(b"HTTP/1.1 200"), response
    assert b"finished" in response.partition(b"\r\n\r\n")[2]  # (Django's is chunked)
    assert server_errors == []


# -- FastAPI's WebSocket validation error: 500 and a traceback instead of 403 ------------


async def test_fastapi_websocket_validation_error_denies_with_403(
    server_errors: list[logging.LogRecord],
) -> None:
    """A FastAPI WebSocket route with a required parameter (``token: str``), reached without
    it: FastAPI's default handler closes the handshake with
    ``websocket.close(code=1008, reason=<list of errors>)`` before accept. A close before
    accept is a 403 and its reason is never sent, so Uvicorn (wsproto and websockets
    implementations) and Hypercorn answer 403. trio_asgi type-checks the unused reason
    first (``_app_close``), raises ASGIProtocolError into the app, logs "Exception in ASGI
    application" with a traceback and answers 500 — for every client that forgets a
    query parameter, header or cookie on a FastAPI WebSocket route."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, token: str) -> None:
        await websocket.accept()
        await websocket.send_text(token)
        await websocket.close()

    def client(server: LiveServer) -> int:
        with connect(server.ws_url + "/ws?token=t", open_timeout=TIMEOUT) as ws:
            assert ws.recv(timeout=TIMEOUT) == "t"
        with pytest.raises(InvalidStatus) as denied:
            connect(server.ws_url + "/ws", open_timeout=TIMEOUT)
        return denied.value.response.status_code

    with trio.fail_after(15):
        async with serve_in_background(app) as server:
            status = await in_thread(client, server)
    assert status == 403
    assert server_errors == []
