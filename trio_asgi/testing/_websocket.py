"""The WebSocket side of the test client, built on wsproto's *client* state machine.

The handshake and framing on this side come from wsproto's own client code, not from the
server's, so the two implementations check each other.
"""

from __future__ import annotations

import json as jsonlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)

from ._http import Headers
from ._streams import MemoryStream

# Client-side buffer of received messages; when the test does not consume them the reader
# stops reading and the server feels it as backpressure, like a real slow client.
RECEIVE_QUEUE = 1024


@dataclass(frozen=True)
class Text:
    data: str


@dataclass(frozen=True)
class Binary:
    data: bytes


@dataclass(frozen=True)
class Closed:
    """The connection ended: the server's close code and reason, 1006 if it just vanished."""

    code: int
    reason: str = ""


WebSocketEvent = Text | Binary | Closed


class WebSocketDenied(Exception):
    """The server refused the handshake with an HTTP response."""

    def __init__(self, status_code: int, headers: Headers, body: bytes) -> None:
        super().__init__(f"WebSocket handshake denied with HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers
        self.body = body


class WebSocketClosed(Exception):
    """A message was expected, but the connection was closed."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    declared_length: int | None = None,
) -> bytes:
    """Hand-build one frame (RFC 6455 5.2), valid or deliberately not, for ``send_raw``.

    ``rsv`` is the three reserved bits as a number 0-7; ``declared_length`` lies about the
    payload length.
    """
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0x0F)
    length = len(payload) if declared_length is None else declared_length
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return header + key + masked


class WebSocketClient:
    """An open WebSocket from the test's side. Reads happen in a background task that
    answers pings and reassembles messages; ``receive*`` take them in order.

    Sends, receives and pings are bounded by the client's ``timeout``. A call that finds the
    connection closed raises the app's exception if one ended it (``raise_app_exceptions``),
    else ``WebSocketClosed``.
    """

    def __init__(
        self,
        stream: MemoryStream,
        ws: WSConnection,
        *,
        subprotocol: str | None,
        headers: Headers,
        extensions: list[Any],
        timeout: float | None,
        describe: Any,
        raise_app_error: Callable[[], None],
    ) -> None:
        self._stream = stream
        self.extensions = extensions  # negotiated (wsproto Extension objects)
        self._ws = ws
        self.subprotocol = subprotocol
        self.headers = headers
        self._timeout = timeout
        self._describe = describe  # explains a timeout with the app's last events
        self._raise_app_error = raise_app_error
        self._write_lock = trio.Lock()
        self._send_events, self._events = trio.open_memory_channel[WebSocketEvent](RECEIVE_QUEUE)
        self._pongs: dict[bytes, trio.Event] = {}
        self.closed: Closed | None = None  # set once the close arrived (or the link died)
        self.pings_received = 0  # server keepalive pings seen (each answered automatically)
        self._reader_scope = trio.CancelScope()
        self._reader_done = trio.Event()

    # -- sending ---------------------------------------------------------------------------

    async def send_text(self, data: str) -> None:
        await self._send(TextMessage(data=data))

    async def send_bytes(self, data: bytes) -> None:
        await self._send(BytesMessage(data=data))

    async def send_json(self, data: Any) -> None:
        await self.send_text(jsonlib.dumps(data))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are, bypassing the framing (for malformed input)."""
        async with self._write_lock:
            await self._stream.send_all(data)

    async def ping(self, payload: bytes = b"ping") -> None:
        """Send a ping and wait for the server's pong carrying the same payload
        (``WebSocketClosed`` if the connection ends first)."""
        key = bytes(payload)
        arrived = self._pongs.setdefault(key, trio.Event())
        await self._send(Ping(payload=payload))
        with self._deadline("a pong"):
            await arrived.wait()
        if self._pongs.get(key) is arrived:  # a pong takes its waiter out; the end does not
            raise self._closed_error()

    async def _send(self, event: Any) -> None:
        """Send for the test, bounded by ``timeout``. A send that timed out may have left
        half a frame on the wire, so the connection is reset: nothing sane can follow."""
        try:
            with self._deadline("room to send (the app is not reading)"):
                await self._write(event)
        except trio.TooSlowError:
            self.drop()
            raise

    async def _write(self, event: Any) -> None:
        async with self._write_lock:
            if self._ws.state is not ConnectionState.OPEN:
                raise self._closed_error()
            try:
                await self._stream.send_all(self._ws.send(event))
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the connection is gone; the reader is about to see how it ended
        await self._reader_done.wait()  # (outside the lock: it may answer a close)
        raise self._closed_error()

    def _closed_error(self) -> WebSocketClosed:
        """What a call that finds the connection closed raises: the app's exception if one
        ended it (raised from here), else WebSocketClosed."""
        self._raise_app_error()
        closed = self.closed or Closed(1006)
        return WebSocketClosed(closed.code, closed.reason)

    # -- receiving -------------------------------------------------------------------------

    async def receive(self) -> WebSocketEvent:
        """The next message, or ``Closed`` once (then ``WebSocketClosed`` is raised)."""
        with self._deadline("a WebSocket message"):
            try:
                event = await self._events.receive()
            except trio.EndOfChannel:
                raise self._closed_error() from None
        if isinstance(event, Closed):
            self._raise_app_error()
        return event

    async def receive_text(self) -> str:
        event = await self.receive()
        if isinstance(event, Closed):
            raise WebSocketClosed(event.code, event.reason)
        if not isinstance(event, Text):
            raise AssertionError(f"expected a text message, got {event!r}")
        return event.data

    async def receive_bytes(self) -> bytes:
        event = await self.receive()
        if isinstance(event, Closed):
            raise WebSocketClosed(event.code, event.reason)
        if not isinstance(event, Binary):
            raise AssertionError(f"expected a binary message, got {event!r}")
        return event.data

    async def receive_json(self) -> Any:
        return jsonlib.loads(await self.receive_text())

    async def wait_closed(self) -> Closed:
        """Skip messages until the connection ends; return the close code and reason."""
        while True:
            try:
                event = await self.receive()
            except WebSocketClosed:
                assert self.closed is not None
                return self.closed
            if isinstance(event, Closed):
                return event

    # -- ending ----------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> Closed:
        """Start the closing handshake and wait for the server's answer."""
        await self._send_in_state(
            ConnectionState.OPEN, CloseConnection(code=code, reason=reason or None)
        )
        return await self.wait_closed()

    def drop(self) -> None:
        """Vanish without a close frame (a TCP reset)."""
        self._stream.abort()

    def pause_reading(self, paused: bool = True) -> None:
        """Stop taking bytes off the wire (a stalled client); pings go unanswered too."""
        self._stream.pause_reading(paused)

    def set_write_chunk(self, size: int | None) -> None:
        """Deliver what this client sends in pieces of at most ``size`` bytes."""
        self._stream.set_read_chunk(size)

    # -- the background reader -------------------------------------------------------------

    async def run_reader(self) -> None:
        with self._reader_scope:
            parts: list[str | bytes] = []
            try:
                while True:
                    # Events first: bytes that came with the handshake are already buffered.
                    for event in self._ws.events():
                        if isinstance(event, Message):
                            parts.append(event.data)
                            if event.message_finished:
                                await self._deliver(parts)
                                parts = []
                        elif isinstance(event, Ping):
                            self.pings_received += 1
                            await self._answer(event)
                        elif isinstance(event, Pong):
                            waiter = self._pongs.pop(bytes(event.payload), None)
                            if waiter is not None:
                                waiter.set()
                        elif isinstance(event, CloseConnection):
                            await self._closed_by_peer(event)
                            return
                    try:
                        data = await self._stream.receive_some()
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                    self._ws.receive_data(data or None)
            finally:
                self._send_events.close()
                for waiter in self._pongs.values():  # no pong will come: ping() finds out
                    waiter.set()
                self._reader_done.set()

    async def _deliver(self, parts: list[str | bytes]) -> None:
        if isinstance(parts[0], str):
            await self._send_events.send(Text("".join(parts)))  # type: ignore[arg-type]
        else:
            await self._send_events.send(Binary(b"".join(parts)))  # type: ignore[arg-type]

    async def _send_in_state(self, state: ConnectionState, event: Any) -> None:
        """Send a control frame if the connection is still in ``state``; one already gone
        makes no difference (the reader tells how it ended)."""
        async with self._write_lock:
            if self._ws.state is state:
                try:
                    await self._stream.send_all(self._ws.send(event))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    async def _answer(self, ping: Ping) -> None:
        """Pong, unless we already started closing (then the peer gets our close instead)."""
        await self._send_in_state(ConnectionState.OPEN, ping.response())

    async def _closed_by_peer(self, event: CloseConnection) -> None:
        closed = Closed(int(event.code), event.reason or "")
        await self._send_in_state(ConnectionState.REMOTE_CLOSING, event.response())
        self.closed = closed
        await self._send_events.send(closed)
        await self._stream.aclose()

    def stop(self) -> None:
        self._reader_scope.cancel()

    def _deadline(self, what: str) -> Any:
        return self._describe.deadline(self._timeout, f"waiting for {what}")
