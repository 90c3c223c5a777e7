"""Per-connection I/O: the read loop between requests, serialized and bounded writes, timers.

One ``Connection`` per accepted stream, run as one task in the server's connections nursery.
The HTTP cycle and the WebSocket session (``asgi/``) do their I/O through it; it owns the
stream and closes it when ``serve`` returns, whatever happened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import h11
import trio

from ._types import ASGIApp
from .asgi.scope import ConnectionInfo, http_scope
from .config import Config
from .errors import ClientDisconnected
from .protocols.http1 import NEED_DATA, BadRequest, HTTP1Protocol
from .protocols.websocket import wants_websocket

if TYPE_CHECKING:
    from .asgi.http import HTTPCycle
    from .asgi.websocket import WebSocketSession

log = logging.getLogger("trio_asgi.error")
access_logger = logging.getLogger("trio_asgi.access")

# 64 KiB per read: big enough to take a whole pipelined burst or a large frame in few
# syscalls, small enough to stay under glibc's mmap threshold (128 KiB), above which every
# read would cost an mmap/munmap pair.
RECEIVE_SIZE: Final = 64 * 1024
# Writes are bounded per piece of this size (timeout_write / ws_send_timeout each), so the
# bound is a minimum throughput: a slow but alive client finishes, a stalled one is dropped.
# Writes are never shielded and never buffered by us: this is what keeps a stalled reader
# from pinning a task.
WRITE_PIECE: Final = 256 * 1024
# An unread request body is drained (so the connection can be reused) up to this size and
# for this long; beyond that closing is cheaper than reading.
DRAIN_LIMIT: Final = 256 * 1024
DRAIN_TIMEOUT: Final = 2.0
# Closing a socket with unread input makes the kernel send a reset, which can destroy our
# response before the client read it. So when the client may still be sending we half-close
# and discard its bytes for a moment first ("lingering close", RFC 9112 9.6).
LINGER_TIMEOUT: Final = 2.0
LINGER_LIMIT: Final = 1024 * 1024
# Seconds to spend on a TLS close_notify or similar polite goodbye before just dropping.
CLOSE_TIMEOUT: Final = 1.0
# A connection accepted just before a graceful stop has no request yet, but its client has
# most likely sent one already: closing it would fail that request. That matters when other
# processes keep serving the same socket (a rolling restart), so such a connection gets this
# long from being accepted to deliver its first request head. Older silent connections
# (browsers' speculative preconnects) are closed at once.
FIRST_REQUEST_GRACE: Final = 1.0
# WebSocket close code of a server that stops because another process takes over its socket
# (a rolling restart). Idle keep-alive connections are then not closed at once: a client may
# be sending its next request on one right now, and closing it under that request would fail
# it. Each is left to its keep-alive timeout, and a request that comes meanwhile is served
# with "Connection: close". When the server just goes away (1001) they are closed at once.
SERVICE_RESTART: Final = 1012


def _declared_length(request: h11.Request) -> int:
    """The request's Content-Length (h11 validated it), 0 when the body is chunked."""
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return 0


@dataclass(eq=False)
class ServerState:
    """What all connections of one server share."""

    app: ASGIApp
    config: Config
    lifespan_state: dict[str, Any] = field(default_factory=dict)
    connections: set[Connection] = field(default_factory=set)
    shutting_down: bool = False
    close_code: int = 1001

    @property
    def access_log(self) -> bool:
        return self.config.access_log and access_logger.isEnabledFor(logging.INFO)

    requests: int = 0
    on_request_limit: Callable[[], None] | None = None  # the server's graceful shutdown

    def request_served(self) -> None:
        """Count a finished request or WebSocket session against --limit-max-requests."""
        self.requests += 1
        limit = self.config.limit_max_requests
        if limit is not None and self.requests == limit and self.on_request_limit is not None:
            log.info("Served %d requests (--limit-max-requests): shutting down", limit)
            self.on_request_limit()

    @property
    def replaced(self) -> bool:
        """Stopping while another process takes over the socket (see SERVICE_RESTART)."""
        return self.shutting_down and self.close_code == SERVICE_RESTART

    def begin_shutdown(self, close_code: int = 1001) -> None:
        """Ask every connection to wind down; each does its own I/O for it."""
        self.shutting_down = True
        self.close_code = close_code
        for connection in list(self.connections):
            connection.shutdown()


class _WriteLock:
    """A FIFO lock for writers whose uncontended path does not yield to the scheduler.

    ``trio.StrictFIFOLock.acquire`` always checkpoints; on the per-message hot path that is a
    whole extra trip through the run loop, while the write that follows checkpoints anyway.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = trio.StrictFIFOLock()

    async def __aenter__(self) -> None:
        if self._lock.locked():
            await self._lock.acquire()
        else:
            self._lock.acquire_nowait()

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()


class Connection:
    """One client connection: HTTP/1.1 requests in turn, possibly upgraded to WebSocket."""

    def __init__(self, stream: trio.abc.Stream, server: ServerState, info: ConnectionInfo) -> None:
        self.stream = stream
        self.server = server
        self.config = server.config
        self.info = info
        self.writing = _WriteLock()
        self.broken = False  # the stream can no longer carry bytes either way
        self.write_timeout = self.config.timeout_write
        self.peer_closed = False  # we read end-of-file
        self.http: HTTP1Protocol | None = HTTP1Protocol(
            max_head_size=self.config.h11_max_incomplete_event_size,
            server_header=self.config.server_header,
            date_header=self.config.date_header,
        )
        self.cycle: HTTPCycle | None = None
        self.helpers: trio.Nursery  # tasks that help the current request (disconnect watcher)
        self.requests_served = 0
        self.overloaded = False  # over --limit-concurrency in 503 mode: refuse the request
        self.last_request = False  # this connection closes after the current response
        self.websocket: WebSocketSession | None = None
        self._idle_scope: trio.CancelScope | None = None
        self._first_request_due: float | None = None  # see FIRST_REQUEST_GRACE
        self._between_requests = False  # _idle_scope is a keep-alive wait, see SERVICE_RESTART
        self.lingering = False  # the client may still be sending a request we will not read

    # -- raw I/O -----------------------------------------------------------------------------

    async def receive(self) -> bytes:
        """Next bytes from the peer; ``b""`` once it closed or the stream failed."""
        if self.peer_closed or self.broken:
            await trio.lowlevel.checkpoint()
            return b""
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.broken = True
            data = b""
        if not data:
            self.peer_closed = True
        return data

    async def write(self, data: bytes) -> None:
        """Hand ``data`` to the transport; the caller holds ``self.writing``.

        Raises ``ClientDisconnected`` when the peer is gone or did not take a piece of it
        within the write timeout; either way the stream is unusable afterwards.
        """
        if self.broken:
            raise ClientDisconnected("connection closed")
        done = False
        try:
            if len(data) <= WRITE_PIECE:
                with trio.move_on_after(self.write_timeout):
                    await self.stream.send_all(data)
                    done = True
            else:
                view = memoryview(data)
                for start in range(0, len(view), WRITE_PIECE):
                    done = False
                    with trio.move_on_after(self.write_timeout):
                        await self.stream.send_all(view[start : start + WRITE_PIECE])
                        done = True
                    if not done:
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ClientDisconnected("connection closed by peer") from exc
        finally:
            if not done:
                # Cancelled, timed out or failed part-way: the byte stream is corrupt now.
                self.broken = True
        if not done:
            raise ClientDisconnected("peer stopped reading; write timed out")

    def sendfile_socket(self) -> trio.socket.SocketType | None:
        """The raw socket when file ranges may bypass us via ``os.sendfile`` (plain TCP)."""
        stream = self.stream
        if isinstance(stream, trio.SocketStream) and hasattr(os, "sendfile"):
            return stream.socket
        return None

    async def send(self, data: bytes) -> None:
        """``write`` under the write lock."""
        async with self.writing:
            await self.write(data)

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self) -> None:
        self.server.connections.add(self)
        try:
            async with trio.open_nursery() as helpers:
                self.helpers = helpers
                await self._serve_http()
                if self.lingering and not self.broken and not self.peer_closed:
                    await self._linger()
        finally:
            self.server.connections.discard(self)
            await self.close_stream()

    def shutdown(self) -> None:
        """The server is stopping: finish what is in flight, take nothing new."""
        if self._idle_scope is not None:
            if self._first_request_due is not None:
                self._idle_scope.deadline = min(self._idle_scope.deadline, self._first_request_due)
            elif not (self._between_requests and self.server.replaced):
                self._idle_scope.cancel()
        if self.cycle is not None:
            self.cycle.on_shutdown()
        if self.websocket is not None:
            self.websocket.on_shutdown(self.server.close_code)

    async def _linger(self) -> None:
        stream = self.stream
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            return  # TLS cannot half-close; closing is all we can do
        with trio.move_on_after(LINGER_TIMEOUT) as scope:
            self._idle_scope = scope  # shutdown may cut it short
            try:
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            discarded = 0
            while discarded < LINGER_LIMIT:
                data = await self.receive()
                if not data:
                    break
                discarded += len(data)
        self._idle_scope = None

    async def close_stream(self) -> None:
        """Close politely (TLS close_notify) within a short bound. Trio streams release the
        socket even when this is cancelled or times out, so no shielding is needed."""
        self.broken = True
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    # -- HTTP/1.1 ----------------------------------------------------------------------------

    async def _serve_http(self) -> None:
        from .asgi.http import HTTPCycle

        proto = self.http
        assert proto is not None
        first = True
        while True:
            try:
                request = await self._next_request(proto, first=first)
            except BadRequest as exc:
                await self._reject(proto, exc.status, exc.detail, exc.public)
                return
            if request is None:
                return
            if self.overloaded:
                await self._reject(proto, 503, "over --limit-concurrency", "Server at capacity")
                return
            if request.method == b"CONNECT":
                await self._reject(proto, 405, "CONNECT", "CONNECT is not supported")
                return
            if wants_websocket(request.headers):
                await self._serve_websocket(proto, request)
                return
            self.requests_served += 1
            limit = self.config.limit_max_requests_per_connection
            self.last_request = limit is not None and self.requests_served >= limit
            scope = http_scope(request, self.info, self.server.lifespan_state)
            cycle = HTTPCycle(self, proto, request, scope)
            self.cycle = cycle
            try:
                await cycle.run(self.server.app)
            finally:
                self.cycle = None
                self.server.request_served()
            if not cycle.keep_alive or self.last_request:
                return
            if self.server.shutting_down and not self.server.replaced:  # see SERVICE_RESTART
                return
            if not await self._prepare_next_cycle(proto, request):
                return
            first = False

    async def _next_request(self, proto: HTTP1Protocol, *, first: bool) -> h11.Request | None:
        """The next request head, ``None`` when the connection should just close.

        Two timers: while nothing of a request has arrived the connection is idle (keep-alive
        timeout; for a new connection the header timeout), and from the first byte the whole
        head must arrive within the header timeout (slowloris). Raises ``BadRequest``.
        """
        event = proto.next_event()
        if event is NEED_DATA and proto.buffered_size == 0:
            config = self.config
            data = await self._receive_idle(
                config.timeout_request_header if first else config.timeout_keep_alive, first=first
            )
            if data is None:
                return None
            proto.receive_data(data)
            event = proto.next_event()
        if event is NEED_DATA:
            with trio.move_on_after(self.config.timeout_request_header) as scope:
                while event is NEED_DATA:
                    proto.receive_data(await self.receive())
                    event = proto.next_event()
            if scope.cancelled_caught:
                raise BadRequest(408, "request head not received in time")
        if type(event) is h11.Request:
            return event
        return None  # ConnectionClosed

    async def _receive_idle(self, seconds: float, *, first: bool = False) -> bytes | None:
        """Wait for the first byte of a request, at most ``seconds``; ``None`` if none
        came. Shutdown cuts the wait short: idle connections are closed first, a new
        connection gets ``FIRST_REQUEST_GRACE``, and when the server is replaced keep-alive
        waits run out (``SERVICE_RESTART``)."""
        if self.server.shutting_down:
            if first:
                seconds = min(seconds, FIRST_REQUEST_GRACE)
            elif not self.server.replaced:
                return None
        with trio.move_on_after(seconds) as scope:
            self._idle_scope = scope
            self._between_requests = not first
            if first:
                self._first_request_due = trio.current_time() + FIRST_REQUEST_GRACE
            try:
                return await self.receive()
            finally:
                self._idle_scope = None
                self._first_request_due = None
                self._between_requests = False
        return None

    async def _prepare_next_cycle(self, proto: HTTP1Protocol, request: h11.Request) -> bool:
        """Reset for another request, draining a small unread request body first."""
        if proto.start_next_cycle():
            return True
        self.lingering = not proto.request_complete
        if not proto.unread_body or _declared_length(request) > DRAIN_LIMIT:
            return False
        drained = 0
        with trio.move_on_after(DRAIN_TIMEOUT):
            while drained <= DRAIN_LIMIT:
                try:
                    event = proto.next_event()
                except BadRequest:
                    return False
                if event is NEED_DATA:
                    data = await self.receive()
                    if not data:
                        return False
                    proto.receive_data(data)
                elif type(event) is h11.Data:
                    drained += len(event.data)
                elif type(event) is h11.EndOfMessage:
                    self.lingering = False
                    return proto.start_next_cycle()
                else:
                    return False
        return False

    async def _reject(
        self, proto: HTTP1Protocol, status: int, detail: str, public: str | None = None
    ) -> None:
        """Answer a request we will not run (bad input) and close."""
        log.debug("rejecting request from %s with %d: %s", self.info.client, status, detail)
        self.lingering = True
        response = proto.error_response(status, public)
        if response is not None:
            try:
                await self.send(response)
            except ClientDisconnected:
                pass

    # -- WebSocket ---------------------------------------------------------------------------

    async def _serve_websocket(self, proto: HTTP1Protocol, request: h11.Request) -> None:
        from .asgi.websocket import WebSocketSession
        from .protocols.websocket import HandshakeError, check_handshake

        # h11 parks in MIGHT_SWITCH_PROTOCOL only once the (normally empty) request body ended.
        try:
            while True:
                event = proto.next_event()
                if event is NEED_DATA:
                    data = await self.receive()
                    if not data:
                        return
                    proto.receive_data(data)
                elif type(event) is h11.EndOfMessage:
                    break
                elif type(event) is not h11.Data:
                    return
            handshake = check_handshake(request.method, request.http_version, request.headers)
        except BadRequest as exc:
            await self._reject(proto, exc.status, exc.detail, exc.public)
            return
        except HandshakeError as exc:
            log.debug("bad WebSocket handshake from %s: %s", self.info.client, exc.detail)
            response = proto.error_response(exc.status, exc.detail, exc.headers)
            if response is not None:
                try:
                    await self.send(response)
                except ClientDisconnected:
                    pass
            return
        session = WebSocketSession(self, proto, request, handshake)
        self.websocket = session
        try:
            await session.run(self.server.app)
        finally:
            self.websocket = None
            self.server.request_served()
