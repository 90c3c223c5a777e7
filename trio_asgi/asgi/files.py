"""Response bodies from files: the ``http.response.pathsend`` and ``zerocopysend`` extensions.

Files are streamed in pieces, never loaded whole. Over plain TCP a file range goes to the
socket with ``os.sendfile`` (the kernel copies it; we only wait for the socket to be
writable), run in a worker thread because a read from disk may block. Elsewhere (TLS, the
in-memory test transport) the pieces are read in a worker thread and written as usual.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any, Final

import trio

from .._types import Message
from ..connection import WRITE_PIECE
from ..errors import ASGIProtocolError, ClientDisconnected
from ..protocols.http1 import InvalidResponse

if TYPE_CHECKING:
    from .http import HTTPCycle

# Read this much per worker-thread hop when we cannot use sendfile: large enough that the
# thread hop is cheap per byte, small enough to bound memory per response.
FILE_PIECE: Final = 256 * 1024


class FileRange:
    """Stands in for file contents when h11 frames them (it only needs the length)."""

    __slots__ = ("count", "fd", "offset")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd = fd
        self.offset = offset
        self.count = count

    def __len__(self) -> int:
        return self.count


async def send_path(cycle: HTTPCycle, message: Message) -> None:
    """``http.response.pathsend``: the file at ``path`` is the (whole, final) body."""
    cycle.check_body_allowed("http.response.pathsend")
    path = message.get("path")
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ASGIProtocolError(f"http.response.pathsend needs an absolute 'path', got {path!r}")
    with open(path, "rb") as file:  # noqa: ASYNC230 - opening is cheap; reads go to a thread
        size = os.fstat(file.fileno()).st_size
        await _send_range(cycle, file.fileno(), 0, size, final=True)


async def send_file_range(cycle: HTTPCycle, message: Message) -> None:
    """``http.response.zerocopysend``: ``count`` bytes of ``file`` from ``offset``."""
    cycle.check_body_allowed("http.response.zerocopysend")
    file: Any = message.get("file")
    try:
        fd = file.fileno()
    except (AttributeError, OSError, ValueError):
        raise ASGIProtocolError("http.response.zerocopysend needs a real 'file'") from None
    offset = message.get("offset")
    count = message.get("count")
    for value in (offset, count):
        if value is not None and (type(value) is not int or value < 0):
            raise ASGIProtocolError("zerocopysend 'offset' and 'count' must be whole numbers >= 0")
    from_position = offset is None
    if from_position:
        try:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        except OSError:
            raise ASGIProtocolError("zerocopysend without 'offset' needs a seekable file") from None
    assert offset is not None
    info = os.fstat(fd)
    if count is None:
        count = max(info.st_size - offset, 0)
    elif stat.S_ISREG(info.st_mode) and offset + count > info.st_size:
        # Found only once the head is out, it could end the response only by cutting it.
        raise ASGIProtocolError(
            f"zerocopysend of {count} bytes from {offset}: the file has {info.st_size}"
        )
    sent = await _send_range(cycle, fd, offset, count, final=not message.get("more_body", False))
    if from_position:
        os.lseek(fd, offset + sent, os.SEEK_SET)  # as if the app had read it


async def _send_range(cycle: HTTPCycle, fd: int, offset: int, count: int, *, final: bool) -> int:
    """Write head (if due), ``count`` bytes of ``fd`` and the body end (if ``final``)."""
    conn = cycle.conn
    proto = cycle.proto
    if cycle.no_body:
        count = 0
    try:
        head = cycle.head(count, final=final)
        socket = conn.sendfile_socket() if count else None
        pieces = proto.body_pieces(FileRange(fd, offset, count)) if count else []
        tail = cycle.body_end() if final else b""
    except InvalidResponse as exc:
        raise cycle.invalid(exc) from None
    # h11 puts the passed-through data between the framing pieces (chunk size / CRLF).
    split = next((i for i, piece in enumerate(pieces) if isinstance(piece, FileRange)), 0)
    prefix = b"".join(p for p in pieces[:split] if isinstance(p, bytes))
    suffix = b"".join(p for p in pieces[split + 1 :] if isinstance(p, bytes))
    async with conn.writing:
        try:
            if head or prefix:
                await conn.write(head + prefix)
            if count:
                if socket is not None:
                    await _sendfile(conn, socket, fd, offset, count)
                else:
                    await _copy(conn, fd, offset, count)
            if suffix or tail:
                await conn.write(suffix + tail)
        except ClientDisconnected:
            cycle.client_lost()
            raise
    cycle.bytes_sent += count
    cycle.wrote()
    return count


async def _sendfile(
    conn: Any, socket: trio.socket.SocketType, fd: int, offset: int, count: int
) -> None:
    """Kernel-side copy to a non-blocking socket: wait until writable, send what fits.

    Each WRITE_PIECE of the range must go out within the write timeout, as for any other
    body (a wait for writability alone covers only the few KiB the socket takes at once:
    a client reading a trickle would hold the download open forever)."""
    end = offset + count
    piece_end = offset + WRITE_PIECE
    deadline = trio.current_time() + conn.write_timeout
    while offset < end:
        with trio.move_on_at(deadline) as scope:
            await trio.lowlevel.wait_writable(socket)
        if scope.cancelled_caught:
            conn.broken = True
            raise ClientDisconnected("peer stopped reading; write timed out")
        try:
            sent = await trio.to_thread.run_sync(
                os.sendfile, socket.fileno(), fd, offset, end - offset
            )
        except BlockingIOError:
            continue
        except OSError as exc:
            conn.broken = True
            raise ClientDisconnected("connection closed by peer") from exc
        if sent == 0:  # the file is shorter than promised
            conn.broken = True
            raise ASGIProtocolError("file ended before the announced number of bytes")
        offset += sent
        if offset >= piece_end:  # a whole piece went out in time: the next one's turn
            piece_end = offset + WRITE_PIECE
            deadline = trio.current_time() + conn.write_timeout


async def _copy(conn: Any, fd: int, offset: int, count: int) -> None:
    """Read the range piece by piece in a worker thread and write it (TLS, tests)."""
    end = offset + count
    while offset < end:
        piece = await trio.to_thread.run_sync(os.pread, fd, min(FILE_PIECE, end - offset), offset)
        if not piece:
            conn.broken = True
            raise ASGIProtocolError("file ended before the announced number of bytes")
        await conn.write(piece)
        offset += len(piece)
