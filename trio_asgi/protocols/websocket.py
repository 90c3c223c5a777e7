"""WebSocket (RFC 6455) as sans-IO over wsproto: handshake checks, reassembly, close codes.

The opening handshake was already parsed by h11 (see ``http1.py``); here we only judge it and
build the answer, then drive a ``wsproto.Connection`` created directly in server mode with
whatever bytes followed the request. No trio, no application: tests feed bytes and read events.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason
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


def _tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """All comma-separated, lowercased tokens of every header called ``name``."""
    found: list[bytes] = []
    for key, value in headers:
        if key == name:
            found.extend(token.strip().lower() for token in value.split(b","))
    return found


def wants_websocket(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The request asks to upgrade to WebSocket (whether or not it does so correctly)."""
    return b"websocket" in _tokens(headers, b"upgrade")


class Handshake:
    """What the client offered in a valid opening handshake."""

    __slots__ = ("extensions", "key", "subprotocols")

    def __init__(self, key: bytes, subprotocols: list[str], extensions: list[str]) -> None:
        self.key = key
        self.subprotocols = subprotocols
        self.extensions = extensions


def check_handshake(
    method: bytes, http_version: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> Handshake:
    """Validate an opening handshake (RFC 6455 section 4.2.1) or raise ``HandshakeError``."""
    if method != b"GET":
        raise HandshakeError(400, "WebSocket handshake must use GET")
    if http_version != b"1.1":
        raise HandshakeError(400, "WebSocket handshake requires HTTP/1.1")
    if b"upgrade" not in _tokens(headers, b"connection"):
        raise HandshakeError(400, "WebSocket handshake is missing 'Connection: Upgrade'")
    versions = _tokens(headers, b"sec-websocket-version")
    if versions != [b"13"]:
        # RFC 6455 4.4: answer 426 naming the versions we speak.
        raise HandshakeError(
            426,
            "Unsupported WebSocket version; this server speaks version 13",
            [(b"sec-websocket-version", b"13")],
        )
    keys = [value for name, value in headers if name == b"sec-websocket-key"]
    if len(keys) != 1:
        raise HandshakeError(400, "WebSocket handshake needs exactly one Sec-WebSocket-Key")
    key = keys[0].strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    subprotocols = [
        token.decode("latin-1")
        for name, value in headers
        if name == b"sec-websocket-protocol"
        for token in (part.strip() for part in value.split(b","))
        if token
    ]
    extensions = [
        offer.decode("latin-1").strip()
        for name, value in headers
        if name == b"sec-websocket-extensions"
        for offer in value.split(b",")
        if offer.strip()
    ]
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


class WebSocketProtocol:
    """An accepted WebSocket connection: frames in, whole messages out; messages in, frames out.

    Data messages come out of ``next_event`` as plain ``str``/``bytes``, reassembled from
    fragments, after the size check. Events are produced lazily, one per call, so a caller
    that has no room for another message simply stops asking, and the unparsed bytes stay in
    wsproto's buffer (bounded by what the caller chose to read).
    """

    __slots__ = ("_conn", "_eof", "_events", "_failed", "_max_size", "_parts", "_size")

    def __init__(
        self,
        *,
        max_message_size: int,
        extensions: list[Extension] | None = None,
        trailing_data: bytes = b"",
    ) -> None:
        self._conn = Connection(ConnectionType.SERVER, extensions or [], trailing_data)
        self._max_size = max_message_size
        self._events: Iterator[object] | None = None
        self._parts: list[str | bytes] = []
        self._size = 0
        self._eof = False
        self._failed = False

    @property
    def closing_handshake_started(self) -> bool:
        """We sent a close frame (or the connection is otherwise done sending)."""
        return self._conn.state is not ConnectionState.OPEN or self._failed

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the transport reached end-of-file."""
        if not data:
            self._eof = True
        elif not self._failed and self._conn.state in (
            ConnectionState.OPEN,
            ConnectionState.LOCAL_CLOSING,
        ):
            self._conn.receive_data(data)

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more bytes are needed."""
        while not self._failed:
            if self._events is None:
                self._events = self._conn.events()
            event = next(self._events, None)  # type: ignore[call-overload]
            if event is None:
                self._events = None
                break
            cls = type(event)
            if cls is TextMessage or cls is BytesMessage:
                assert isinstance(event, Message)
                message = self._assemble(event)
                if message is not None:
                    return message
            elif cls is Ping:
                assert isinstance(event, Ping)
                return PingReceived(bytes(event.payload))
            elif cls is Pong:
                assert isinstance(event, Pong)
                return PongReceived(bytes(event.payload))
            elif cls is CloseConnection:
                assert isinstance(event, CloseConnection)
                if self._conn.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED):
                    return CloseReceived(int(event.code), event.reason or "")
                # wsproto reports parse errors as a CloseConnection while still OPEN.
                code = int(event.code)
                if code == MESSAGE_TOO_BIG:  # from the inflater's limit
                    return self._fail(code, f"message larger than {self._max_size} bytes")
                return self._fail(code, event.reason or "")
        if self._eof:
            return CONNECTION_LOST
        return None

    def _assemble(self, event: Message) -> str | bytes | None:
        data = event.data
        if isinstance(data, str):
            self._size += len(data) if data.isascii() else len(data.encode("utf-8"))
        else:
            data = bytes(data)
            self._size += len(data)
        if self._size > self._max_size:
            self._parts.clear()
            return self._fail(MESSAGE_TOO_BIG, f"message larger than {self._max_size} bytes")
        if not event.message_finished:
            self._parts.append(data)
            return None
        parts = self._parts
        if parts:
            parts.append(data)
            data = "".join(parts) if isinstance(data, str) else b"".join(parts)  # type: ignore[arg-type]
            parts.clear()
        self._size = 0
        return data

    def _fail(self, code: int, reason: str) -> ProtocolFailure:
        self._failed = True
        self._events = None
        return ProtocolFailure(code, reason)

    # -- output ----------------------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        return self._conn.state is ConnectionState.OPEN and not self._failed

    def send(self, data: str | bytes) -> bytes:
        """One whole message as a single frame."""
        if isinstance(data, str):
            return self._conn.send(TextMessage(data=data))
        return self._conn.send(BytesMessage(data=data))

    def ping(self, payload: bytes = b"") -> bytes:
        return self._conn.send(Ping(payload=payload))

    def pong(self, payload: bytes) -> bytes:
        return self._conn.send(Pong(payload=payload))

    def close(self, code: int, reason: str = "") -> bytes:
        """Our close frame: starting the closing handshake, answering it, or failing.

        1005 (the peer's frame had no code) is echoed as a close frame without a code; the
        other local-only codes never reach the wire (wsproto would turn them into 1000).
        """
        state = self._conn.state
        if state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        if code == NO_STATUS:
            return self._conn.send(CloseConnection(code=CloseReason.NO_STATUS_RCVD))
        if not closable_by_app(code):
            code = INTERNAL_ERROR
        return self._conn.send(CloseConnection(code=code, reason=reason or None))
