"""WSGI responses as a client receives them: replaced heads, hop-by-hop headers, a view
that calls sys.exit(), a body read after the response.

Every test runs a real server (``serve_in_background``) on a loopback socket and talks to it
with raw HTTP/1.1, so what is checked is what a client really receives.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from trio_asgi.testing import LiveServer, serve_in_background

from .wsgi_helpers import Flag

Environ = dict[str, Any]

TIMEOUT = 10.0


async def exchange(server: LiveServer, request: bytes) -> bytes:
    """Send ``request`` (which asks for ``Connection: close``) and read until the server
    closes the connection."""
    stream = await trio.open_tcp_stream(server.host, server.port)
    try:
        await stream.send_all(request)
        response = b""
        while chunk := await stream.receive_some():
            response += chunk
        return response
    finally:
        await stream.aclose()


def split_response(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-cased names, body with chunked framing removed)."""
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        unframed = b""
        while body:
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            unframed += body[:size]
            body = body[size + 2 :]
        body = unframed
    return int(status_line.split(" ")[1]), headers, body


GET = b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


# -- start_response(..., exc_info) must replace the whole response ---------------------------


ERROR_PAGE = (b"<h1>Internal error</h1>\n", b"<p>the view failed while writing</p>\n")


def replaced_after_failed_write(replacement: str) -> Any:
    """An app whose first write() breaks its own Content-Length (a RuntimeError from the
    server), and whose error handling (as a framework's error middleware does) replaces the
    response with start_response(..., exc_info) before anything was sent."""

    def app(environ: Environ, start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        try:
            write(b"more than three bytes")
        except RuntimeError:
            if replacement == "streamed-error-page":
                start_response(
                    "500 Internal Server Error", [("Content-Type", "text/html")], sys.exc_info()
                )

                def page() -> Iterator[bytes]:
                    yield from ERROR_PAGE

                return page()
            start_response("503 Service Unavailable", [("Retry-After", "1")], sys.exc_info())
            return []
        return []

    return app


@pytest.mark.parametrize("replacement", ["streamed-error-page", "empty-503"])
async def test_exc_info_replacement_forgets_the_replaced_content_length(replacement: str) -> None:
    """PEP 3333, start_response: "if exc_info is supplied, and no HTTP headers have been
    output yet, start_response should replace the currently-stored HTTP response headers
    with the newly-supplied ones". The Content-Length of the replaced headers must not
    apply to the replacement response.

    Before, the first write() computed the head (setting the adaptor's remaining byte count
    from the old Content-Length: 3) and then raised before sending it; that count survives
    the replacement. A streamed error page is cut to 3 bytes (and sent with a complete,
    valid-looking chunked framing), and an empty 503 is turned into a server 500 "body
    ended 3 bytes short".
    """
    app = replaced_after_failed_write(replacement)
    with trio.fail_after(TIMEOUT):
        async with serve_in_background(app, interface="wsgi", access_log=False) as server:
            status, headers, body = split_response(await exchange(server, GET))
    if replacement == "streamed-error-page":
        assert status == 500
        assert headers.get("content-type") == "text/html"
        assert body == b"".join(ERROR_PAGE), f"error page truncated to {body!r}"
    else:
        assert status == 503, f"the app's 503 became a {status}"
        assert headers.get("retry-after") == "1"
        assert body == b""


# -- hop-by-hop headers belong to the server -------------------------------------------------


async def test_hop_by_hop_headers_from_the_app_never_reach_the_client() -> None:
    """PEP 3333, "Other HTTP Features": applications are forbidden from using hop-by-hop
    headers; "These features are the exclusive province of the actual web server, and a
    server or gateway should consider it a fatal error for an application to attempt
    sending them, and raise an error if they are supplied to start_response()." (RFC 9110
    7.6.1: Keep-Alive and Upgrade are connection-specific.) wsgiref and waitress raise,
    gunicorn drops them; none lets them through.

    It used to forward them. Here the client is told it may keep the connection idle
    for 600 s (clients such as undici honour that hint) while the server's keep-alive
    timeout is 5 s, and is offered an h2c upgrade the server does not implement.
    """

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Keep-Alive", "timeout=600, max=1000"),
                ("Upgrade", "h2c"),
            ],
        )
        return [b"hello"]

    with trio.fail_after(TIMEOUT):
        async with serve_in_background(app, interface="wsgi", access_log=False) as server:
            status, headers, _ = split_response(await exchange(server, GET))
    assert status == 200  # dropped, as gunicorn does (wsgiref's error would fail the app)
    leaked = sorted(name for name in headers if name in ("keep-alive", "upgrade"))
    assert leaked == [], f"hop-by-hop headers from the app reached the client: {leaked}"


# -- one request cannot stop the server ------------------------------------------------------


async def test_sys_exit_in_a_wsgi_view_does_not_stop_the_server() -> None:
    """The app runs in a worker thread, where ``sys.exit()`` ends only that thread: Python's
    docs (sys.exit) say it "will only exit the process when called from the main thread",
    and waitress, a threaded WSGI server, logs it and carries on. The README promises that
    "a crashing app gets the client a 500 ... other connections are unaffected".

    Before, the thread's SystemExit is re-raised in the request's trio task and nothing stops
    it: it ends ``Server.serve()`` itself, so the client gets no response at all (the
    connection just closes) and every other connection and future request is gone.
    """

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/exit":
            sys.exit("a view gave up")  # e.g. a CLI helper reused inside a view
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"still serving"]

    exit_request = b"GET /exit HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"

    async def fetch(server: LiveServer, request: bytes) -> bytes:
        try:
            return await exchange(server, request)
        except (trio.BrokenResourceError, OSError):
            return b""  # reset: the server is gone

    first = second = b""
    stopped: BaseException | None = None
    try:
        with trio.fail_after(TIMEOUT):
            async with serve_in_background(app, interface="wsgi", access_log=False) as server:
                first = await fetch(server, exit_request)
                second = await fetch(server, GET)
    except BaseException as exc:  # what stopped the server (a SystemExit in a group)
        if isinstance(exc, trio.TooSlowError):
            raise
        stopped = exc
    assert first.startswith(b"HTTP/1.1 500 "), (
        f"the client got {first!r} instead of a 500; the server stopped with {stopped!r}"
    )
    assert second and split_response(second)[2] == b"still serving", (
        f"the server no longer serves ({stopped!r})"
    )


# -- wsgi.input stays readable while the app runs --------------------------------------------


async def test_body_read_after_the_last_response_byte_is_not_a_disconnect() -> None:
    """A webhook receiver acknowledges at once (202 with its Content-Length) and only then
    reads the payload, still inside its response iterable. The client sent the whole body
    and is still connected; PEP 3333 puts no limit on when the app may read wsgi.input
    while it runs, and threaded servers (gunicorn, waitress) hand it the body. The README
    promises ClientDisconnected only "if the client leaves before the body is complete".

    Before, once the declared Content-Length is reached the adaptor sends the final body
    message, the HTTP cycle then answers every receive() with http.disconnect, and the
    read raises ClientDisconnected("the client disconnected before sending the whole
    body"), which is false. (Draining wsgi.input in the iterable's close() fails the same
    way.)
    """
    outcome = Flag()

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("202 Accepted", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        yield b"accepted\n"
        try:
            outcome.set(environ["wsgi.input"].read())
        except OSError as exc:
            outcome.set(exc)

    request = (
        b"POST /hook HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 13\r\n\r\n"
        b'{"event": 42}'
    )
    with trio.fail_after(TIMEOUT):
        async with serve_in_background(app, interface="wsgi", access_log=False) as server:
            status, _, body = split_response(await exchange(server, request))
            read = await outcome.wait()
    assert (status, body) == (202, b"accepted\n")
    assert read == b'{"event": 42}', f"the app could not read the body it was sent: {read!r}"


async def test_connection_close_from_the_app_is_honoured() -> None:
    """The one hop-by-hop header an app may set with effect: the server closes after it."""

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [b"bye"]

    keep_alive = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
    with trio.fail_after(TIMEOUT):
        async with serve_in_background(app, interface="wsgi", access_log=False) as server:
            status, headers, body = split_response(await exchange(server, keep_alive))
    assert (status, body) == (200, b"bye")
    assert headers.get("connection") == "close"
