"""The HTTP response extensions: trailers, early hints, pathsend and zerocopysend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_asgi.errors import ASGIProtocolError
from trio_asgi.testing import TestClient, serve_in_background

from .conftest import raw_exchange, status_of

Scope = dict[str, Any]


async def trailers_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    assert "http.response.trailers" in scope["extensions"]
    headers = [(b"trailer", b"x-checksum, x-rows")]
    if scope["path"] == "/with-length":
        headers.append((b"content-length", b"4"))
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    await send({"type": "http.response.body", "body": b"da", "more_body": True})
    await send({"type": "http.response.body", "body": b"ta"})
    await send(
        {
            "type": "http.response.trailers",
            "headers": [(b"x-checksum", b"abc")],
            "more_trailers": True,
        }
    )
    await send({"type": "http.response.trailers", "headers": [(b"x-rows", b"2")]})


async def test_trailers_sent_when_the_client_asked() -> None:
    async with TestClient(trailers_app) as client:
        response = await client.get("/", headers={"te": "trailers"})
        plain = await client.get("/")
        with_length = await client.get("/with-length", headers={"te": "trailers"})
    assert response.content == b"data"
    assert response.trailers.items() == [("x-checksum", "abc"), ("x-rows", "2")]
    assert plain.content == b"data" and plain.trailers.items() == []
    assert with_length.content == b"data" and with_length.trailers.items() == []
    assert response.connection_id == plain.connection_id == with_length.connection_id


async def test_trailers_without_announcing_them_are_an_error() -> None:
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"x"})
        try:
            await send({"type": "http.response.trailers", "headers": []})
        except ASGIProtocolError as exc:
            errors.append(exc)

    async with TestClient(app) as client:
        assert (await client.get("/")).content == b"x"
    assert "needs 'trailers': True" in str(errors[0])


async def test_app_that_never_sends_announced_trailers_gets_the_connection_closed() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"x"})

    async with TestClient(app) as client:
        response = await raw_exchange(
            await client.connect(), b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"
        )
    assert status_of(response) == 200
    assert not response.endswith(b"0\r\n\r\n")  # the chunked body never ended


async def early_hints_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if "http.response.early_hint" not in scope["extensions"]:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"no hints"})
        return
    await send({"type": "http.response.start", "status": 200})
    await send(
        {
            "type": "http.response.early_hint",
            "links": [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"],
        }
    )
    await send({"type": "http.response.body", "body": b"page"})


async def test_early_hints_are_opt_in() -> None:
    async with TestClient(early_hints_app) as client:
        response = await client.get("/")
    assert response.content == b"no hints" and response.informational == []

    async with TestClient(early_hints_app, http_early_hints=True) as client:
        response = await client.get("/")
        old_client = await raw_exchange(await client.connect(), b"GET / HTTP/1.0\r\n\r\n")
    [(status, headers)] = response.informational
    assert status == 103
    assert headers.get_list("link") == [
        "</style.css>; rel=preload; as=style",
        "</app.js>; rel=preload; as=script",
    ]
    assert response.content == b"page"
    assert b"103" not in old_client  # never 1xx to HTTP/1.0 (RFC 9110 15.2)
    assert old_client.endswith(b"page")


@pytest.mark.parametrize("links", [10**9, b"</a.css>", [10**9], ["</a.css>"]])
async def test_early_hint_links_must_be_a_list_of_bytes(links: Any) -> None:
    """An int among them was turned into that many zero bytes (10**9: a gigabyte)."""
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.early_hint", "links": links})
        except ASGIProtocolError as exc:
            errors.append(exc)
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    async with TestClient(app, http_early_hints=True) as client:
        response = await client.get("/")
    assert response.status_code == 200 and len(errors) == 1


async def test_100_continue_still_follows_an_early_hint(autojump_clock: Any) -> None:
    """A 103 is no go-ahead (RFC 9110 15.2): the client still waits for 100 when the app
    then reads the body (h11 forgets the expectation after any 1xx; it used to stall)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]})
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": body})

    async with TestClient(app, http_early_hints=True, timeout=120) as client:
        stream = await client.connect()
        await stream.send_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        received = b""
        with trio.fail_after(10):
            while not received.endswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
                received += await stream.receive_some()
        assert received.startswith(b"HTTP/1.1 103 ")
        await stream.send_all(b"data")
        with trio.fail_after(10):
            response = await stream.receive_some()
    assert status_of(response) == 200 and response.endswith(b"data\r\n0\r\n\r\n")


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 12_000)  # ~3 MiB
    return path


def pathsend_app(path: Path, *, length: bool = True) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.pathsend" in scope["extensions"]
        headers = [(b"content-length", str(path.stat().st_size).encode())] if length else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(path)})

    return app


async def test_pathsend_streams_the_file(data_file: Path) -> None:
    async with TestClient(pathsend_app(data_file)) as client:
        response = await client.get("/")
        head = await client.head("/")
    async with TestClient(pathsend_app(data_file, length=False)) as client:
        chunked = await client.get("/")
    assert response.content == data_file.read_bytes()
    assert head.content == b"" and head.headers["content-length"] == str(data_file.stat().st_size)
    assert chunked.content == data_file.read_bytes()


async def test_an_app_waiting_after_pathsend_hears_disconnect_at_once(data_file: Path) -> None:
    """As after http.response.body: a task already parked in receive() (the way frameworks
    listen for disconnects while responding) learns that the response is complete."""
    heard: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()  # the (empty) request body

        async def listen() -> None:
            heard.append((await receive())["type"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await trio.testing.wait_all_tasks_blocked()  # parked before the response
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.pathsend", "path": str(data_file)})

    async with TestClient(app) as client:
        response = await client.get("/")
        with trio.fail_after(5):  # (real time: the file is read in a worker thread)
            while not heard:
                await trio.sleep(0.01)
    assert response.content == data_file.read_bytes()
    assert heard == ["http.disconnect"]


async def test_zerocopysend_offsets_are_checked_before_use() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        with open(__file__, "rb") as file:
            with pytest.raises(ASGIProtocolError, match="whole numbers"):
                await send({"type": "http.response.zerocopysend", "file": file, "offset": "1"})
            await send({"type": "http.response.body", "body": b"checked"})

    async with TestClient(app) as client:
        response = await client.get("/")
    assert response.content == b"checked"


async def test_zerocopysend_past_the_end_of_the_file_is_a_500(data_file: Path) -> None:
    """Refused before the head goes out (the client got a cut response instead)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        with open(data_file, "rb") as file:
            size = data_file.stat().st_size
            message = {"type": "http.response.zerocopysend", "file": file, "count": size + 1}
            await send(message)

    async with TestClient(app, raise_app_exceptions=False) as client:
        response = await client.get("/")
    assert response.status_code == 500


async def test_pathsend_is_bounded_in_memory(data_file: Path) -> None:
    """A slow client: the file is read piece by piece as the client takes it."""
    async with TestClient(pathsend_app(data_file), buffer_size=64 * 1024) as client:
        async with client.stream("GET", "/") as response:
            first = await response.receive_chunk()
            assert first is not None
            response.pause_reading()
            await trio.testing.wait_all_tasks_blocked()
            response.pause_reading(False)
            rest = await response.aread()
    assert first + rest == data_file.read_bytes()


async def test_pathsend_needs_an_absolute_path() -> None:
    async with TestClient(pathsend_app(Path("relative.txt")), raise_app_exceptions=False) as client:
        response = await client.get("/")
    assert response.status_code == 500


def zerocopy_app(path: Path) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.zerocopysend" in scope["extensions"]
        with open(path, "rb") as file:
            if scope["path"] == "/range":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 206,
                        "headers": [(b"content-length", b"1000")],
                    }
                )
                await send(
                    {
                        "type": "http.response.zerocopysend",
                        "file": file,
                        "offset": 256,
                        "count": 1000,
                    }
                )
            else:
                # Mixed with ordinary body messages, continuing from the file position.
                await send({"type": "http.response.start", "status": 200})
                await send({"type": "http.response.body", "body": b"<", "more_body": True})
                file.seek(10)
                await send(
                    {
                        "type": "http.response.zerocopysend",
                        "file": file,
                        "count": 5,
                        "more_body": True,
                    }
                )
                assert file.tell() == 15
                await send({"type": "http.response.zerocopysend", "file": file, "more_body": True})
                await send({"type": "http.response.body", "body": b">"})

    return app


async def test_zerocopysend_through_the_copy_fallback(data_file: Path) -> None:
    data = data_file.read_bytes()
    async with TestClient(zerocopy_app(data_file)) as client:
        ranged = await client.get("/range")
        whole = await client.get("/")
    assert ranged.status_code == 206 and ranged.content == data[256:1256]
    assert whole.content == b"<" + data[10:15] + data[15:] + b">"


async def test_zerocopysend_with_sendfile_over_real_tcp(
    data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_sendfile = os.sendfile

    def counting_sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        calls.append(count)
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    data = data_file.read_bytes()
    async with serve_in_background(zerocopy_app(data_file), access_log=False) as server:
        async with httpx.AsyncClient() as http:
            ranged = await http.get(server.url + "/range")
            whole = await http.get(server.url + "/")
    assert ranged.content == data[256:1256]
    assert whole.content == b"<" + data[10:15] + data[15:] + b">"
    assert calls  # the kernel did the copying
