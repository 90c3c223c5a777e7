"""A real framework on the WSGI adaptor: the Flask example app, through the TestClient."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest
from flask import Flask, abort

from examples.wsgi_flask import app as example_app
from trio_asgi.testing import TestClient

from .test_wsgi_streaming import UPLOAD_SIZE, MiB, expected_digest, upload_body


@pytest.fixture
def app() -> Flask:
    return example_app


async def test_get(app: Flask) -> None:
    async with TestClient(app) as client:  # --interface auto finds it
        response = await client.get("/", params={"name": "trio"})
    assert response.status_code == 200
    assert response.text == "Hello, trio!\n"
    assert response.headers["content-type"] == "text/html; charset=utf-8"


async def test_post_form(app: Flask) -> None:
    async with TestClient(app, interface="wsgi") as client:
        response = await client.post("/echo", data={"name": "trio", "tag": ["a", "b"]})
    assert response.json() == {"form": {"name": ["trio"], "tag": ["a", "b"]}}


async def test_post_json(app: Flask) -> None:
    async with TestClient(app, interface="wsgi") as client:
        response = await client.post("/echo", json={"name": "trio", "n": [1, 2]})
    assert response.json() == {"json": {"name": "trio", "n": [1, 2]}}


async def test_post_chunked_json(app: Flask) -> None:
    """No Content-Length: Flask reads it only because the server sets wsgi.input_terminated."""

    async def body():  # type: ignore[no-untyped-def]
        yield b'{"na'
        yield b'me": "chunked"}'

    async with TestClient(app, interface="wsgi") as client:
        response = await client.post(
            "/echo", content=body(), headers={"Content-Type": "application/json"}
        )
    assert response.json() == {"json": {"name": "chunked"}}


async def test_50_mib_upload_in_bounded_memory(app: Flask) -> None:
    async with TestClient(app, interface="wsgi") as client:
        tracemalloc.start()
        try:
            response = await client.post("/upload", content=upload_body())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.json() == {
        "bytes": UPLOAD_SIZE,
        "sha256": expected_digest(),
        "largest_read": 64 * 1024,
    }
    assert peak < 4 * MiB, f"peak {peak / MiB:.1f} MiB during a 50 MiB upload"


async def test_upload_with_expect_continue(app: Flask) -> None:
    """What ``curl -T`` sends: 100 Continue first, then a streamed PUT."""
    body = b"x" * 300_000
    async with TestClient(app, interface="wsgi") as client:
        response = await client.put("/upload", content=body, headers={"Expect": "100-continue"})
    assert [status for status, _ in response.informational] == [100]
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()


async def test_streaming_response(app: Flask) -> None:
    async with (
        TestClient(app, interface="wsgi") as client,
        client.stream("GET", "/stream", params={"count": 4}) as response,
    ):
        pieces = [piece async for piece in response.aiter_bytes()]
    assert response.headers["transfer-encoding"] == "chunked"
    assert b"".join(pieces) == b"".join(b"line %d of 4\n" % i for i in range(4))


async def test_head_not_found_and_errors() -> None:
    app = Flask("errors")

    @app.get("/page")
    def page() -> str:
        return "a page of text"

    @app.get("/forbidden")
    def forbidden() -> str:
        abort(403)

    @app.get("/crash")
    def crash() -> str:
        raise RuntimeError("bug in a view")

    async with TestClient(app, interface="wsgi") as client:
        head = await client.head("/page")
        get = await client.get("/page")
        missing = await client.get("/nowhere")
        refused = await client.get("/forbidden")
        crashed = await client.get("/crash")  # Flask turns it into its own 500 page
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(b"a page of text"))
    assert get.content == b"a page of text"
    assert head.connection_id == get.connection_id  # HEAD left the connection reusable
    assert (missing.status_code, refused.status_code, crashed.status_code) == (404, 403, 500)


async def test_flask_sees_the_request_like_any_wsgi_server() -> None:
    app = Flask("request")

    @app.get("/<path:name>")
    def show(name: str) -> dict[str, object]:
        from flask import request

        return {
            "name": name,
            "url": request.url,
            "script_root": request.script_root,
            "remote_addr": request.remote_addr,
            "cookies": request.cookies.to_dict(),
        }

    async with TestClient(app, interface="wsgi", root_path="/app") as client:
        response = await client.get(
            "/caf%C3%A9/x", params={"q": "1"}, headers={"Cookie": "session=abc"}
        )
    assert response.json() == {
        "name": "caf\u00e9/x",
        "url": "http://testserver/app/caf\u00e9/x?q=1",  # Werkzeug gives an IRI
        "script_root": "/app",
        "remote_addr": "127.0.0.1",
        "cookies": {"session": "abc"},
    }
