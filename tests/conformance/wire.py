"""A raw WebSocket peer that judges the server byte by byte, like Autobahn's fuzzing client.

Frames are built and parsed here, independently of wsproto (which the server is built on),
so a wsproto quirk cannot hide on both sides. Every frame the server sends is checked for
the invariants of RFC 6455 section 5 (unmasked, no stray RSV bits, control frames whole and
at most 125 bytes, close codes that may appear on the wire) before a test looks at it.

Tests run under ``MockClock(autojump_threshold=0)``: "the server answered at once" means
it answered before any timer could fire, and a server that waits for bytes that never come
makes the clock jump to the read deadline, which fails the test without real waiting.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import zlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import trio
import trio.testing

from trio_asgi import ClientDisconnected
from trio_asgi.testing import MemoryStream, TestClient

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

RSV1: Final = 4  # the RSV bits as one number, as in Autobahn's case names: RSV1=4, RSV2=2, RSV3=1
GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"
# Codes that only report what happened locally (RFC 6455 7.4.1): never in a close frame.
LOCAL_ONLY_CODES: Final = frozenset({1005, 1006, 1015})
# Virtual seconds to wait for the server; the server's own shortest timer (the closing
# handshake) is 5 s, so "within 1 s" means "without waiting for anything".
READ_TIMEOUT: Final = 10.0
PROMPTLY: Final = 1.0


def sendable_close_code(code: int) -> bool:
    """May ``code`` appear in a close frame (RFC 6455 7.4.1-7.4.2, IANA registry)?"""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _mask(payload: bytes, key: bytes) -> bytes:
    # One big-integer XOR: per-byte Python loops are too slow for multi-megabyte payloads.
    if not payload:
        return b""
    size = len(payload)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame, valid or not. (``trio_asgi.testing.build_frame`` masks byte
    by byte, too slow for the multi-megabyte cases.) To deliver a frame partially, send a
    slice of it: the server cannot tell a slow client from one that stopped."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    key = os.urandom(4)
    return header + key + _mask(payload, key)


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


@dataclass(frozen=True)
class Frame:
    """A frame from the server (or a reassembled, inflated message from ``receive``)."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if self.payload else None

    def __repr__(self) -> str:
        payload = self.payload if len(self.payload) <= 40 else self.payload[:32] + b"..."
        details = f"len={len(self.payload)}, fin={self.fin}, rsv={self.rsv}"
        return f"Frame({self.opcode:#x}, {payload!r}, {details})"


def Close(code: int | None = None, reason: bytes = b"") -> Frame:
    """The close frame with ``code`` and ``reason``, for comparisons."""
    return Frame(CLOSE, close_payload(code, reason))


def Text(data: str | bytes) -> Frame:
    return Frame(TEXT, data.encode() if isinstance(data, str) else data)


def Binary(data: bytes) -> Frame:
    return Frame(BINARY, data)


def Pong(data: bytes = b"") -> Frame:
    return Frame(PONG, data)


# -- permessage-deflate, the client's half -------------------------------------------------


def parse_extension(value: str) -> tuple[str, dict[str, str | None]]:
    """``name; a; b=1`` as (name, {a: None, b: "1"}); values unquoted."""
    name, *params = (part.strip() for part in value.split(";"))
    parsed: dict[str, str | None] = {}
    for param in params:
        key, sep, val = param.partition("=")
        parsed[key.strip()] = val.strip().strip('"') if sep else None
    return name, parsed


class Deflate:
    """The client's side of an agreed permessage-deflate, strict about what the server sends.

    The client compresses with the window the server allowed, and keeps its context across
    messages unless told not to (the harder case for the server's inflater). Server messages
    are inflated with exactly the window the server agreed to use, and with a fresh inflater
    per message under ``server_no_context_takeover``: a server that broke either promise
    produces data zlib cannot inflate.
    """

    def __init__(self, params: dict[str, str | None], *, client_bits: int = 15) -> None:
        agreed_client_bits = params.get("client_max_window_bits")
        self.client_bits = min(client_bits, int(agreed_client_bits or 15))
        self.server_bits = int(params.get("server_max_window_bits") or 15)
        self.client_resets = "client_no_context_takeover" in params
        self.server_resets = "server_no_context_takeover" in params
        self._compressor: Any = None
        self._decompressor: Any = None

    def compress(self, data: bytes) -> bytes:
        if self._compressor is None or self.client_resets:
            # zlib cannot deflate with an 8-bit window; 9 is the closest it gets.
            bits = max(9, self.client_bits)
            self._compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(DEFLATE_TAIL)
        return out[:-4]

    def decompress(self, data: bytes) -> bytes:
        if self._decompressor is None or self.server_resets:
            self._decompressor = zlib.decompressobj(-self.server_bits)
        try:
            out = self._decompressor.decompress(data + DEFLATE_TAIL)
        except zlib.error as exc:
            raise AssertionError(
                f"server message does not inflate with a {self.server_bits}-bit window"
                f"{' and no shared context' if self.server_resets else ''}: {exc}"
            ) from None
        assert not self._decompressor.unconsumed_tail
        return out


# -- the raw peer --------------------------------------------------------------------------


class EndOfStream(AssertionError):
    """The server closed the TCP connection where a frame was expected."""


class Peer:
    """One raw connection after a successful opening handshake."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        headers: list[tuple[bytes, bytes]],
        buffered: bytes,
        deflate: Deflate | None,
    ) -> None:
        self.stream = stream
        self.headers = headers
        self.deflate = deflate
        self._buffer = bytearray(buffered)
        self._eof = False

    # -- sending ---------------------------------------------------------------------------

    async def send(self, *frames: bytes) -> None:
        """Write the bytes in one go (how the server reads them depends on ``chop``).

        Like a TCP client, a write after the server closed the connection goes nowhere;
        what the server did is read from the stream, not from the failed write.
        """
        try:
            await self.stream.send_all(b"".join(frames))
        except trio.BrokenResourceError:
            pass

    async def send_each(self, *frames: bytes) -> None:
        """Write the pieces one by one, letting the server take each in (and act on it)
        before the next: Autobahn's frame-wise chops."""
        for piece in frames:
            await self.send(piece)
            await trio.testing.wait_all_tasks_blocked()

    def chop(self, size: int | None) -> None:
        """The server reads what we send at most ``size`` bytes at a time."""
        self.stream.set_read_chunk(size)

    async def send_message(
        self, opcode: int, data: bytes, *, compress: bool = True, fragment: int | None = None
    ) -> None:
        """A data message, compressed when deflate was agreed (unless ``compress=False``),
        cut into frames of ``fragment`` payload bytes (RSV1 on the first frame only)."""
        rsv = 0
        if self.deflate is not None and compress:
            data = self.deflate.compress(data)
            rsv = RSV1
        if fragment is None or len(data) <= fragment:
            await self.send(frame(opcode, data, rsv=rsv))
            return
        pieces = [data[i : i + fragment] for i in range(0, len(data), fragment)]
        frames = [
            frame(
                opcode if i == 0 else CONTINUATION,
                piece,
                fin=i == len(pieces) - 1,
                rsv=rsv if i == 0 else 0,
            )
            for i, piece in enumerate(pieces)
        ]
        await self.send(*frames)

    # -- receiving -------------------------------------------------------------------------

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            if self._eof:
                return False
            try:
                data = await self.stream.receive_some()
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self._eof = True
            self._buffer += data
        return True

    async def _read_frame(self) -> Frame | None:
        if not await self._fill(2):
            assert not self._buffer, f"connection closed inside a frame: {bytes(self._buffer)!r}"
            return None
        first, second = self._buffer[0], self._buffer[1]
        assert not second & 0x80, "the server masked a frame (RFC 6455 5.1)"
        size = second & 0x7F
        offset = 2
        if size >= 126:
            extra = 2 if size == 126 else 8
            assert await self._fill(2 + extra), "connection closed inside a frame header"
            size = int.from_bytes(self._buffer[2 : 2 + extra], "big")
            offset += extra
            assert size >= (126 if extra == 2 else 1 << 16), "length not minimally encoded"
        assert await self._fill(offset + size), "connection closed inside a frame"
        payload = bytes(self._buffer[offset : offset + size])
        del self._buffer[: offset + size]
        return self._checked(Frame(first & 0x0F, payload, bool(first & 0x80), (first >> 4) & 7))

    def _checked(self, received: Frame) -> Frame:
        opcode = received.opcode
        assert opcode in (CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG), received
        if received.rsv:
            assert received.rsv == RSV1 and self.deflate is not None, f"stray RSV bits {received}"
            assert opcode in (TEXT, BINARY), f"RSV1 on a control/continuation frame {received}"
        if opcode >= CLOSE:
            assert received.fin and len(received.payload) <= 125, f"bad control frame {received}"
        if opcode == CLOSE:
            assert len(received.payload) != 1, "close frame with a 1-byte payload"
            code = received.close_code
            if code is not None:
                assert code not in LOCAL_ONLY_CODES, f"close code {code} put on the wire"
                assert sendable_close_code(code), f"close code {code} may not be sent"
                received.payload[2:].decode("utf-8")  # the reason must be UTF-8
        return received

    async def read_frame(self, timeout: float = READ_TIMEOUT) -> Frame | None:
        """The next frame exactly as sent, or ``None`` once the server closed TCP."""
        try:
            with trio.fail_after(timeout):
                return await self._read_frame()
        except trio.TooSlowError:
            raise AssertionError(
                f"the server sent nothing within {timeout} s (virtual time)"
            ) from None

    async def receive(self, timeout: float = READ_TIMEOUT) -> Frame:
        """The next control frame, or the next data message reassembled and inflated."""
        first = await self.read_frame(timeout)
        if first is None:
            raise EndOfStream("the server closed the connection")
        if first.opcode >= CLOSE:
            return first
        assert first.opcode != CONTINUATION, "continuation frame without a message"
        parts = [first.payload]
        last = first
        while not last.fin:
            following = await self.read_frame(timeout)
            if following is None:
                raise EndOfStream("the server closed the connection inside a message")
            # The server sends each message as one frame, so this peer does not handle
            # control frames between fragments (RFC 6455 would allow them).
            assert following.opcode == CONTINUATION, f"{following} inside a message"
            parts.append(following.payload)
            last = following
        payload = b"".join(parts)
        if first.rsv & RSV1:
            assert self.deflate is not None
            payload = self.deflate.decompress(payload)
        if first.opcode == TEXT:
            payload.decode("utf-8")  # a text message must be valid UTF-8
        return Frame(first.opcode, payload)

    async def expect_nothing(self, seconds: float = PROMPTLY) -> None:
        """The server sends nothing (and keeps the connection) for ``seconds``."""
        with trio.move_on_after(seconds):
            received = await self._read_frame()
            raise AssertionError(f"expected silence, got {received or 'end of stream'}")

    async def expect_eof(self, timeout: float = PROMPTLY) -> None:
        """The server closes the TCP connection within ``timeout``, sending nothing more."""
        extra = await self.read_frame(timeout)
        assert extra is None, f"expected the TCP connection to close, got {extra}"

    async def expect_close(self, code: int | None) -> Frame:
        """The next frame closes with ``code``, and then the server closes the TCP connection
        at once (RFC 6455 7.1.1: the server closes first, without waiting for anything)."""
        received = await self.receive()
        assert received.opcode == CLOSE, f"expected close {code}, got {received}"
        assert received.close_code == code, f"expected close {code}, got {received.close_code}"
        await self.expect_eof()
        return received

    async def close(self, code: int | None = 1000, reason: bytes = b"") -> Frame:
        """Start the closing handshake; the server echoes the code and closes TCP."""
        await self.send(frame(CLOSE, close_payload(code, reason)))
        return await self.expect_close(code)

    async def aclose(self) -> None:
        await self.stream.aclose()


# -- the server under test -----------------------------------------------------------------


@dataclass
class EchoApp:
    """Autobahn's testee: echo every message with its type; record how sessions ended.

    On the path ``/close`` a text message ``"<code> <reason>"`` makes the app close instead.
    """

    disconnects: list[tuple[int, str]] = field(default_factory=list)
    received: int = 0
    ended: trio.Event = field(default_factory=trio.Event)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.disconnects.append((message["code"], message.get("reason") or ""))
                self.ended.set()
                return
            self.received += 1
            try:
                if scope["path"] == "/close":
                    code, _, reason = message["text"].partition(" ")
                    await send({"type": "websocket.close", "code": int(code), "reason": reason})
                elif message.get("text") is not None:
                    await send({"type": "websocket.send", "text": message["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": message["bytes"]})
            except ClientDisconnected:
                pass  # the disconnect message comes next

    async def disconnect(self) -> tuple[int, str]:
        """How the (single) session ended, as ``websocket.disconnect`` told the app."""
        with trio.fail_after(READ_TIMEOUT):
            await self.ended.wait()
        assert len(self.disconnects) == 1, self.disconnects
        return self.disconnects[0]


async def handshake_on(
    stream: trio.abc.Stream, path: str = "/", *, extensions: Iterable[str] = ()
) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """Send an opening handshake on any stream (in-memory, TCP, TLS); the status line,
    headers, and bytes that followed."""
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1".encode(),
        b"Host: testserver",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
        *(b"Sec-WebSocket-Extensions: " + offer.encode() for offer in extensions),
    ]
    await stream.send_all(b"\r\n".join(lines) + b"\r\n\r\n")
    data = b""
    with trio.fail_after(READ_TIMEOUT):
        while b"\r\n\r\n" not in data:
            more = await stream.receive_some()
            assert more, f"connection closed during the handshake: {data!r}"
            data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *header_lines = head.split(b"\r\n")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    if status.startswith(b"HTTP/1.1 101 "):
        assert (b"sec-websocket-accept", accept) in headers
    return status, headers, rest


async def open_peer(
    stream: trio.abc.Stream,
    path: str = "/",
    *,
    extensions: Iterable[str] = (),
    client_bits: int = 15,
) -> Peer:
    """A WebSocket opened on ``stream``; with a permessage-deflate offer in ``extensions``,
    the peer compresses with at most ``client_bits`` of window (and what the server allowed)."""
    status, headers, rest = await handshake_on(stream, path, extensions=extensions)
    assert status.startswith(b"HTTP/1.1 101 "), status
    deflate = None
    agreed = [value for name, value in headers if name == b"sec-websocket-extensions"]
    if agreed:
        assert len(agreed) == 1
        name, params = parse_extension(agreed[0].decode())
        assert name == "permessage-deflate", agreed
        deflate = Deflate(params, client_bits=client_bits)
    return Peer(stream, headers, rest, deflate)


class Server:
    """The server with an echo app, reached through raw in-memory connections."""

    def __init__(self, client: TestClient, app: EchoApp) -> None:
        self.client = client
        self.app = app
        self._streams: list[MemoryStream] = []

    async def handshake(
        self, path: str = "/", *, extensions: Iterable[str] = ()
    ) -> tuple[MemoryStream, bytes, list[tuple[bytes, bytes]], bytes]:
        """Send an opening handshake; the status line, headers, and bytes that followed."""
        stream = await self.client.connect()
        self._streams.append(stream)
        status, headers, rest = await handshake_on(stream, path, extensions=extensions)
        return stream, status, headers, rest

    async def connect(
        self, path: str = "/", *, extensions: Iterable[str] = (), client_bits: int = 15
    ) -> Peer:
        """Open a WebSocket; with a permessage-deflate offer in ``extensions``, the peer
        compresses with at most ``client_bits`` of window (and what the server allowed)."""
        stream = await self.client.connect()
        self._streams.append(stream)
        return await open_peer(stream, path, extensions=extensions, client_bits=client_bits)

    async def aclose(self) -> None:
        for stream in self._streams:
            await stream.aclose()


@asynccontextmanager
async def serve(**config: Any) -> AsyncIterator[Server]:
    """An echo server; ``config`` are ``trio_asgi.Config`` fields. Keepalive pings are off
    unless asked for, so that no frame arrives that the test did not provoke."""
    config.setdefault("ws_ping_interval", None)
    app = EchoApp()
    async with TestClient(app, **config) as client:
        server = Server(client, app)
        try:
            yield server
        finally:
            await server.aclose()
