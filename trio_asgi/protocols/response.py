"""The server's half of HTTP/1.1: response heads, body framing and keep-alive, by h11's rules.

h11 parses every request (``http1.py``); responses are written here. h11's send path builds
an event object per head, body piece and end, validates the head's fields twice, and walks
its state machine for each: without it a request/response cycle through ``HTTP1Protocol``
takes 28 µs instead of 44, and the server's CPU per keep-alive hello request fell from 104
to 84 µs (``docs/performance.md``, change 15). It applies the same rules h11 does, so a
response reads the same on the wire:

- fields are checked against RFC 9110 5.1/5.5 (h11's own patterns), Content-Length must be
  digits (equal copies fold into one) and the only Transfer-Encoding is ``chunked``;
- framing (RFC 9112 6.3): no body after HEAD, 204 and 304; a body of unknown length is
  chunked for HTTP/1.1 clients and delimited by closing the connection for HTTP/1.0 ones;
- the connection is kept alive only if the request and the response both allow it, and a
  response that ends it says ``Connection: close``.

(h11's rule that a 2xx answer to CONNECT has no body is left out: CONNECT is refused before
any app sees it.) ``tests/protocols/test_response.py`` holds this module to h11 itself.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable
from typing import Final

_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE: Final = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
_DIGITS: Final = re.compile(rb"[0-9]{1,20}")

# The writer's state for the current response.
IDLE: Final = 0  # no final response yet (1xx responses may go out)
BODY: Final = 1  # head sent, body under way
DONE: Final = 2  # response complete (or the connection switched protocols)

# How the body is framed (``_remaining`` counts down a Content-Length).
_LENGTH: Final = 0
_CHUNKED: Final = 1
_UNTIL_CLOSE: Final = 2

_EMPTY_BODY_STATUSES: Final = frozenset({204, 304})
_REASONS: Final = {status.value: status.phrase.encode() for status in http.HTTPStatus}
_STATUS_LINES: Final = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, reason) for status, reason in _REASONS.items()
}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"")


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))


class InvalidResponse(Exception):
    """The response we were asked to send is not valid HTTP (bad header, wrong length...)."""


def _as_bytes(value: object) -> bytes:
    """A header name or value that is not ``bytes`` as bytes: a few apps send ASCII ``str``
    or another bytes-like object (``bytearray``, a ``bytes`` subclass: ``numpy.bytes_``)."""
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidResponse(f"header {value!r} is not ASCII") from None
    try:
        return bytes(memoryview(value))  # type: ignore[arg-type]
    except TypeError:  # (not ``bytes(value)``: an int n would become n zero bytes)
        raise InvalidResponse(f"header names and values must be bytes, got {value!r}") from None


# Valid field names seen, with their lower-case form: an app sends the same few names
# over and over. (Bounded: names are the app's choice, not the client's.)
_known_names: dict[bytes, bytes] = {}
_KNOWN_NAMES_MAX: Final = 1024


def checked_fields(fields: Iterable[tuple[object, object]]) -> list[tuple[bytes, bytes, bytes]]:
    """``(name as sent, lower-case name, value)`` for each valid field, or ``InvalidResponse``.

    Content-Length copies that agree fold into the first (``5, 5`` is sent as ``5``);
    Transfer-Encoding may only be ``chunked``, once.
    """
    checked: list[tuple[bytes, bytes, bytes]] = []
    length: bytes | None = None
    encoded = False
    for name, value in fields:
        if type(name) is not bytes:
            name = _as_bytes(name)
        if type(value) is not bytes:
            value = _as_bytes(value)
        lowered = _known_names.get(name)
        if lowered is None:
            if _TOKEN.fullmatch(name) is None:
                raise InvalidResponse(f"Illegal header name {name!r}")
            lowered = name.lower()
            if len(_known_names) < _KNOWN_NAMES_MAX:
                _known_names[name] = lowered
        if _FIELD_VALUE.fullmatch(value) is None:
            raise InvalidResponse(f"Illegal header value {value!r}")
        if lowered == b"content-length":
            if not value.isdigit() or len(value) > 20:  # (else: a plain length, as usual)
                copies = {copy.strip() for copy in value.split(b",")}
                if len(copies) != 1:
                    raise InvalidResponse("conflicting Content-Length headers")
                value = copies.pop()
                if _DIGITS.fullmatch(value) is None:
                    raise InvalidResponse("bad Content-Length")
            if length is not None:
                if value != length:
                    raise InvalidResponse("conflicting Content-Length headers")
                continue
            length = value
        elif lowered == b"transfer-encoding":
            value = value.lower()
            if encoded or value != b"chunked":
                raise InvalidResponse("Only Transfer-Encoding: chunked is supported")
            encoded = True
        checked.append((name, lowered, value))
    return checked


def _comma_values(fields: list[tuple[bytes, bytes, bytes]], name: bytes) -> list[bytes]:
    """The lower-cased, comma-separated values of every ``name`` field."""
    return [
        token
        for _, lowered, value in fields
        if lowered == name
        for token in (item.strip() for item in value.lower().split(b","))
        if token
    ]


def _serialize(start_line: bytes, fields: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """``start_line``, the fields and the empty line that ends them. (One join of all the
    pieces: a third faster than formatting each line.)"""
    pieces = [start_line]
    for name, _, value in fields:
        pieces += (name, b": ", value, b"\r\n")
    pieces.append(b"\r\n")
    return b"".join(pieces)


class ResponseWriter:
    """The response to one request after another on a connection (``start`` between them).

    ``keep_alive`` says, once the head is out, whether the connection may carry another
    request after this response.
    """

    __slots__ = ("_framing", "_head_request", "_http10", "_remaining", "keep_alive", "state")

    def __init__(self) -> None:
        self.state = IDLE
        self._head_request = False
        # Until a request is parsed (an error response to garbage), assume the worst of the
        # client's HTTP version: no chunked framing.
        self._http10 = True
        self.keep_alive = True
        self._framing = _LENGTH
        self._remaining = 0

    def start(self, method: bytes, http_version: bytes, *, close: bool) -> None:
        """A request was parsed: its response is next. ``close``: it said Connection: close."""
        self.state = IDLE
        self._head_request = method == b"HEAD"
        self._http10 = http_version < b"1.1"
        # h11 keeps no HTTP/1.0 connection alive (Connection: keep-alive included).
        self.keep_alive = not self._http10 and not close

    def informational(self, status: int, fields: Iterable[tuple[object, object]]) -> bytes:
        """A 1xx head; after ``101`` the connection speaks another protocol."""
        if self.state != IDLE:
            raise InvalidResponse("a 1xx response cannot follow the final response head")
        if not 100 <= status < 200:
            raise InvalidResponse(f"an informational status must be 1xx, not {status}")
        checked = checked_fields(fields)
        if status == 101:
            self.state = DONE
            self.keep_alive = False
        return _serialize(_status_line(status), checked)

    def head(
        self,
        status: int,
        fields: list[tuple[bytes, bytes, bytes]],
        *,
        body: int | None = None,
        final: bool = False,
    ) -> bytes:
        """The final response head for ``fields`` (from ``checked_fields``).

        ``body`` is the size of the body going out right behind the head (``final``: all of
        it). A Content-Length it cannot match is refused here, before the head goes out: a
        mismatch found on the body would come too late for a 500.
        """
        if self.state != IDLE:
            raise InvalidResponse("the response head was sent already")
        if not 200 <= status < 1000:
            raise InvalidResponse(f"a response status must be in [200, 1000), not {status}")
        empty_body = status in _EMPTY_BODY_STATUSES
        framing = _LENGTH
        remaining = 0
        need_close = False
        encoded = False
        length: bytes | None = None
        connection = False
        for _, name, value in fields:
            if name == b"transfer-encoding":
                encoded = True
            elif name == b"content-length":
                length = value
            elif name == b"connection":
                connection = True
        if not empty_body and (encoded or length is None):
            # A body of unknown length (also what a HEAD's headers announce).
            fields = [field for field in fields if field[1] != b"content-length"]
            if encoded:
                fields = [field for field in fields if field[1] != b"transfer-encoding"]
            if self._http10:
                need_close = not self._head_request
                framing = _UNTIL_CLOSE
            else:
                fields.append((b"Transfer-Encoding", b"transfer-encoding", b"chunked"))
                framing = _CHUNKED
        elif length is not None:
            remaining = int(length)
            if body is not None and (body > remaining or (final and body != remaining)):
                size = f"{body}" if final else f"at least {body}"
                raise InvalidResponse(
                    f"Content-Length is {remaining}, but the body is {size} bytes"
                )
        if not self.keep_alive or need_close:
            # The connection ends after this response: say so (the app's own tokens kept).
            tokens = set(_comma_values(fields, b"connection"))
            tokens.discard(b"keep-alive")
            tokens.add(b"close")
            fields = [field for field in fields if field[1] != b"connection"]
            fields += [(b"Connection", b"connection", token) for token in sorted(tokens)]
            self.keep_alive = False
        elif connection and b"close" in _comma_values(fields, b"connection"):
            self.keep_alive = False  # the app's own Connection: close
        if empty_body or self._head_request:
            framing = _LENGTH
            remaining = 0
        self._framing = framing
        self._remaining = remaining
        self.state = BODY
        return _serialize(_status_line(status), fields)

    def body(self, data: bytes | bytearray | memoryview) -> bytes:
        """``data`` framed for the wire."""
        return b"".join(self.body_pieces(data))  # type: ignore[arg-type]

    def body_pieces(self, data: object) -> list[object]:
        """Framing around ``data``, which is passed through: only its length is used (a
        file range sent with ``os.sendfile``, say)."""
        if self.state != BODY:
            raise InvalidResponse("no response body is under way")
        size = len(data)  # type: ignore[arg-type]
        framing = self._framing
        if framing == _LENGTH:
            self._remaining -= size
            if self._remaining < 0:
                raise InvalidResponse("Too much data for declared Content-Length")
            return [data]
        if framing == _CHUNKED:
            # (an empty chunk would read as the end of the body)
            return [b"%x\r\n" % size, data, b"\r\n"] if size else []
        return [data]

    def end(self, trailers: Iterable[tuple[object, object]] = ()) -> bytes:
        """The end of the body, with trailer fields if the framing can carry them."""
        if self.state != BODY:
            raise InvalidResponse("no response body is under way")
        checked = checked_fields(trailers) if trailers else []
        framing = self._framing
        if framing == _LENGTH:
            if self._remaining:
                raise InvalidResponse("Too little data for declared Content-Length")
            if checked:
                raise InvalidResponse("Content-Length and trailers don't mix")
            data = b""
        elif framing == _CHUNKED:
            data = _serialize(b"0\r\n", checked)
        else:
            if checked:
                raise InvalidResponse("can't send trailers to HTTP/1.0 client")
            data = b""
        self.state = DONE
        return data
