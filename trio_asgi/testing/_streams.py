"""An in-memory byte stream pair that behaves like a TCP connection, faults included.

``trio.testing.memory_stream_pair()`` buffers without limit, so a server writing to a client
that never reads would never block, and backpressure could not be tested. These pipes have
a bounded buffer per direction (like a socket buffer), can hand the reader at most N bytes per
read (to exercise parsers on split input), and can be cut abruptly (like a TCP reset).
"""

from __future__ import annotations

import trio

# Per-direction buffer, about what a loopback socket holds before send() blocks.
DEFAULT_BUFFER = 256 * 1024


class _Pipe:
    """One direction of the connection."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.max_read: int | None = None  # deliver at most this many bytes per read
        self.buffer = bytearray()
        self.eof = False  # writer finished sending (FIN)
        self.reader_gone = False  # reader closed: writes fail like EPIPE
        self.aborted = False  # connection reset: both sides fail
        self.paused = False  # the reader is "busy": nothing is delivered
        self._lot = trio.lowlevel.ParkingLot()  # readers and writers wait for any change

    def _changed(self) -> None:
        self._lot.unpark_all()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        await trio.lowlevel.checkpoint()
        while view:
            if self.aborted or self.reader_gone:
                raise trio.BrokenResourceError("peer closed the connection")
            if self.eof:
                raise trio.ClosedResourceError("this side already sent EOF")
            room = self.capacity - len(self.buffer)
            if room <= 0:
                await self._lot.park()
                continue
            self.buffer += view[:room]
            view = view[room:]
            self._changed()

    async def read(self, max_bytes: int | None) -> bytes:
        await trio.lowlevel.checkpoint()
        while True:
            if self.aborted:
                raise trio.BrokenResourceError("connection reset by peer")
            if self.reader_gone:  # this end was closed under a pending read
                raise trio.ClosedResourceError("stream is closed")
            if self.buffer and not self.paused:
                size = len(self.buffer)
                if max_bytes is not None:
                    size = min(size, max_bytes)
                if self.max_read is not None:
                    size = min(size, self.max_read)
                data = bytes(self.buffer[:size])
                del self.buffer[:size]
                self._changed()
                return data
            if self.eof and not self.buffer:
                return b""
            await self._lot.park()

    def close_writer(self) -> None:
        self.eof = True
        self._changed()

    def close_reader(self) -> None:
        self.reader_gone = True
        self.buffer.clear()
        self._changed()

    def abort(self) -> None:
        self.aborted = True
        self.buffer.clear()
        self._changed()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._changed()


class MemoryStream(trio.abc.HalfCloseableStream):
    """One end of a :func:`stream_pair`."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        await self._outgoing.write(data)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        return await self._incoming.read(max_bytes)

    async def send_eof(self) -> None:
        self._outgoing.close_writer()
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._outgoing.close_writer()
            self._incoming.close_reader()
        await trio.lowlevel.checkpoint()

    def abort(self) -> None:
        """Reset the connection: both ends fail at once, unsent bytes are lost."""
        self._closed = True
        self._outgoing.abort()
        self._incoming.abort()

    # fault injection, seen from this end
    def set_read_chunk(self, size: int | None) -> None:
        """The *peer's* reads return at most ``size`` bytes of what this end sends."""
        if size is not None and size < 1:
            raise ValueError("chunk size must be at least 1 byte")
        self._outgoing.max_read = size

    def pause_reading(self, paused: bool = True) -> None:
        """Stop (or resume) taking bytes off the wire, so the peer's writes back up."""
        self._incoming.set_paused(paused)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def peer_closed(self) -> bool:
        """The peer sent EOF, stopped reading or reset: this stream cannot carry a request."""
        return self._incoming.eof or self._outgoing.reader_gone or self._incoming.aborted

    async def receive_until_eof(self) -> bytes:
        """Everything the peer sends until it closes (a reset ends it too)."""
        pieces = []
        while True:
            try:
                data = await self.receive_some()
            except trio.BrokenResourceError:
                break
            if not data:
                break
            pieces.append(data)
        return b"".join(pieces)


def stream_pair(buffer_size: int = DEFAULT_BUFFER) -> tuple[MemoryStream, MemoryStream]:
    """``(client_end, server_end)``: a connected pair with ``buffer_size`` bytes per direction."""
    client_to_server = _Pipe(buffer_size)
    server_to_client = _Pipe(buffer_size)
    return (
        MemoryStream(client_to_server, server_to_client),
        MemoryStream(server_to_client, client_to_server),
    )
