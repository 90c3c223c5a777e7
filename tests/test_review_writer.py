"""Review of f924a12 (responses written by ``protocols/response.py`` instead of h11's send path).

Each test here fails on f924a12; each docstring says what is wrong, what h11 did before
(f924a12~1), and where the cause is.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_asgi.protocols.http1 import HTTP1Protocol
from trio_asgi.testing import TestClient

Scope = dict[str, Any]


def reply(headers: list[tuple[Any, Any]] | None = None, body: bytes = b"hello") -> Any:
    """An app that answers at once, without reading the request body."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers or []})
        await send({"type": "http.response.body", "body": body})

    return app


async def until_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while piece := await stream.receive_some(65536):
        data += piece
    return data


# -- a response that ends the connection no longer ends it at once ----------------------------


def test_unread_body_is_not_reported_when_the_response_closes_the_connection() -> None:
    """``unread_body`` says "only draining can save the connection", but after a response
    that ends the connection (HTTP/1.0 client, ``Connection: close`` from either side)
    nothing can save it, and f924a12 still says True.

    Before: h11's own state was MUST_CLOSE (not DONE) once such a response ended, so
    ``unread_body`` (``our_state is DONE and their_state is SEND_BODY``) was False.
    Now: ``HTTP1Protocol.unread_body`` (protocols/http1.py:286-292) only checks
    ``self._writer.state == DONE`` and ignores ``self._writer.keep_alive``; so
    ``Connection._prepare_next_cycle`` (connection.py:649-670) drains the body of a
    connection that is going to be closed anyway. The three server tests below are what
    that costs a client.
    """
    p = HTTP1Protocol(max_head_size=16 * 1024)
    p.receive_data(b"POST / HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc")
    p.next_event()  # the request
    p.response_head(200, [(b"content-length", b"2")], body=2, final=True)
    p.body(b"ok")
    p.end()
    assert not p.start_next_cycle()
    assert not p.unread_body  # the connection closes after this response: nothing to drain


async def test_connection_close_request_with_unread_body_is_closed_at_once(
    autojump_clock: Any,
) -> None:
    """A request with ``Connection: close`` whose body the app did not read (the rest of it
    not arrived yet): the server should close (lingering) right after the response, as
    before; f924a12 first waits up to DRAIN_TIMEOUT (2 s) to drain a body that can no
    longer serve any next request, so the client sees the end of the connection 2 s late.

    Before: EOF right after the response (h11 in MUST_CLOSE: ``unread_body`` False, so
    ``_prepare_next_cycle`` returned False and the lingering close half-closed at once).
    Cause: ``HTTP1Protocol.unread_body`` ignores ``ResponseWriter.keep_alive``
    (protocols/http1.py:286-292), and ``_prepare_next_cycle`` (connection.py:652) drains
    whenever it says True.
    """
    async with TestClient(reply([(b"content-length", b"5")])) as client:
        stream = await client.connect()
        await stream.send_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\nabcde"
        )
        start = trio.current_time()
        response = await until_eof(stream)
        closed_after = trio.current_time() - start
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"\r\n\r\nhello")
    assert closed_after < 0.5  # f924a12: 2.0 (DRAIN_TIMEOUT)


async def test_http10_close_delimited_response_is_not_held_back_by_an_unread_body(
    autojump_clock: Any,
) -> None:
    """An HTTP/1.0 client gets a body of unknown length delimited by the end of the
    connection, so it has its response only when the server closes. With a request body
    the app did not read (not all of it arrived), f924a12 drains it for up to DRAIN_TIMEOUT
    before closing: every such response takes 2 s longer to complete.

    Before: the connection was half-closed right after the response (h11 in MUST_CLOSE, so
    ``unread_body`` was False and no drain was tried).
    Cause: ``HTTP1Protocol.unread_body`` (protocols/http1.py:286-292) checks only
    ``ResponseWriter.state == DONE``, not ``keep_alive``; ``_prepare_next_cycle``
    (connection.py:652-670) then drains.
    """
    async with TestClient(reply()) as client:
        stream = await client.connect()
        await stream.send_all(b"POST /upload HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc")
        start = trio.current_time()
        response = await until_eof(stream)
        done_after = trio.current_time() - start
    assert b"content-length" not in response.lower()  # close-delimited
    assert response.endswith(b"\r\n\r\nhello")
    assert done_after < 0.5  # f924a12: 2.0 (DRAIN_TIMEOUT)


async def test_apps_connection_close_with_unread_body_is_closed_at_once(
    autojump_clock: Any,
) -> None:
    """The app answers ``Connection: close`` (e.g. a 413 or 401 to an upload it will not
    read) on a keep-alive HTTP/1.1 connection: f924a12 still drains the unread body for up
    to 2 s before closing, although the response promised the connection ends.

    Before: h11 went to MUST_CLOSE on the app's ``Connection: close``; ``unread_body`` was
    False and the connection was closed (lingering) at once.
    Cause: ``HTTP1Protocol.unread_body`` (protocols/http1.py:286-292) ignores
    ``ResponseWriter.keep_alive``, which ``ResponseWriter.head`` set to False
    (protocols/response.py:206); ``HTTPCycle.keep_alive`` stays True, so
    ``_continue_after`` reaches ``_prepare_next_cycle`` (connection.py:652).
    """
    async with TestClient(reply([(b"connection", b"close"), (b"content-length", b"5")])) as client:
        stream = await client.connect()
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        start = trio.current_time()
        response = await until_eof(stream)
        closed_after = trio.current_time() - start
    assert response.endswith(b"\r\n\r\nhello")
    assert closed_after < 0.5  # f924a12: 2.0 (DRAIN_TIMEOUT)


# -- header values h11 accepted are refused --------------------------------------------------


class Token(bytes):
    """A bytes subclass (as numpy.bytes_ is, or an app's own tagged value type)."""


@pytest.mark.parametrize(
    "field",
    [
        pytest.param((b"x-token", Token(b"abc")), id="bytes-subclass-value"),
        pytest.param((Token(b"x-token"), b"abc"), id="bytes-subclass-name"),
    ],
)
async def test_bytes_subclass_header_is_sent(field: tuple[bytes, bytes]) -> None:
    """A header name or value that is an instance of a ``bytes`` subclass: f924a12 refuses
    the response (500, "header names and values must be bytes, got ...") although it *is*
    bytes.

    Before: h11's ``bytesify`` passed anything but str/int through ``bytes(s)``, so the
    response went out with the header.
    Cause: ``_as_bytes`` (protocols/response.py:58-69) tests ``type(value) is bytes`` and
    then only str/bytearray/memoryview, never ``isinstance(value, bytes)``.
    """
    async with TestClient(reply([field]), raise_app_exceptions=False) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers.get("x-token") == "abc"
