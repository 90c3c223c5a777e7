"""WebSocket (RFC 6455) as sans-IO over wsproto: handshake checks, reassembly, close codes.

The opening handshake was already parsed by h11 (see ``http1.py``); here we only judge it and
build the answer, then drive a ``wsproto.Connection`` created directly in server mode with
whatever bytes followed the request. No trio, no application: tests feed bytes and read events.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, cast

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, Frame, FrameProtocol, Opcode, ParseFailed
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

NO_STATUS: Final = 1005  # peer's close frame had no code: reported, never sent
ABNORMAL: Final = 1006  # connection lost without a close frame: reported, never sent
PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009
INTERNAL_ERROR: Final = 1011
GOING_AWAY: Final = 1001


def closable_by_app(code: int) -> bool:
    """May an endpoint put ``code`` in a close frame (RFC 6455 7.4, IANA registry)?"""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


# -- opening handshake ---------------------------------------------------------------------


class HandshakeError(Exception):
    """The upgrade request is not a valid WebSocket opening handshake."""

    def __init__(
        self, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = list(headers)


def _tokens(value: bytes) -> list[bytes]:
    """The comma-separated, lowercased tokens of one header value."""
    return [token.strip().lower() for token in value.split(b",")]


def wants_websocket(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The request asks to upgrade to WebSocket (whether or not it does so correctly)."""
    return any(name == b"upgrade" and b"websocket" in _tokens(value) for name, value in headers)


class Handshake:
    """What the client offered in a valid opening handshake."""

    __slots__ = ("extensions", "key", "subprotocols")

    def __init__(self, key: bytes, subprotocols: list[str], extensions: list[str]) -> None:
        self.key = key
        self.subprotocols = subprotocols
        self.extensions = extensions


def check_handshake(
    method: bytes, http_version: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> Handshake:
    """Validate an opening handshake (RFC 6455 section 4.2.1) or raise ``HandshakeError``."""
    if method != b"GET":
        raise HandshakeError(400, "WebSocket handshake must use GET")
    if http_version != b"1.1":
        raise HandshakeError(400, "WebSocket handshake requires HTTP/1.1")
    # One pass over the headers (h11's header list is slow to iterate: a Python-level
    # sequence protocol call per item), then the checks in the order they are reported.
    connection: list[bytes] = []
    versions: list[bytes] = []
    keys: list[bytes] = []
    subprotocols: list[str] = []
    extensions: list[str] = []
    for name, value in headers:
        if name == b"connection":
            connection += _tokens(value)
        elif name == b"sec-websocket-version":
            versions += _tokens(value)
        elif name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-protocol":
            parts = (part.strip() for part in value.split(b","))
            subprotocols += [part.decode("latin-1") for part in parts if part]
        elif name == b"sec-websocket-extensions":
            offers = (offer.decode("latin-1").strip() for offer in value.split(b","))
            extensions += [offer for offer in offers if offer]
    if b"upgrade" not in connection:
        raise HandshakeError(400, "WebSocket handshake is missing 'Connection: Upgrade'")
    if versions != [b"13"]:
        # RFC 6455 4.4: answer 426 naming the versions we speak.
        raise HandshakeError(
            426,
            "Unsupported WebSocket version; this server speaks version 13",
            [(b"sec-websocket-version", b"13")],
        )
    if len(keys) != 1:
        raise HandshakeError(400, "WebSocket handshake needs exactly one Sec-WebSocket-Key")
    key = keys[0].strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    return Handshake(key, subprotocols, extensions)


def accept_headers(
    handshake: Handshake,
    *,
    subprotocol: str | None,
    extra_headers: Iterable[tuple[bytes, bytes]],
    supported_extensions: list[Extension],
) -> tuple[list[tuple[bytes, bytes]], list[Extension]]:
    """Headers of the ``101`` answer, and the extensions that are now in force."""
    headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", generate_accept_token(handshake.key)),
    ]
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    accepted: list[Extension] = []
    if handshake.extensions and supported_extensions:
        value = server_extensions_handshake(handshake.extensions, supported_extensions)
        if value is not None:
            headers.append((b"sec-websocket-extensions", value))
            accepted = [ext for ext in supported_extensions if ext.enabled()]
    headers.extend(extra_headers)
    return headers, accepted


# -- the open connection -------------------------------------------------------------------


class PingReceived:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class PongReceived:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class CloseReceived:
    """The peer sent a close frame: it started the closing handshake or answered ours."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class ProtocolFailure:
    """The peer broke the protocol: send a close frame with ``code``, then drop the link."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class ConnectionLost:
    """The transport ended without a closing handshake (reported to the app as 1006)."""

    __slots__ = ()


Event = str | bytes | PingReceived | PongReceived | CloseReceived | ProtocolFailure | ConnectionLost
CONNECTION_LOST: Final = ConnectionLost()


# Closing handshake states (RFC 6455 7): who has sent a close frame so far.
_OPEN: Final = 0
_LOCAL_CLOSING: Final = 1  # we sent close, waiting for the peer's
_REMOTE_CLOSING: Final = 2  # the peer sent close, we still have to answer
_CLOSED: Final = 3


class WebSocketProtocol:
    """An accepted WebSocket connection: frames in, whole messages out; messages in, frames out.

    Built on wsproto's ``FrameProtocol`` (framing, masking, UTF-8 checks, extensions), the
    layer under its ``Connection``: the closing handshake is tracked here instead, which
    skips an event object and a state check per frame — about a tenth of the server's own
    cost per echoed small message (30k of ~230k instructions, measured with callgrind).

    Data messages come out of ``next_event`` as plain ``str``/``bytes``, reassembled from
    fragments, after the size check. Events are produced lazily, one per call, so a caller
    that has no room for another message simply stops asking, and the unparsed bytes stay in
    wsproto's buffer (bounded by what the caller chose to read).
    """

    __slots__ = ("_eof", "_failed", "_frames", "_max_size", "_parts", "_proto", "_size", "_state")

    def __init__(
        self,
        *,
        max_message_size: int,
        extensions: list[Extension] | None = None,
        trailing_data: bytes = b"",
    ) -> None:
        self._proto = FrameProtocol(client=False, extensions=extensions or [])
        self._max_size = max_message_size
        self._frames: Iterator[Frame] | None = None
        self._parts: list[str | bytes] | None = None  # fragments of an unfinished message
        self._size = 0
        self._eof = False
        self._failed = False
        self._state = _OPEN
        if trailing_data:
            self._proto.receive_bytes(trailing_data)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the peer; ``b""`` means the transport reached end-of-file."""
        if not data:
            self._eof = True
        elif not self._failed and (self._state == _OPEN or self._state == _LOCAL_CLOSING):
            self._proto.receive_bytes(data)  # type: ignore[arg-type]  # (any bytes-like will do)

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more bytes are needed."""
        if self._failed:
            return CONNECTION_LOST if self._eof else None
        frames = self._frames
        if frames is None:
            frames = self._frames = self._proto.received_frames()
        try:
            for frame in frames:
                opcode = frame.opcode
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    message = self._assemble(frame)
                    if message is not None:
                        return message
                elif opcode is Opcode.PING:
                    return PingReceived(bytes(frame.payload))  # type: ignore[arg-type]
                elif opcode is Opcode.PONG:
                    return PongReceived(bytes(frame.payload))  # type: ignore[arg-type]
                elif opcode is Opcode.CLOSE:
                    code, reason = cast("tuple[int, str]", frame.payload)
                    self._state = _CLOSED if self._state == _LOCAL_CLOSING else _REMOTE_CLOSING
                    self._frames = None
                    return CloseReceived(int(code), reason or "")
        except ParseFailed as exc:
            code = int(exc.code)
            if code == MESSAGE_TOO_BIG:  # from the inflater's limit
                return self._fail(code, f"message larger than {self._max_size} bytes")
            return self._fail(code, str(exc))
        self._frames = None
        return CONNECTION_LOST if self._eof else None

    def _assemble(self, frame: Frame) -> str | bytes | ProtocolFailure | None:
        data = frame.payload
        if isinstance(data, str):
            self._size += len(data) if data.isascii() else len(data.encode("utf-8"))
        else:
            data = bytes(data)  # type: ignore[arg-type]
            self._size += len(data)
        if self._size > self._max_size:
            self._parts = None
            return self._fail(MESSAGE_TOO_BIG, f"message larger than {self._max_size} bytes")
        parts = self._parts
        if not frame.message_finished:
            if parts is None:
                self._parts = [data]
            else:
                parts.append(data)
            return None
        if parts is not None:
            parts.append(data)
            data = "".join(parts) if isinstance(data, str) else b"".join(parts)  # type: ignore[arg-type]
            self._parts = None
        self._size = 0
        return data

    def _fail(self, code: int, reason: str) -> ProtocolFailure:
        self._failed = True
        self._frames = None
        return ProtocolFailure(code, reason)

    # -- output ----------------------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        return self._state == _OPEN and not self._failed

    def send(self, data: str | bytes | bytearray) -> bytes | bytearray:
        """One whole message as a single frame."""
        return self._proto.send_data(data, True)

    def ping(self, payload: bytes = b"") -> bytes | bytearray:
        return self._proto.ping(payload)

    def pong(self, payload: bytes) -> bytes | bytearray:
        return self._proto.pong(payload)

    def close(self, code: int, reason: str = "") -> bytes | bytearray:
        """Our close frame: starting the closing handshake, answering it, or failing.

        1005 (the peer's frame had no code) is echoed as a close frame without a code; the
        other local-only codes never reach the wire (wsproto would turn them into 1000).
        """
        state = self._state
        if state != _OPEN and state != _REMOTE_CLOSING:
            return b""
        self._state = _CLOSED if state == _REMOTE_CLOSING else _LOCAL_CLOSING
        if code == NO_STATUS:
            return self._proto.close(CloseReason.NO_STATUS_RCVD)
        if not closable_by_app(code):
            code = INTERNAL_ERROR
        return self._proto.close(code, reason or None)
