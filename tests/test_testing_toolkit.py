"""trio_asgi.testing itself: the pytest plugin, failure reporting, timeouts, transcripts."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_asgi.testing import ClientTimeout, Headers, TestClient, stream_pair

pytest_plugins = ["pytester"]

INI = """
[pytest]
trio_mode = true
"""

APP = """
import pytest

async def echo(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"hi"})

@pytest.fixture
def app():
    return echo
"""


def test_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        APP
        + """
import httpx

async def test_client(asgi_client):
    assert (await asgi_client.get("/")).text == "hi"

async def test_server(asgi_server):
    async with httpx.AsyncClient() as http:
        assert (await http.get(asgi_server.url)).text == "hi"

@pytest.fixture
def asgi_config():
    return {"server_header": False}

async def test_config_fixture(asgi_client):
    assert "server" not in (await asgi_client.get("/")).headers
"""
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_asgi_config_may_mix_client_options_and_server_settings(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        APP
        + """
import httpx

@pytest.fixture
def asgi_config():
    return {"base_url": "http://example.org", "client_host": "10.0.0.1", "timeout": 5,
            "server_header": False}

async def test_client(asgi_client):
    assert "server" not in (await asgi_client.get("/")).headers

async def test_server(asgi_server):
    async with httpx.AsyncClient() as http:
        response = await http.get(asgi_server.url)
    assert response.text == "hi" and "server" not in response.headers
"""
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_failed_assert_in_a_websocket_conversation_is_a_plain_failure(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        APP
        + """
async def test_conversation(asgi_client):
    async with asgi_client.websocket("/ws") as ws:
        await ws.send_text("one")
        assert await ws.receive_text() == "two"
"""
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "AssertionError" in output and "'one' == 'two'" in output
    assert "ExceptionGroup" not in output


async def test_waiting_for_a_message_that_never_comes_names_the_last_events(
    autojump_clock: Any,
) -> None:
    async def quiet(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await receive()  # never answers
            await trio.sleep_forever()

    async with TestClient(quiet, timeout=5) as client:
        async with client.websocket("/ws") as ws:
            await ws.send_text("anyone?")
            with pytest.raises(ClientTimeout) as info:
                await ws.receive_text()
            ws.drop()
    message = str(info.value)
    assert "timed out after 5s waiting for a WebSocket message" in message
    assert "app received {'type': 'websocket.receive', 'text': 'anyone?'}" in message
    assert isinstance(info.value, trio.TooSlowError)


async def test_http_timeout_names_the_request(autojump_clock: Any) -> None:
    async def stuck(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await trio.sleep_forever()

    async with TestClient(stuck, timeout=3, timeout_graceful_shutdown=0) as client:
        with pytest.raises(ClientTimeout, match=r"the response to GET /slow"):
            await client.get("/slow")


async def test_app_exceptions_raise_in_the_test_unless_disabled() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise LookupError("from the app")

    async with TestClient(broken) as client:
        with pytest.raises(LookupError, match="from the app"):
            await client.get("/")
    async with TestClient(broken, raise_app_exceptions=False) as client:
        assert (await client.get("/")).status_code == 500


async def test_request_helpers_encode_params_json_and_forms() -> None:
    seen: list[tuple[bytes, bytes, bytes]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = (await receive())["body"]
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        seen.append((scope["query_string"], content_type, body))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": true}'})

    async with TestClient(app) as client:
        response = await client.post("/", params={"a": [1, 2]}, json={"x": 1})
        await client.put("/", data={"name": "ä b"})
        await client.patch("/", content="text body")
        await client.delete("/?q=1")
        await client.options("/")
        await client.post("/", data={"on": True, "none": None, "n": [1, 2]})
    assert response.json() == {"ok": True}
    assert seen[0] == (b"a=1&a=2", b"application/json", b'{"x": 1}')
    assert seen[1] == (b"", b"application/x-www-form-urlencoded", b"name=%C3%A4+b")
    assert seen[2][2] == b"text body"
    assert seen[3][0] == b"q=1"
    assert seen[5][2] == b"on=true&none=&n=1&n=2"  # like httpx


def test_headers_convert_to_a_dict() -> None:
    """``dict(response.headers)``: one entry per name, repeated headers joined with ", "."""
    headers = Headers([(b"Set-Cookie", b"a=1"), (b"content-type", b"text/plain")])
    headers.raw.append((b"set-cookie", b"b=2"))
    assert headers.keys() == ["set-cookie", "content-type"]
    assert dict(headers) == {"set-cookie": "a=1, b=2", "content-type": "text/plain"}


async def test_connections_can_be_fresh_each_time() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204})
            await send({"type": "http.response.body"})

    async with TestClient(app, keep_alive=False) as client:
        first, second = await client.get("/"), await client.get("/")
        assert first.connection_id != second.connection_id
        assert client.connections_opened == 2


async def test_memory_streams_behave_like_sockets() -> None:
    client, server = stream_pair(buffer_size=4)
    await client.send_all(b"abcd")
    with trio.move_on_after(0.01) as scope:
        await client.send_all(b"e")  # buffer full: blocks like a socket would
    assert scope.cancelled_caught
    client.set_read_chunk(1)
    assert await server.receive_some() == b"a"
    await client.aclose()
    assert await server.receive_until_eof() == b"bcd"  # the partial "e" was cancelled
    with pytest.raises(trio.BrokenResourceError):
        await server.send_all(b"to a closed peer")
    other_client, other_server = stream_pair()
    other_client.abort()
    with pytest.raises(trio.BrokenResourceError):
        await other_server.receive_some()


async def test_closing_a_memory_stream_wakes_its_pending_receive() -> None:
    """Like a trio socket: a task blocked in ``receive_some`` hears ClosedResourceError."""
    client, server = stream_pair()
    failures: list[BaseException] = []

    async def reader() -> None:
        try:
            await server.receive_some()
        except trio.ClosedResourceError as exc:
            failures.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await server.aclose()
    assert len(failures) == 1
    await client.aclose()


def body_echo(delay: float = 0) -> Any:
    """Echoes the request body after ``delay`` seconds (0: answers without reading when the
    body is ``skip``)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await trio.sleep(delay)
        body = b"" if scope["path"] == "/skip" else (await receive())["body"]
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": body or b"skipped"})

    return app


EXPECT = {"Expect": "100-continue"}


async def test_client_expecting_100_sends_its_body_after_the_go_ahead() -> None:
    async with TestClient(body_echo()) as client:
        response = await client.post("/", content=b"payload", headers=EXPECT)
    assert [status for status, _ in response.informational] == [100]
    assert response.content == b"payload"


async def test_client_expecting_100_keeps_its_body_when_answered_first(
    autojump_clock: Any,
) -> None:
    async with TestClient(body_echo()) as client:
        start = trio.current_time()
        response = await client.post("/skip", content=b"payload", headers=EXPECT)
        assert trio.current_time() == start  # no waiting out CONTINUE_WAIT
        again = await client.get("/skip")
    assert response.informational == [] and response.content == b"skipped"
    assert again.connection_id != response.connection_id  # the body was never sent


async def test_client_expecting_100_stops_waiting_after_a_second(autojump_clock: Any) -> None:
    """Like curl: a server slow to say 100 gets the body anyway after 1 s (RFC 9110 10.1.1)."""
    sent_at: list[float] = []

    async def body() -> Any:
        sent_at.append(trio.current_time())
        yield b"payload"

    async with TestClient(body_echo(delay=5)) as client:
        start = trio.current_time()
        response = await client.post("/", content=body(), headers=EXPECT)
    assert sent_at == [start + 1]
    assert response.content == b"payload"
