"""HTTP/1.1 as a sans-IO state machine: bytes in, request events out (h11 parses them);
responses in, bytes out (``response.py`` writes them, by h11's rules).

Nothing here imports trio or calls the application, so each policy below (what a malformed
request gets, which headers the server adds, when a connection may carry another request) is
tested with plain synchronous transcripts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from email.utils import formatdate
from typing import Final
from urllib.parse import urlsplit

import h11

from .._version import __version__
from .response import (
    BODY,
    DONE,
    IDLE,
    InvalidResponse,
    ResponseWriter,
    checked_fields,
    reason_phrase,
)
from .websocket import wants_websocket

NEED_DATA: Final = h11.NEED_DATA
PAUSED: Final = h11.PAUSED
Request = h11.Request
Data = h11.Data
EndOfMessage = h11.EndOfMessage
ConnectionClosed = h11.ConnectionClosed

SERVER_NAME: Final = f"trio-asgi/{__version__}".encode()
# Connection-level fields (RFC 9110 7.6.1): the server's business, not an app's.
HOP_BY_HOP_HEADERS: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_PLAIN_TEXT: Final = (b"content-type", b"text/plain; charset=utf-8")
_SERVER_FIELD: Final = (b"server", b"server", SERVER_NAME)
# h11's states for a client whose request is whole. (A request that proposed an Upgrade
# stays in MIGHT_SWITCH_PROTOCOL: h11 never sees the response that declines it.)
_REQUEST_COMPLETE: Final = frozenset({h11.DONE, h11.MUST_CLOSE, h11.MIGHT_SWITCH_PROTOCOL})


class BadRequest(Exception):
    """The peer broke HTTP/1.1; answer with ``status`` (400, 431, ...) and close.

    ``detail`` is for our log; ``public`` is what the client may read (h11's messages quote
    the offending bytes, which we do not reflect back).
    """

    def __init__(self, status: int, detail: str, *, public: bool = True) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.public = detail if public else None


class _DateCache:
    """The ``Date`` value, formatted at most once per second.

    Formatting a date costs about as much as serializing the rest of a small response head,
    and its value only changes once a second.
    """

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._value = formatdate(now, usegmt=True).encode("ascii")
            self._second = now
        return self._value


http_date = _DateCache()


def _check_head(buffered: bytes, max_size: int) -> None:
    """Checks on a request head that h11 leaves to us.

    h11 enforces its size limit only while a head is incomplete; a head that arrives whole in
    one read must be measured here. It also tolerates bare LF and obs-fold, which RFC 9112
    (2.2, 5.2) lets a server reject with 400; a proxy in front of us may split such a head
    differently than we would (request smuggling), so we do reject them.
    """
    end = buffered.find(b"\r\n\r\n")
    if (len(buffered) if end < 0 else end + 4) > max_size:
        raise BadRequest(431, "request head too large")
    head = buffered if end < 0 else buffered[:end]
    # (find, not ``in``: ``bytes in bytes`` first tries the operand as an int, and builds
    # and drops a TypeError with a formatted message before it searches)
    if head.find(b"\n ") >= 0 or head.find(b"\n\t") >= 0:
        raise BadRequest(400, "obsolete line folding in request head")
    if head.count(b"\n") != head.count(b"\r\n"):
        raise BadRequest(400, "bare LF in request head")


# absolute-form starts with a URI scheme (RFC 3986 3.1) and "://".
_ABSOLUTE_FORM: Final = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")


def _check_target(method: bytes, target: bytes) -> None:
    """RFC 9112 3.2: a request target is a path (origin-form), a URI (absolute-form),
    ``host:port`` for CONNECT (authority-form) or ``*`` for OPTIONS; never a fragment.
    h11 takes any visible characters, and a relative ``items`` or ``?a=1`` would reach the
    app as a path that does not start with "/"."""
    if target.find(b"#") >= 0:
        raise BadRequest(400, "a request target cannot hold a fragment (#)")
    if target[:1] == b"/" or method == b"CONNECT":
        return
    if target == b"*" and method == b"OPTIONS":
        return
    if _ABSOLUTE_FORM.match(target) is None:
        raise BadRequest(400, "invalid request target")
    try:
        urlsplit(target)  # (as the scope will: an authority like "[x" does not parse)
    except ValueError:
        raise BadRequest(400, "invalid request target") from None


def error_body(status: int, message: str | None = None) -> bytes:
    """The plain-text body of the server's own error responses."""
    return (message or reason_phrase(status).decode()).encode() + b"\n"


def error_head(body: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of the server's own error responses, around ``body``."""
    return [_PLAIN_TEXT, (b"content-length", str(len(body)).encode()), (b"connection", b"close")]


class HTTP1Protocol:
    """One HTTP/1.1 server connection: request parsing and response serialization."""

    __slots__ = (
        "_bodiless",
        "_conn",
        "_continue_pending",
        "_date_header",
        "_eof",
        "_head_request",
        "_idle_buffer",
        "_max_head_size",
        "_server_header",
        "_writer",
        "content_length",
        "request_headers",
        "websocket_upgrade",
    )

    def __init__(
        self, *, max_head_size: int, server_header: bool = True, date_header: bool = True
    ) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        # What h11 holds while it has parsed nothing of the next request (None once it did):
        # asking h11 (``trailing_data``) copies its buffer, and a keep-alive request would
        # ask four times.
        self._idle_buffer: bytes | None = b""
        self._eof = False  # the peer closed its side (h11 knows too)
        self._writer = ResponseWriter()
        self._max_head_size = max_head_size
        self._server_header = server_header
        self._date_header = date_header
        # The request said Expect: 100-continue; no 100 sent and no body parsed since.
        self._continue_pending = False
        self._head_request = False  # the current request is a HEAD: responses have no body
        # The current request has no body: complete once its head is parsed. (h11 would
        # say so only after one more event, a tenth of a small request's cost.)
        self._bodiless = False
        self.content_length: int | None = None  # of the current request, if it gave one
        # The current request's fields, lower-cased names, as a list: h11's own sequence
        # costs a Python call per field each time it is walked (1.6 µs for a WebSocket
        # handshake's five), and the scope and the handshake check walk them again.
        self.request_headers: Sequence[tuple[bytes, bytes]] = ()
        self.websocket_upgrade = False  # the current request asks for WebSocket

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer closed its side."""
        self._conn.receive_data(data)  # type: ignore[arg-type]  # (any bytes-like will do)
        if not data:
            self._eof = True
        elif self._idle_buffer is not None:
            self._idle_buffer += data  # (the bytes itself when the buffer was empty)

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next request event, ``NEED_DATA`` or ``PAUSED``; raises ``BadRequest``."""
        buffered = self._idle_buffer
        if buffered is not None:  # (h11's state is IDLE)
            if buffered[:1] == b"\r" and self._writer.state == IDLE:
                if buffered == b"\r" and not self._eof:
                    return NEED_DATA  # the empty line's LF is still on its way
                if buffered[:2] == b"\r\n":
                    buffered = self._skip_empty_lines(buffered)
            _check_head(buffered, self._max_head_size)
        conn = self._conn
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequest(exc.error_status_hint, str(exc), public=False) from None
        if type(event) is h11.Request:
            self._idle_buffer = None
            self._inspect(event)
            # h11 forgets this once any 1xx or response is sent; we need it later to know
            # whether the client will ever send the body. (No body, nothing to wait for:
            # RFC 9110 10.1.1 lets a server skip the 100 then.)
            self._continue_pending = conn.they_are_waiting_for_100_continue and not self._bodiless
        elif self._continue_pending and (
            type(event) is h11.Data or type(event) is h11.EndOfMessage
        ):
            self._continue_pending = False
        return event

    def _skip_empty_lines(self, buffered: bytes) -> bytes:
        """RFC 9112 2.2: a server SHOULD ignore empty lines before a request line (old
        clients send one after a POST body). h11 does not, and its buffer cannot be edited:
        a fresh h11 connection takes the rest (between requests it carries nothing else)."""
        rest = buffered.lstrip(b"\r\n")
        self._fresh_parser(rest)
        return rest

    def _fresh_parser(self, buffered: bytes) -> None:
        """A new h11 connection holding ``buffered`` (and the peer's close, if it came)."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head_size)
        if buffered:
            conn.receive_data(buffered)
        if self._eof:
            conn.receive_data(b"")
        self._conn = conn
        self._idle_buffer = buffered

    def _inspect(self, request: h11.Request) -> None:
        """One pass over the request headers for everything the server decides from them.

        h11 lets Transfer-Encoding win over a Content-Length sent alongside it (RFC 9112
        6.3); a front proxy may pick the other one. RFC 9112 6.1 allows refusing such a
        request, and with request smuggling in mind we do.
        """
        length: int | None = None
        encoded = False
        upgrade = False
        close = False
        # (h11's own sequence of lower-cased fields costs a Python call per field and an
        # IndexError at its end: twice the work of lower-casing its raw list here)
        self.request_headers = headers = [
            (name.lower(), value) for name, value in request.headers.raw_items()
        ]
        for name, value in headers:
            if name == b"content-length":
                length = int(value.split(b",", 1)[0])  # h11 checked it: digits, equal copies
            elif name == b"transfer-encoding":
                encoded = True
            elif name == b"upgrade" and wants_websocket(((name, value),)):
                upgrade = True
            elif name == b"connection" and not close:
                close = b"close" in [token.strip() for token in value.lower().split(b",")]
        # (Before any refusal: the response to a refused HEAD has no body either.)
        self._head_request = request.method == b"HEAD"
        self._writer.start(request.method, request.http_version, close=close)
        _check_target(request.method, request.target)
        if encoded and length is not None:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        self.content_length = length
        self.websocket_upgrade = upgrade
        self._bodiless = not length and not encoded

    @property
    def nothing_received(self) -> bool:
        """Not a byte of the next request yet: ``next_event`` could only say NEED_DATA (a
        keep-alive connection asks before every request; h11's answer costs more)."""
        return self._idle_buffer == b"" and not self._eof

    @property
    def client_waiting_for_100_continue(self) -> bool:
        """The client asked for ``100 Continue`` and holds its body back until it gets one:
        no 100 yet (a 103 Early Hints is no go-ahead) and none of the body arrived (RFC 9110
        10.1.1 lets a client send it anyway)."""
        return self._continue_pending and not self._conn.trailing_data[0]

    @property
    def request_complete(self) -> bool:
        """The whole request (body included) has been parsed."""
        return self._bodiless or self._conn.their_state in _REQUEST_COMPLETE

    @property
    def unread_body(self) -> bool:
        """Our response is complete but the request body is not: only draining can save the
        connection for another request (and only if the client is not waiting for 100)."""
        writer = self._writer
        return (
            writer.state == DONE
            and writer.keep_alive  # (a connection that closes has nothing to save)
            and not self._bodiless
            and self._conn.their_state is h11.SEND_BODY
            and not self.client_waiting_for_100_continue
        )

    def finish_body_in_buffer(self) -> bool:
        """Consume what is left of the request body if it is already buffered (a GET's
        end of message, a small body): True if the request is now complete."""
        try:
            while self._conn.their_state is h11.SEND_BODY:
                event = self._conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return False
        except h11.RemoteProtocolError:
            return False
        return self.request_complete

    @property
    def response_in_progress(self) -> bool:
        """Response bytes were produced and the response is not complete."""
        return self._writer.state == BODY

    @property
    def peer_closed(self) -> bool:
        """The peer closed its sending side (we were given ``b""``)."""
        return self._eof

    @property
    def buffered_size(self) -> int:
        """Bytes received but not parsed yet (e.g. a pipelined next request)."""
        buffered = self._idle_buffer
        return len(buffered if buffered is not None else self._conn.trailing_data[0])

    @property
    def trailing_data(self) -> bytes:
        return self._conn.trailing_data[0]

    # -- output ----------------------------------------------------------------------------

    def informational(self, status: int, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
        """A 1xx response head: ``100 Continue``, ``103 Early Hints`` or ``101``."""
        if status == 100:
            self._continue_pending = False
        return self._writer.informational(status, headers)

    def response_head(
        self,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        body: int | None = None,
        final: bool = False,
    ) -> bytes:
        """The status line and headers, with ``Date``/``Server`` added unless already set.

        ``body`` is the size of the body going out right behind the head (``final``: all of
        it): a declared Content-Length it cannot match is refused (``ResponseWriter.head``).
        """
        fields = checked_fields(headers)
        add_server = self._server_header
        add_date = self._date_header
        for _, name, _ in fields:
            if name == b"server":
                add_server = False
            elif name == b"date":
                add_date = False
        if add_server:
            fields.insert(0, _SERVER_FIELD)
        if add_date:
            fields.insert(0, (b"date", b"date", http_date()))
        return self._writer.head(status, fields, body=body, final=final)

    def body(self, data: bytes | bytearray | memoryview) -> bytes:
        """One piece of the response body, framed (chunked or counted)."""
        return self._writer.body(data)

    def body_pieces(self, data: object) -> list[object]:
        """Framing around ``data`` as separate pieces, ``data`` itself passed through: it
        may be any object with a length (a file range we send with ``os.sendfile``)."""
        return self._writer.body_pieces(data)

    def end(self, trailers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
        """End of the response body (with trailers, if the framing allows them)."""
        return self._writer.end(trailers)

    def error_response(
        self,
        status: int,
        message: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> bytes | None:
        """A complete plain-text error response that also closes the connection.

        ``None`` when a response is already under way: then all we can do is close.
        """
        if self._writer.state != IDLE:
            return None
        body = error_body(status, message)
        head = [*error_head(body), *headers]
        try:
            if self._head_request:  # the length of the body a GET would get, and no body
                return self.response_head(status, head) + self.end()
            return self.response_head(status, head) + self.body(body) + self.end()
        except InvalidResponse:  # pragma: no cover - our own headers are valid
            return None

    def accept_switch(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """``101 Switching Protocols``; afterwards the connection no longer speaks HTTP."""
        return self.informational(101, headers)

    # -- between requests ------------------------------------------------------------------

    def start_next_cycle(self) -> bool:
        """Prepare for the next request on this connection; False if it must close instead.

        A fresh h11 connection parses it: ours never saw the response, so h11 cannot move
        on by itself (and a new one costs under a microsecond).
        """
        writer = self._writer
        if writer.state == DONE and writer.keep_alive and self.request_complete:
            self._fresh_parser(self._conn.trailing_data[0])
            self._writer = ResponseWriter()
            self._head_request = False
            self._bodiless = False
            self.request_headers = ()  # (an idle keep-alive connection keeps none)
            return True
        return False
