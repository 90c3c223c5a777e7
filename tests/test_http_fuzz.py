"""Property-based tests: random and mutated requests against the real HTTP layer.

Each example runs in its own trio run under a MockClock, so requests that never finish
meet the server's timeouts in virtual time and the suite stays fast.
"""

from __future__ import annotations

import re
from typing import Any

import h11
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_asgi.testing import TestClient

Scope = dict[str, Any]

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
PATH = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%20", min_size=1, max_size=8),
    max_size=4,
).map(lambda parts: "/" + "/".join(parts))


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A well-formed request and the response body our echo app must give for it."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]))
    path = draw(PATH)
    query = draw(st.one_of(st.just(""), TOKEN.map(lambda q: "?q=" + q)))
    headers = draw(st.lists(st.tuples(TOKEN.map(lambda n: "x-" + n), TOKEN), max_size=5))
    body = b""
    framing = b""
    if method in ("POST", "PUT"):
        body = draw(st.binary(max_size=300))
        if draw(st.booleans()):
            framing = b"Content-Length: %d\r\n" % len(body)
            encoded = body
        else:
            framing = b"Transfer-Encoding: chunked\r\n"
            cut = draw(st.integers(0, len(body)))
            parts = [part for part in (body[:cut], body[cut:]) if part]
            encoded = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    else:
        encoded = b""
    head = f"{method} {path}{query} HTTP/1.1\r\nHost: test\r\n".encode()
    head += b"".join(f"{name}: {value}\r\n".encode() for name, value in headers)
    raw = head + framing + b"\r\n" + encoded
    expected = b"" if method == "HEAD" else f"{method} {path} {len(body)}".encode()
    return raw, expected


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message["body"])
        if not message["more_body"]:
            break
    body = f"{scope['method']} {scope['raw_path'].decode()} {size}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def parse_responses(data: bytes, methods: list[bytes]) -> list[tuple[int, bytes]]:
    """Every complete response in ``data`` (raises if the bytes are not valid HTTP)."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    client.receive_data(b"")
    responses = []
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        client.send(h11.EndOfMessage())
        status, body = 0, b""
        while True:
            try:
                event = client.next_event()
            except h11.RemoteProtocolError:
                if status:  # the connection ended in the middle of a response
                    raise
                return responses
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                responses.append((status, body))
                break
            else:
                return responses
        if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
            break
        client.start_next_cycle()
    return responses


def run(main: Any, *args: Any) -> Any:
    return trio.run(main, *args, clock=trio.testing.MockClock(autojump_threshold=0))


async def exchange(data: bytes, chunk: int | None) -> bytes:
    async with TestClient(echo, timeout_request_header=5, timeout_request_body=5) as client:
        stream = await client.connect()
        stream.set_read_chunk(chunk)
        with trio.fail_after(60):  # virtual: only the server's own timeouts may end it
            await stream.send_all(data)
            await stream.send_eof()
            return await stream.receive_until_eof()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=4), st.one_of(st.none(), st.integers(1, 40)))
def test_well_formed_pipelined_requests_are_all_answered_in_order(
    batch: list[tuple[bytes, bytes]], chunk: int | None
) -> None:
    data = b"".join(raw for raw, _ in batch)
    response = run(exchange, data, chunk)
    methods = [raw.split(b" ", 1)[0] for raw, _ in batch]
    answers = parse_responses(response, methods)
    assert [status for status, _ in answers] == [200] * len(batch)
    assert [body for _, body in answers] == [expected for _, expected in batch]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw, _ = draw(requests())
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip":
            data[position] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[position]
        elif action == "insert":
            data[position:position] = draw(
                st.sampled_from([b"\r\n", b"\n", b" ", b":", b"\x00", b"0"])
            )
        else:
            del data[position:]
    return bytes(data) + draw(st.binary(max_size=20))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.one_of(st.none(), st.integers(1, 16)))
def test_mutated_requests_never_crash_or_hang_the_server(data: bytes, chunk: int | None) -> None:
    response = run(exchange, data, chunk)
    # Whatever came back starts as valid HTTP; the request method (so the body framing of
    # the responses) is unknown after mutation, so only the status lines are checked.
    assert response == b"" or response.startswith(b"HTTP/1.1 ")
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", response)]
    assert all(100 <= status <= 599 for status in statuses)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_get_an_error_or_nothing(data: bytes) -> None:
    response = run(exchange, data, None)
    answers = parse_responses(response, [b"GET"] * 4)
    assert all(status in (200, 400, 405, 408, 431, 501) for status, _ in answers)
