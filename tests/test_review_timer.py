"""Review of f924a12..af5c53b: keep-alive waits bounded by the Heartbeat (d36f31d), bodiless
requests complete with their head (2e3aa6e), unread_body/keep-alive and header buffers
(d2f4e8f, af5c53b).

No regression was found in the range: the keep-alive timer closed connections at exactly the
same (mock) times as 2e3aa6e~1 in every scenario tried (see the report). What fails here is
a pre-existing defect in the code 2e3aa6e touched: a request whose framing says it has no
content is still treated as "the client holds its body back for a 100 Continue".
"""

from __future__ import annotations

from typing import Any

import trio

from trio_asgi.protocols.http1 import HTTP1Protocol
from trio_asgi.testing import TestClient

from .conftest import status_of


async def ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers without reading the (empty) body, as most apps do for a GET or an empty POST."""
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def read_response(stream: Any) -> bytes:
    data = b""
    with trio.fail_after(10):
        while not data.endswith(b"\r\n\r\nok"):
            chunk = await stream.receive_some()
            if not chunk:
                break
            data += chunk
    return data


async def test_empty_request_with_expect_100_continue_keeps_the_connection(
    autojump_clock: Any,
) -> None:
    """``POST`` with ``Content-Length: 0`` and ``Expect: 100-continue`` (some clients, e.g.
    .NET's HttpWebRequest, send the expectation on every POST, empty ones included): the
    framing says there is no content, so the client holds nothing back (RFC 9110 10.1.1 lets
    the server skip the 100 "if the framing indicates that there is no content"). The server
    still announces ``connection: close`` and drops the keep-alive connection, so every such
    request costs a new connection; an app that calls receive() even gets a useless
    ``100 Continue`` first.

    Not a regression: 2e3aa6e~1 (f924a12) does the same. But since 2e3aa6e the protocol knows
    the request is bodiless (``_bodiless``) and still reports the client as waiting.
    Cause: ``HTTP1Protocol.client_waiting_for_100_continue`` (protocols/http1.py:279-283)
    looks only at ``_continue_pending`` and the buffer, not at ``_bodiless``;
    ``HTTPCycle.head`` (asgi/http.py:336-340) then adds ``Connection: close``.
    """
    async with TestClient(ok, timeout_keep_alive=5) as client:
        stream = await client.connect()
        await stream.send_all(
            b"POST /empty HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"
        )
        first = await read_response(stream)
        assert status_of(first) == 200
        assert b"connection: close" not in first.lower()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        second = await read_response(stream)
        assert status_of(second) == 200


def test_bodiless_request_with_expect_is_not_waiting_for_100() -> None:
    """Sans-IO: after the head of a request without content (no Content-Length / Transfer-
    Encoding, or Content-Length: 0) ``request_complete`` is True (2e3aa6e), yet
    ``client_waiting_for_100_continue`` says the client holds its body back: the two
    contradict each other. Same on 2e3aa6e~1 (there ``request_complete`` was False until the
    empty EndOfMessage was read). Cause: protocols/http1.py:279-283 ignores ``_bodiless``.
    """
    for length in (b"", b"Content-Length: 0\r\n"):
        p = HTTP1Protocol(max_head_size=16384)
        p.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n%s\r\n" % length)
        p.next_event()
        assert p.request_complete
        assert not p.client_waiting_for_100_continue
