"""Django and Django Channels on trio_asgi through the asyncio bridge (``--app-loop``), end to
end over real sockets with httpx and websockets: the example site in examples/django_site.

The app runs in the test's own trio loop (``serve_in_background``), in the one asyncio loop
the server opens; what the views and consumers saw is read from their log records.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import trio
from framework_helpers import TIMEOUT, Probe, in_thread
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from trio_asgi.asyncio_apps import detect_app_loop
from trio_asgi.testing import LiveServer, serve_in_background

pytest.importorskip("trio_asyncio")
site = pytest.importorskip("examples.django_site.asgi")


class _ToProbe(logging.Handler):
    def __init__(self, probe: Probe) -> None:
        super().__init__(logging.INFO)
        self.probe = probe

    def emit(self, record: logging.LogRecord) -> None:
        self.probe.record(record.getMessage())


@pytest.fixture
def site_log(probe: Probe) -> Iterator[Probe]:
    """The example site's log lines, each awaitable with ``probe.wait(line)``."""
    logger = logging.getLogger("examples.django_site")
    handler = _ToProbe(probe)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield probe
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    async with serve_in_background(site.application) as live:
        yield live


def test_channels_and_django_are_recognised_as_asyncio_apps() -> None:
    assert detect_app_loop(site.application) == ("asyncio", "a Django Channels app")
    assert detect_app_loop(site.django_app) == ("asyncio", "a Django ASGIHandler")


async def test_async_view_sync_view_and_request_body(server: LiveServer) -> None:
    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
            hello = http.get("/")
            assert (hello.status_code, hello.text) == (200, "Hello, world!")
            # A plain `def` view runs in asgiref's own thread pool: the bridge hands the
            # loop's run_in_executor calls for it to that pool.
            assert http.get("/sync").json() == {
                "in_main_thread": False,
                "async_to_sync_loop": "TrioEventLoop",  # the server's asyncio loop
            }
            body = bytes(range(256)) * 1000
            echoed = http.post("/echo", content=body, headers={"content-type": "x/bytes"})
            assert (echoed.content, echoed.headers["content-type"]) == (body, "x/bytes")
            assert http.get("/missing").status_code == 404

    await in_thread(client)


async def test_streaming_response(server: LiveServer) -> None:
    def client() -> list[str]:
        with httpx.stream("GET", server.url + "/stream?count=50", timeout=TIMEOUT) as response:
            assert response.headers.get("content-length") is None
            return list(response.iter_lines())

    assert await in_thread(client) == [f"chunk {n}" for n in range(50)]


async def test_a_client_leaving_cancels_the_view(server: LiveServer, site_log: Probe) -> None:
    """The asyncio side is cancelled: the http.disconnect the server delivers crosses the
    bridge, and Django cancels the view's task."""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(server.host, server.port)
        await stream.send_all(b"GET /slow?key=a HTTP/1.1\r\nHost: x\r\n\r\n")
        await site_log.wait("slow view a started")
        await stream.aclose()
        await site_log.wait("slow view a cancelled")


async def test_many_concurrent_requests_share_the_one_loop(server: LiveServer) -> None:
    async def get(http: httpx.AsyncClient, n: int, results: list[str]) -> None:
        response = await http.post("/echo", content=str(n).encode())
        results.append(response.text)

    results: list[str] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(get, http, n, results)
    assert sorted(results, key=int) == [str(n) for n in range(40)]


async def test_channels_websocket_echo_and_close_codes(server: LiveServer, site_log: Probe) -> None:
    def client() -> tuple[int | None, str | None]:
        with connect(server.ws_url + "/ws/echo", open_timeout=TIMEOUT) as ws:
            ws.send("hello")
            assert ws.recv(timeout=TIMEOUT) == "hello"
            ws.send(b"\x00\xff")
            assert ws.recv(timeout=TIMEOUT) == b"\x00\xff"
            ws.send("close 4321")  # the consumer closes with that code
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
            return ws.close_code, ws.close_reason

    assert await in_thread(client) == (4321, "")

    def client_closes() -> None:
        with connect(server.ws_url + "/ws/echo", open_timeout=TIMEOUT) as ws:
            ws.send("x")
            ws.recv(timeout=TIMEOUT)
            ws.close(4002, "client done")

    await in_thread(client_closes)
    assert await site_log.wait("echo consumer disconnected with code 4002")


async def test_shutdown_closes_an_open_channels_websocket_with_1001(site_log: Probe) -> None:
    async with serve_in_background(site.application) as live:
        opened = trio.Event()
        closed: list[int | None] = []

        def client(token: trio.lowlevel.TrioToken) -> None:
            with connect(live.ws_url + "/ws/echo", open_timeout=TIMEOUT) as ws:
                ws.send("ping")
                ws.recv(timeout=TIMEOUT)
                trio.from_thread.run_sync(opened.set, trio_token=token)
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=TIMEOUT)
                closed.append(ws.close_code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_thread, client, trio.lowlevel.current_trio_token())
            with trio.fail_after(TIMEOUT):
                await opened.wait()
            live.server.request_shutdown()
    assert closed == [1001]
    assert await site_log.wait("echo consumer disconnected with code 1001")
