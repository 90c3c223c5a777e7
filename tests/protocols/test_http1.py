"""Synchronous transcripts of the HTTP/1.1 protocol layer: bytes in, events out."""

from __future__ import annotations

import h11
import pytest

from trio_asgi.protocols.http1 import (
    NEED_DATA,
    PAUSED,
    SERVER_NAME,
    BadRequest,
    HTTP1Protocol,
    InvalidResponse,
    http_date,
)


def proto(**kwargs: object) -> HTTP1Protocol:
    kwargs.setdefault("max_head_size", 16 * 1024)
    return HTTP1Protocol(**kwargs)  # type: ignore[arg-type]


def parse_response(data: bytes, method: bytes = b"GET") -> list[h11.Event]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    events = []
    while True:
        event = client.next_event()
        if event in (h11.NEED_DATA, h11.PAUSED):
            return events
        events.append(event)
        if isinstance(event, h11.EndOfMessage):
            return events


def test_request_then_body_events() -> None:
    p = proto()
    p.receive_data(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab")
    request = p.next_event()
    assert isinstance(request, h11.Request)
    assert request.target == b"/a?b=1"
    data = p.next_event()
    assert isinstance(data, h11.Data) and data.data == b"ab"
    assert p.next_event() is NEED_DATA
    p.receive_data(b"c")
    assert p.next_event().data == b"c"  # type: ignore[union-attr]
    assert isinstance(p.next_event(), h11.EndOfMessage)
    assert p.request_complete
    p.receive_data(b"GET /next HTTP/1.1\r\n")  # pipelined: held until the next cycle
    assert p.next_event() is PAUSED


def test_nothing_received_means_next_event_can_only_need_data() -> None:
    p = proto()
    assert p.nothing_received and p.next_event() is NEED_DATA
    p.receive_data(b"GET / HTTP/1.1\r\n")
    assert not p.nothing_received  # part of a head
    p.receive_data(b"Host: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(p.next_event(), h11.Request)
    assert not p.nothing_received  # a request in progress
    assert isinstance(p.next_event(), h11.EndOfMessage)
    p.response_head(200, [(b"content-length", b"0")])
    p.end()
    assert p.start_next_cycle()
    assert not p.nothing_received  # the pipelined request is waiting in the buffer
    assert isinstance(p.next_event(), h11.Request)
    assert isinstance(p.next_event(), h11.EndOfMessage)
    p.response_head(200, [(b"content-length", b"0")])
    p.end()
    assert p.start_next_cycle()
    assert p.nothing_received and p.next_event() is NEED_DATA
    p.receive_data(b"")  # the client closed
    assert not p.nothing_received
    assert isinstance(p.next_event(), h11.ConnectionClosed)


def test_response_gets_date_and_server_headers() -> None:
    p = proto()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    head = p.response_head(200, [(b"content-length", b"2")])
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"date: " + http_date() in head
    assert b"server: " + SERVER_NAME in head


@pytest.mark.parametrize(
    ("server_header", "date_header"), [(False, True), (True, False), (False, False)]
)
def test_default_headers_can_be_switched_off(server_header: bool, date_header: bool) -> None:
    p = proto(server_header=server_header, date_header=date_header)
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    head = p.response_head(204, [])
    assert (b"server:" in head) is server_header
    assert (b"date:" in head) is date_header


def test_app_headers_win_over_defaults() -> None:
    p = proto()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    head = p.response_head(204, [(b"server", b"mine"), (b"Date", b"yesterday")])
    assert head.count(b"server:") == 1 and b"server: mine" in head
    assert head.lower().count(b"date:") == 1 and b"Date: yesterday" in head


def test_date_is_cached_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    import trio_asgi.protocols.http1 as http1

    calls = []
    real = http1.formatdate

    def counting(*args: object, **kwargs: object) -> str:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(http1, "formatdate", counting)
    monkeypatch.setattr(http1.time, "time", lambda: 1_000_000.5)
    cache = http1._DateCache()
    first = cache()
    assert cache() == first == b"Mon, 12 Jan 1970 13:46:40 GMT"
    assert len(calls) == 1
    monkeypatch.setattr(http1.time, "time", lambda: 1_000_001.0)
    assert cache() == b"Mon, 12 Jan 1970 13:46:41 GMT"
    assert len(calls) == 2


def test_chunked_response_without_length() -> None:
    p = proto(server_header=False, date_header=False)
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    p.next_event()
    data = p.response_head(200, []) + p.body(b"hello") + p.end()
    events = parse_response(data)
    assert isinstance(events[0], h11.Response)
    assert (b"transfer-encoding", b"chunked") in events[0].headers
    assert events[1].data == b"hello"  # type: ignore[attr-defined]
    assert p.start_next_cycle()


def test_invalid_app_header_raises_and_leaves_room_for_a_500() -> None:
    p = proto()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    with pytest.raises(InvalidResponse):
        p.response_head(200, [(b"bad header", b"x")])
    with pytest.raises(InvalidResponse):
        p.response_head(200, [(b"x-injected", b"a\r\nevil: 1")])
    error = p.error_response(500)
    assert error is not None and error.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"connection: close" in error


def test_body_longer_than_content_length_is_refused() -> None:
    p = proto()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    p.response_head(200, [(b"content-length", b"1")])
    with pytest.raises(InvalidResponse):
        p.body(b"too long")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 requires Host
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded: value\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nbad header: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: x\n\n", 400),  # bare LF ending the head
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n\tcontinued\r\n\r\n", 400),  # obs-fold
        # RFC 9112 3.2: no relative targets, no fragments, "*" only for OPTIONS
        (b"GET items HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET ?page=2 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /page#section HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET http://x/page#section HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
)
def test_malformed_requests_map_to_a_status(raw: bytes, status: int) -> None:
    p = proto()
    p.receive_data(raw)
    with pytest.raises(BadRequest) as info:
        p.next_event()
    assert info.value.status == status
    response = p.error_response(info.value.status, info.value.detail)
    assert response is not None
    assert response.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in response


@pytest.mark.parametrize(
    "line",
    [
        b"GET /a/b?c=d HTTP/1.1",
        b"GET http://example.org/a?b HTTP/1.1",
        b"GET https://example.org HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
        b"CONNECT example.org:443 HTTP/1.1",  # (refused later with 405)
    ],
)
def test_the_four_forms_of_request_target_are_accepted(line: bytes) -> None:
    p = proto()
    p.receive_data(line + b"\r\nHost: x\r\n\r\n")
    assert type(p.next_event()) is h11.Request


def test_oversized_head_is_431() -> None:
    p = proto(max_head_size=1024)
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000)
    with pytest.raises(BadRequest) as info:
        p.next_event()
    assert info.value.status == 431


def test_error_response_to_a_head_request_has_no_body() -> None:
    """It was None (h11 refuses a body after a HEAD): a crashing app's client got no 500."""
    p = proto()
    p.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    response = p.error_response(500)
    assert response is not None
    [head, end] = parse_response(response, method=b"HEAD")
    assert isinstance(head, h11.Response) and head.status_code == 500
    assert (b"content-length", b"22") in head.headers
    assert isinstance(end, h11.EndOfMessage)
    assert response.endswith(b"\r\n\r\n")


def test_error_response_impossible_mid_response() -> None:
    p = proto()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    p.response_head(200, [])
    p.body(b"partial")
    assert p.error_response(500) is None
    assert p.response_in_progress


def test_pipelined_requests_come_out_one_cycle_at_a_time() -> None:
    p = proto()
    p.receive_data(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert p.next_event().target == b"/1"  # type: ignore[union-attr]
    assert isinstance(p.next_event(), h11.EndOfMessage)
    assert p.next_event() is PAUSED
    assert p.buffered_size > 0
    p.response_head(200, [(b"content-length", b"0")])
    p.end()
    assert p.start_next_cycle()
    assert p.next_event().target == b"/2"  # type: ignore[union-attr]


@pytest.mark.parametrize("length", [b"", b"Content-Length: 0\r\n"])
def test_a_request_without_a_body_is_complete_with_its_head(length: bytes) -> None:
    """The next request can follow without asking h11 for the (empty) end of this one;
    an app that asks still gets it."""
    p = proto()
    head = b"GET /1 HTTP/1.1\r\nHost: x\r\n%s\r\n" % length
    p.receive_data(head + b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert p.next_event().target == b"/1"  # type: ignore[union-attr]
    assert p.request_complete and not p.unread_body
    p.response_head(200, [(b"content-length", b"0")])
    p.end()
    assert not p.unread_body
    assert p.start_next_cycle()
    assert p.next_event().target == b"/2"  # type: ignore[union-attr]
    assert isinstance(p.next_event(), h11.EndOfMessage)  # (asked for, as receive() does)


def test_a_request_with_a_body_is_complete_only_when_it_was_read() -> None:
    p = proto()
    p.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    p.next_event()
    assert not p.request_complete
    p.receive_data(b"0\r\n\r\n")
    assert isinstance(p.next_event(), h11.EndOfMessage)
    assert p.request_complete


def test_no_next_cycle_while_the_request_body_is_unread() -> None:
    p = proto()
    p.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    p.next_event()
    p.response_head(200, [(b"content-length", b"0")])
    p.end()
    assert not p.start_next_cycle()


def test_http10_client_gets_connection_close() -> None:
    p = proto()
    p.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    p.next_event()
    head = p.response_head(200, [])
    assert b"connection: close" in head.lower()
    p.body(b"x")
    p.end()
    assert not p.start_next_cycle()


def test_expect_100_continue_is_tracked() -> None:
    p = proto()
    p.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    p.next_event()
    assert p.client_waiting_for_100_continue
    assert p.informational(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not p.client_waiting_for_100_continue


EXPECTING = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"


def test_an_early_hint_is_no_go_ahead() -> None:
    """h11 forgets the expectation after any 1xx; a 103 does not tell the client to send its
    body (RFC 9110 15.2), so the client still waits for 100."""
    p = proto()
    p.receive_data(EXPECTING)
    p.next_event()
    p.informational(103, [(b"link", b"</a.css>; rel=preload")])
    assert p.client_waiting_for_100_continue
    assert p.informational(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not p.client_waiting_for_100_continue


@pytest.mark.parametrize("parsed", [False, True])
def test_a_client_that_sent_its_body_anyway_waits_for_nothing(parsed: bool) -> None:
    """RFC 9110 10.1.1 lets the client send the content without waiting for 100: once any
    of it arrived (parsed or not), the client is not waiting, and an unread rest may be
    drained after the response instead of closing."""
    p = proto()
    p.receive_data(EXPECTING + b"da")
    p.next_event()
    if parsed:
        assert p.next_event() == h11.Data(data=b"da")
    assert not p.client_waiting_for_100_continue
    p.response_head(200, [(b"content-length", b"0")])
    p.end()
    assert p.unread_body
    p.receive_data(b"ta")
    assert p.finish_body_in_buffer() and p.start_next_cycle()


def test_a_client_still_holding_its_body_is_not_drained() -> None:
    p = proto()
    p.receive_data(EXPECTING)
    p.next_event()
    p.response_head(200, [(b"content-length", b"0")])
    p.end()
    assert not p.unread_body  # it will not send the body: close instead of waiting for it


def test_a_head_whose_content_length_the_body_cannot_match_leaves_room_for_a_500() -> None:
    p = proto()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    with pytest.raises(InvalidResponse, match="Content-Length is 3, but the body is 5 bytes"):
        p.response_head(200, [(b"content-length", b"3")], body=5, final=True)
    with pytest.raises(InvalidResponse, match="the body is at least 4 bytes"):
        p.response_head(200, [(b"content-length", b"3")], body=4)
    error = p.error_response(500)  # h11 never saw the refused heads
    assert error is not None and error.startswith(b"HTTP/1.1 500 ")
    p = proto()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.next_event()
    assert p.response_head(200, [(b"content-length", b"3")], body=2)  # more may follow


@pytest.mark.parametrize("closed", [False, True])
def test_empty_lines_before_a_request_line_are_ignored(closed: bool) -> None:
    """RFC 9112 2.2 (SHOULD): e.g. the CRLF an old client sends after a POST body."""
    p = proto()
    p.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab\r\n")
    assert isinstance(p.next_event(), h11.Request)
    assert p.next_event() == h11.Data(data=b"ab")
    assert isinstance(p.next_event(), h11.EndOfMessage)
    p.response_head(200, [(b"content-length", b"0")])
    p.end()
    assert p.start_next_cycle()
    assert p.next_event() is NEED_DATA and p.buffered_size == 0  # the empty line is gone
    p.receive_data(b"\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    if closed:
        p.receive_data(b"")
    request = p.next_event()
    assert isinstance(request, h11.Request) and request.target == b"/next"
    assert isinstance(p.next_event(), h11.EndOfMessage)
    assert p.peer_closed is closed


def test_accept_switch_keeps_trailing_bytes() -> None:
    p = proto()
    p.receive_data(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nEXTRA"
    )
    assert isinstance(p.next_event(), h11.Request)
    assert isinstance(p.next_event(), h11.EndOfMessage)
    assert p.next_event() is PAUSED
    data = p.accept_switch([(b"upgrade", b"websocket"), (b"connection", b"Upgrade")])
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert p.trailing_data == b"EXTRA"


def test_peer_closed_is_reported() -> None:
    p = proto()
    assert not p.peer_closed
    p.receive_data(b"")
    assert p.peer_closed
    assert isinstance(p.next_event(), h11.ConnectionClosed)


_REQUESTS = (
    b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"\r\n",  # an empty line before the next request line, which is ignored (RFC 9112 2.2)
    b"GET /3 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n",
)
_PIPELINE = b"".join(_REQUESTS)


def _serve_all(pieces: list[bytes], *, closed: bool) -> tuple[list[bytes], dict[int, bool]]:
    """Drive ``pieces`` through a protocol the way the connection does: the targets of the
    requests it parsed, and ``nothing_received`` whenever it needed data, by bytes fed."""
    p = proto()
    feed = iter([*pieces, *([b""] if closed else [])])
    fed = 0
    targets: list[bytes] = []
    idle: dict[int, bool] = {}
    while True:
        event = p.next_event()
        if event is NEED_DATA:
            idle[fed] = p.nothing_received
            if p.nothing_received:
                assert p.buffered_size == 0 and p.next_event() is NEED_DATA
            data = next(feed, None)
            if data is None:
                return targets, idle
            p.receive_data(data)
            fed += len(data)
            assert p.peer_closed is (data == b"")
        elif isinstance(event, h11.Request):
            targets.append(event.target)
        elif isinstance(event, h11.EndOfMessage):
            p.response_head(200, [(b"content-length", b"0")])
            p.end()
            assert p.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            return targets, idle


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 1000])
def test_pipelined_requests_parse_the_same_however_the_bytes_are_split(
    size: int, closed: bool
) -> None:
    """What was received but not parsed is tracked between requests (not asked of h11),
    so it must stay right across reads, empty lines, pipelining and the peer's close; an
    empty line split between two reads is still ignored."""
    pieces = [_PIPELINE[i : i + size] for i in range(0, len(_PIPELINE), size)]
    targets, idle = _serve_all(pieces, closed=closed)
    assert targets == [b"/1", b"/2", b"/3"]
    # Nothing of a next request is there exactly at the boundaries between requests.
    boundaries = {sum(map(len, _REQUESTS[:n])) for n in range(len(_REQUESTS) + 1)}
    assert idle == {fed: fed in boundaries for fed in idle}
    assert 0 in idle and len(_PIPELINE) in idle


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",  # bare LF
        b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n",  # a fragment
    ],
)
@pytest.mark.parametrize("size", [1, 5, 1000])
@pytest.mark.parametrize("pipelined", [False, True])
def test_a_bad_head_is_refused_however_it_arrives(head: bytes, size: int, pipelined: bool) -> None:
    data = (b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n" if pipelined else b"") + head
    p = proto()
    with pytest.raises(BadRequest) as caught:
        for start in range(0, len(data), size):
            p.receive_data(data[start : start + size])
            event = p.next_event()
            while isinstance(event, (h11.Request, h11.EndOfMessage)):
                if isinstance(event, h11.EndOfMessage):
                    p.response_head(200, [(b"content-length", b"0")])
                    p.end()
                    assert p.start_next_cycle()
                event = p.next_event()
    assert caught.value.status == 400
