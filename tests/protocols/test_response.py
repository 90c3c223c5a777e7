"""The response writer against h11 itself: same bytes, same keep-alive, same refusals.

``protocols/response.py`` writes responses by h11's rules without h11's send path, so h11 is
the oracle here: for each generated request and response, both write it (or both refuse it
at the same step), and both agree on whether the connection may carry another request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_asgi.protocols.response import (
    InvalidResponse,
    ResponseWriter,
    checked_fields,
    reason_phrase,
)

Fields = list[tuple[bytes, bytes]]


@dataclass
class Exchange:
    method: bytes
    version: bytes
    request_connection: bytes | None
    status: int
    headers: Fields
    pieces: list[bytes]
    trailers: Fields = field(default_factory=list)
    informational: list[int] = field(default_factory=list)


def request_bytes(exchange: Exchange) -> bytes:
    head = b"%s / HTTP/%s\r\nHost: x\r\n" % (exchange.method, exchange.version)
    if exchange.request_connection is not None:
        head += b"Connection: %s\r\n" % exchange.request_connection
    return head + b"\r\n"


def with_h11(exchange: Exchange) -> list[bytes | str]:
    """What h11 writes at each step, ``"refused"`` at the step it refuses, then whether the
    connection stays open."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request_bytes(exchange))
    assert type(conn.next_event()) is h11.Request
    assert type(conn.next_event()) is h11.EndOfMessage
    out: list[bytes | str] = []
    try:
        for status in exchange.informational:
            informational = h11.InformationalResponse(
                status_code=status, headers=[], reason=reason_phrase(status)
            )
            out.append(conn.send(informational))
        response = h11.Response(
            status_code=exchange.status,
            headers=exchange.headers,
            reason=reason_phrase(exchange.status),
        )
        out.append(conn.send(response))
        for piece in exchange.pieces:
            out.append(conn.send(h11.Data(data=piece)))
        out.append(conn.send(h11.EndOfMessage(headers=exchange.trailers)))
    except h11.LocalProtocolError:
        return [*out, "refused"]
    return [*out, "keep-alive" if conn.our_state is h11.DONE else "close"]


def with_writer(exchange: Exchange) -> list[bytes | str]:
    writer = ResponseWriter()
    tokens = (exchange.request_connection or b"").lower().split(b",")
    writer.start(
        exchange.method,
        exchange.version,
        close=b"close" in [token.strip() for token in tokens],
    )
    out: list[bytes | str] = []
    try:
        for status in exchange.informational:
            out.append(writer.informational(status, []))
        out.append(writer.head(exchange.status, checked_fields(exchange.headers)))
        for piece in exchange.pieces:
            out.append(writer.body(piece))
        out.append(writer.end(exchange.trailers))
    except InvalidResponse:
        return [*out, "refused"]
    return [*out, "keep-alive" if writer.keep_alive else "close"]


# Each field name with values that matter to it (and some that do not parse).
fields = st.one_of(
    st.tuples(
        st.sampled_from([b"content-length", b"Content-Length"]),
        st.sampled_from([b"0", b"3", b"5", b"5, 5", b"3, 5", b"005", b"1" * 21, b"-1", b""]),
    ),
    st.tuples(
        st.sampled_from([b"transfer-encoding", b"Transfer-Encoding"]),
        st.sampled_from([b"chunked", b"Chunked", b"gzip", b"gzip, chunked"]),
    ),
    st.tuples(
        st.sampled_from([b"connection", b"Connection"]),
        st.sampled_from([b"close", b"keep-alive", b"Keep-Alive, Upgrade", b"upgrade, close"]),
    ),
    st.tuples(
        st.sampled_from([b"content-type", b"X-Custom"]),
        st.sampled_from([b"text/plain", b"", b"tab\tinside", b"caf\xc3\xa9", b"\x01ctl"]),
    ),
)
# Fields that are not HTTP at all, added to some responses (most stay well-formed, so
# that the framing and keep-alive rules get exercised).
malformed = st.sampled_from(
    [
        *[[]] * 8,
        [(b"bad name", b"1")],
        [(b"bad:name", b"1")],
        [(b"", b"1")],
        [(b"x", b" padded")],
        [(b"x", b"a\r\nb")],
        [(b"x", b"a\x00b")],
        [(b"x", b"\x0bvt")],
    ]
)
exchanges = st.builds(
    Exchange,
    method=st.sampled_from([b"GET", b"HEAD", b"POST"]),
    version=st.sampled_from([b"1.1", b"1.0"]),
    request_connection=st.sampled_from([None, b"close", b"keep-alive", b"Keep-Alive, Close"]),
    status=st.sampled_from([200, 201, 204, 304, 404, 500, 599, 199, 1000]),
    headers=st.tuples(st.lists(fields, max_size=4), malformed).map(
        lambda parts: parts[0] + parts[1]
    ),
    pieces=st.lists(st.sampled_from([b"", b"abc", b"de", b"x" * 20]), max_size=3),
    trailers=st.sampled_from([[], [(b"x-checksum", b"1")], [(b"bad name", b"1")]]),
    informational=st.sampled_from([[], [100], [103], [100, 103], [99], [200]]),
)


@settings(
    max_examples=2000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(exchanges)
def test_the_writer_says_what_h11_would(exchange: Exchange) -> None:
    assert with_writer(exchange) == with_h11(exchange)


@pytest.mark.parametrize(
    ("exchange", "expected"),
    [
        pytest.param(
            Exchange(b"GET", b"1.1", None, 200, [(b"content-length", b"5, 5")], [b"hello"]),
            [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"hello", b"", "keep-alive"],
            id="equal-content-length-copies-fold",
        ),
        pytest.param(
            Exchange(b"GET", b"1.1", None, 200, [], [b"hello"], [(b"x-sum", b"1")]),
            [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n",
                b"0\r\nx-sum: 1\r\n\r\n",
                "keep-alive",
            ],
            id="unknown-length-is-chunked-for-http11",
        ),
        pytest.param(
            Exchange(b"GET", b"1.0", None, 200, [], [b"hello"]),
            [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"hello", b"", "close"],
            id="unknown-length-ends-with-the-connection-for-http10",
        ),
        pytest.param(
            Exchange(b"HEAD", b"1.1", None, 200, [], []),
            [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"", "keep-alive"],
            id="head-announces-what-get-would-get",
        ),
        pytest.param(
            Exchange(b"GET", b"1.1", b"close", 204, [(b"connection", b"upgrade")], []),
            [
                b"HTTP/1.1 204 No Content\r\nConnection: close\r\nConnection: upgrade\r\n\r\n",
                b"",
                "close",
            ],
            id="closing-keeps-the-apps-tokens",
        ),
        pytest.param(
            Exchange(b"GET", b"1.1", None, 200, [(b"Connection", b"close")], []),
            [
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"0\r\n\r\n",
                "close",
            ],
            id="the-apps-connection-close-is-kept-as-sent",
        ),
        pytest.param(
            Exchange(b"GET", b"1.1", None, 200, [(b"content-length", b"3")], [b"abcd"]),
            [b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", "refused"],
            id="too-much-body",
        ),
        pytest.param(
            Exchange(b"GET", b"1.1", None, 200, [(b"x", b"a\r\nInjected: 1")], []),
            ["refused"],
            id="no-header-injection",
        ),
    ],
)
def test_examples(exchange: Exchange, expected: list[bytes | str]) -> None:
    assert with_writer(exchange) == expected == with_h11(exchange)


def test_header_names_and_values_may_be_ascii_str_or_bytes_like() -> None:
    assert checked_fields([("X-A", "1"), (bytearray(b"x-b"), memoryview(b"2"))]) == [
        (b"X-A", b"x-a", b"1"),
        (b"x-b", b"x-b", b"2"),
    ]
    for bad in [("x-a", "caf\u00e9"), (1, b"1"), (b"x-a", None)]:
        with pytest.raises(InvalidResponse):
            checked_fields([bad])


def test_switching_protocols_ends_http_on_the_connection() -> None:
    writer = ResponseWriter()
    writer.start(b"GET", b"1.1", close=False)
    assert writer.informational(101, [(b"upgrade", b"websocket")]) == (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
    )
    assert not writer.keep_alive
    with pytest.raises(InvalidResponse):
        writer.head(200, [])


def test_body_pieces_pass_the_data_object_through() -> None:
    class FileRange:
        def __len__(self) -> int:
            return 10

    writer = ResponseWriter()
    writer.start(b"GET", b"1.1", close=False)
    writer.head(200, [])
    data = FileRange()
    assert writer.body_pieces(data) == [b"a\r\n", data, b"\r\n"]
