"""Per-connection I/O: the read loop between requests, serialized and bounded writes, timers.

One ``Connection`` per accepted stream, run as one task in the server's connections nursery.
The HTTP cycle and the WebSocket session (``asgi/``) do their I/O through it; it owns the
stream and closes it when ``serve`` returns, whatever happened.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import h11
import trio

from ._types import ASGIApp
from .asgi.scope import ConnectionInfo, http_scope
from .config import Config
from .errors import ClientDisconnected
from .handoff import Handoffs
from .heartbeat import Heartbeat
from .locks import FIFOLock
from .logging import format_address, log_http_line
from .protocols.http1 import NEED_DATA, BadRequest, HTTP1Protocol, error_body, error_head
from .readiness import ReadinessSet

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
# The direct read/write fast paths skip trio's checkpoints when the socket is ready; after
# this many in a row we yield anyway, so one busy connection cannot starve the others.
YIELD_EVERY: Final = 16
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


# What the access log shows of a request whose head could not be read: "- - HTTP/1.1".
_UNREAD_REQUEST: Final = h11.Request(method=b"-", target=b"-", headers=[(b"host", b"-")])

# What ``Connection._serve_http`` ends with.
_CLOSE: Final = 0
_UPGRADE: Final = 1  # a WebSocket handshake
_HANDED_OFF: Final = 2  # another task serves the connection (``hand_off``)

# What ``Connection.loop_scope`` becomes when a WebSocket takes over the connection: the
# session never uses it, and each idle one would keep its own (112 bytes). Never entered.
_SPENT_SCOPE: Final = trio.CancelScope()


def _raw_socket_fd(stream: trio.abc.Stream) -> int:
    """The descriptor of a plain TCP/unix stream, for the non-blocking write fast path;
    -1 for anything else (TLS, in-memory streams)."""
    if isinstance(stream, trio.SocketStream):
        return stream.socket.fileno()
    return -1


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
    requests_begun: int = 0  # HTTP requests handed to the app (see Connection._is_last_request)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)  # pings, keep-alive timeouts
    readiness: ReadinessSet = field(default_factory=ReadinessSet)  # socket waits while busy
    handoffs: Handoffs = field(default_factory=Handoffs)  # apps running on after a response
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


class Connection:
    """One client connection: HTTP/1.1 requests in turn, possibly upgraded to WebSocket."""

    # Slots: thousands of idle WebSockets each keep one of these.
    __slots__ = (
        "_drained",
        "_fd",
        "_first_request_due",
        "_idle_due",
        "_idle_tick",
        "_linger_scope",
        "_maybe_more",
        "_received",
        "_stream_closed",
        "_unyielded",
        "_watched",
        "broken",
        "config",
        "cycle",
        "heartbeat_key",
        "helpers",
        "http",
        "info",
        "last_request",
        "lingering",
        "loop_scope",
        "overloaded",
        "peer_closed",
        "requests_served",
        "server",
        "stream",
        "upgrade",
        "websocket",
        "write_timeout",
        "writing",
    )

    def __init__(self, stream: trio.abc.Stream, server: ServerState, info: ConnectionInfo) -> None:
        self.stream = stream
        self.server = server
        self.config = server.config
        self.info = info
        self.writing = FIFOLock()
        self.broken = False  # the stream can no longer carry bytes either way
        self.write_timeout = self.config.timeout_write
        self.peer_closed = False  # we read end-of-file
        self.http: HTTP1Protocol | None = HTTP1Protocol(
            max_head_size=self.config.h11_max_incomplete_event_size,
            server_header=self.config.server_header,
            date_header=self.config.date_header,
        )
        self.cycle: HTTPCycle | None = None
        self.upgrade: h11.Request | None = None  # a WebSocket handshake, briefly
        self.helpers: trio.Nursery  # tasks that help the current request (disconnect watcher)
        self.requests_served = 0
        self.overloaded = False  # over --limit-concurrency in 503 mode: refuse the request
        self.last_request = False  # this connection closes after the current response
        self.websocket: WebSocketSession | None = None
        # One scope around the whole HTTP loop; waiting for a request too long cancels it.
        self.loop_scope = trio.CancelScope()
        # Waiting for the first byte of a request until then (inf: not waiting); shutdown
        # may cut the wait short. The server's Heartbeat looks at it at ``_idle_tick``.
        self._idle_due = math.inf
        self._idle_tick = math.inf
        self.heartbeat_key = 0  # (set by the Heartbeat)
        self._linger_scope: trio.CancelScope | None = None
        self._first_request_due: float | None = None  # see FIRST_REQUEST_GRACE
        self.lingering = False  # the client may still be sending a request we will not read
        self._stream_closed = False
        self._fd = _raw_socket_fd(stream)
        self._unyielded = 0
        self._drained = False  # the next read waits first (see receive_nowait)
        self._maybe_more = False  # the last read filled its buffer: the socket may hold more
        # The socket is in the server's readiness set, for waits while the server is busy.
        self._watched = self._fd >= 0 and server.readiness.watch(self._fd)
        self._received: bytes | bytearray | None = None  # TLS or in-memory: read but not yet taken

    # -- raw I/O -----------------------------------------------------------------------------

    async def receive(self) -> bytes | bytearray:
        """Next bytes from the peer; ``b""`` once it closed or the stream failed."""
        data = self.receive_nowait()
        if data is None:
            while data is None:
                try:
                    await self.readable()
                except (trio.ClosedResourceError, OSError):  # closed under us (``abandon``)
                    self.broken = True
                data = self.receive_nowait()
        elif not data:
            await trio.lowlevel.checkpoint()
        return data

    def receive_nowait(self) -> bytes | bytearray | None:
        """Bytes from the peer if they can be had without waiting: ``b""`` once it closed or
        the stream failed; ``None`` when there are none yet: then await ``readable()`` and
        ask again. (What ``receive`` does; the WebSocket reader does it inline, see there.)"""
        if self.broken:
            return b""  # also when woken just as the socket was closed: its fd may be reused
        data = self._received
        if data is not None:  # TLS or in-memory: what readable() received
            self._received = None
        elif self.peer_closed:
            return b""
        elif self._fd < 0 or self._drained:
            self._drained = False
            return None
        else:
            # Plain TCP: read the descriptor directly and wait with trio only when it is
            # empty. Same steps as SocketStream.receive_some, minus three layers of context
            # managers: ~2 µs less per read.
            try:
                data = os.read(self._fd, RECEIVE_SIZE)
            except BlockingIOError:
                self._maybe_more = False
                return None
            except OSError:
                self.broken = True
                return b""
            # When the last read emptied the socket, the next one waits first: a peer that
            # waits for our answer has rarely sent more yet, and trying would cost a read
            # that fails with EAGAIN, a syscall and an exception per message (small
            # WebSocket echo went from 1.22x to 1.32x Uvicorn h11). After YIELD_EVERY reads
            # in a row it waits too, since waiting for readiness always lets the other tasks
            # run first: a peer that always has data cannot starve them.
            self._unyielded += 1
            self._maybe_more = len(data) == RECEIVE_SIZE
            self._drained = not self._maybe_more or self._unyielded >= YIELD_EVERY
        if not data:
            self.peer_closed = True
        return data

    def readable(self) -> Awaitable[None]:
        """What to await when ``receive_nowait()`` had nothing. When the stream is closed
        under the waiting task (``abandon``) it raises ClosedResourceError or just returns,
        and ``receive_nowait()`` then says the stream ended.

        On a plain socket this is a wait for the descriptor, returned rather than awaited
        here: a reader idle in it keeps no frame of ours (230 bytes per idle WebSocket). It is
        trio's own, or the server's readiness set's while the server is busy (``readiness.py``;
        not for a socket that may still hold data: the set tells of new data only). Other
        streams are read here, into ``receive_nowait``'s hands.
        """
        fd = self._fd
        if fd >= 0:
            self._unyielded = 0
            if self._watched and not self._maybe_more:
                return self.server.readiness.wait(fd)
            return trio.lowlevel.wait_readable(fd)  # noqa: ASYNC105 (awaited by the caller)
        return self._receive_stream()

    async def _receive_stream(self) -> None:
        try:
            self._received = await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.broken = True

    async def write(self, data: bytes | bytearray) -> None:
        """Hand ``data`` to the transport; the caller holds ``self.writing``.

        Raises ``ClientDisconnected`` when the peer is gone or did not take a piece of it
        within the write timeout; either way the stream is unusable afterwards.
        """
        if self.broken:
            raise ClientDisconnected("connection closed")
        if self._fd >= 0:
            # Plain TCP: most writes fit in the socket buffer, so try once without trio's
            # send path and its cancel scope (a third of the per-request cost of a small
            # response); only what does not fit goes the slow, bounded way.
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self.broken = True
                raise ClientDisconnected("connection closed by peer") from exc
            if sent == len(data):
                self._unyielded += 1
                if self._unyielded >= YIELD_EVERY:  # let others run even if we never block
                    self._unyielded = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return
            await self._write_slowly(memoryview(data)[sent:])
            return
        await self._write_slowly(data)

    async def _write_slowly(self, data: bytes | bytearray | memoryview) -> None:
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
        lock = self.writing
        if not lock.try_acquire():
            await lock.acquire()
        try:
            await self.write(data)
        finally:
            lock.release()

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self, resumed: HTTPCycle | None = None) -> None:
        """Serve the connection until it closes.

        With ``resumed``, go on after that request, whose app runs on in the task that ran
        it (``hand_off``). Every such task is a child of the first task's nursery,
        not of the task before it: finished ones do not wait on each other, however many
        requests a connection carries.
        """
        outcome = _CLOSE
        helpers: contextlib.AbstractAsyncContextManager[trio.Nursery]
        if resumed is None:
            self.server.connections.add(self)
            helpers = trio.open_nursery()
        else:
            helpers = contextlib.nullcontext(self.helpers)
            self.loop_scope = trio.CancelScope()  # (a scope is entered only once)
        try:
            async with helpers as nursery:
                self.helpers = nursery
                session = None
                try:
                    with self.loop_scope:
                        # The upgrade request travels through an attribute, not a local
                        # here: this frame lives as long as the WebSocket, the request need not.
                        outcome = await self._serve_http(resumed)
                        if outcome == _UPGRADE:
                            session = await self._open_websocket()
                        if session is not None:
                            self.websocket = session
                            self.server.requests_begun += 1  # (see _is_last_request)
                            # The app's answer to the handshake, bounded by the loop scope's
                            # deadline: a scope of its own cost 7 µs more per handshake.
                            self.loop_scope.deadline = (
                                trio.current_time() + self.config.ws_accept_timeout
                            )
                            await session.start(self.server.app)
                    if outcome == _HANDED_OFF:
                        return  # (the first task's nursery waits for the new one)
                    if session is not None:
                        # Run from this frame (every suspended frame is kept by each idle
                        # WebSocket) and outside the loop scope (a cancel status less); the
                        # session stops its reader with ``abandon``.
                        self.loop_scope = _SPENT_SCOPE  # (and does not keep this one)
                        if await session.opened():
                            await session.read_frames()
                finally:
                    # (This task's session only: a task that handed the connection off
                    # leaves late, after the next task's WebSocket may have opened.)
                    if session is not None:
                        self.server.heartbeat.forget(session)
                        self.websocket = None
                        self.server.request_served()
                if (
                    outcome == _CLOSE
                    and self.lingering
                    and not self.broken
                    and not self.peer_closed
                ):
                    await self._linger()
                # Closed here, before the nursery is done: a WebSocket's app may still run
                # (RFC 6455 7.1.1: after the closing handshake the server closes TCP first;
                # the app hears websocket.disconnect), and so may the app of the request
                # this task took over from (``resumed``).
                await self.close_stream()
        except Exception:
            # A bug of ours (the app's exceptions are caught where it is called): it ends this
            # connection, not the server's connections nursery and everyone else with it.
            log.exception(
                "Internal error serving %s; connection closed", format_address(self.info.client)
            )
        finally:
            if resumed is None:  # (after the nursery: everything on the connection is done)
                self.server.connections.discard(self)
                self.server.heartbeat.forget(self)
                await self.close_stream()
            elif outcome != _HANDED_OFF:
                await self.close_stream()

    def hand_off(self) -> None:
        """Called a moment after a response of this connection went out: if that request's
        app still runs, it finishes in the task running it while a new task serves the
        connection's next requests (``handoff.py``)."""
        cycle = self.cycle
        server = self.server
        if (
            cycle is None
            or not cycle.runs_on
            or self.last_request
            or self.broken
            or (server.shutting_down and not server.replaced)
        ):
            return
        self.cycle = None  # (shutdown has nothing to tell an app whose response is done)
        cycle.handed_off = True
        # A new task starts from a copy of the current context: make that the connection's,
        # as for every other request on it (the checking task's is the server's, without
        # what the connection's task was started with, e.g. the test client's marker).
        assert cycle.task is not None  # (it runs the app)
        cycle.task.context.run(self.helpers.start_soon, self.serve, cycle)

    def shutdown(self) -> None:
        """The server is stopping: finish what is in flight, take nothing new."""
        if self._idle_due != math.inf:
            if self._first_request_due is not None:
                scope = self.loop_scope
                scope.deadline = min(scope.deadline, self._first_request_due)
            elif not self.server.replaced:  # (a keep-alive wait: see SERVICE_RESTART)
                self.loop_scope.cancel()
        if self._linger_scope is not None:
            self._linger_scope.cancel()
        if self.cycle is not None:
            self.cycle.on_shutdown()
        if self.websocket is not None:
            self.websocket.on_shutdown(self.server.close_code)

    async def _linger(self) -> None:
        stream = self.stream
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            return  # TLS cannot half-close; closing is all we can do
        with trio.move_on_after(LINGER_TIMEOUT) as scope:
            self._linger_scope = scope  # shutdown may cut it short
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
        self._linger_scope = None

    def abandon(self) -> None:
        """Give up on the peer now: the stream is closed under whoever waits on it (trio
        raises ClosedResourceError in a pending receive, which ``receive`` reports as the
        end). How a WebSocket stops its reader, which runs outside any scope of its own."""
        if self._stream_closed or self._close_socket():
            return
        # TLS or in-memory: closing is async (TLS says goodbye, within CLOSE_TIMEOUT)
        self.broken = True
        self.helpers.start_soon(self.close_stream)

    async def close_stream(self) -> None:
        """Close politely (TLS close_notify) within a short bound. Trio streams release the
        socket even when this is cancelled or times out, so no shielding is needed."""
        if self._stream_closed:
            return
        if self._close_socket():
            await trio.lowlevel.checkpoint()
            return
        self._stream_closed = True
        self.broken = True
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    def _close_socket(self) -> bool:
        """Close a plain socket at once: it has no goodbye to say, so it needs no timeout
        (a cancel scope less per connection). False for other streams."""
        stream = self.stream
        if not isinstance(stream, trio.SocketStream):
            return False
        self._stream_closed = True
        self.broken = True
        if self._watched:
            self.server.readiness.forget(self._fd)  # (its reader wakes, and finds it closed)
        stream.socket.close()
        return True

    # -- HTTP/1.1 ----------------------------------------------------------------------------

    async def _serve_http(self, resumed: HTTPCycle | None) -> int:
        """Serve requests in turn, after ``resumed`` if given. ``_UPGRADE`` (with
        ``self.upgrade`` set) when one asks for a WebSocket, ``_HANDED_OFF`` when another
        task took over the connection, ``_CLOSE`` otherwise."""
        from .asgi.http import HTTPCycle

        proto = self.http
        assert proto is not None
        cycle = resumed
        if resumed is not None:
            await resumed.stop_watching()  # (its disconnect watcher may still be reading)
        while True:
            # After a response: most connections go on at once, with no coroutine for them
            # (0.4 µs a request).
            if cycle is not None and not (
                self._may_continue(cycle)
                and (proto.start_next_cycle() or await self._prepare_next_cycle(proto))
            ):
                return _CLOSE
            first = cycle is None
            try:
                request = await self._next_request(proto, first=first)
            except BadRequest as exc:
                await self._reject(proto, exc.status, exc.detail, exc.public)
                return _CLOSE
            if request is None:
                return _CLOSE
            if self.overloaded:
                await self._reject(
                    proto, 503, "over --limit-concurrency", "Server at capacity", request=request
                )
                return _CLOSE
            if request.method == b"CONNECT":
                await self._reject(
                    proto, 405, "CONNECT", "CONNECT is not supported", request=request
                )
                return _CLOSE
            if proto.websocket_upgrade:
                # Served by serve(), so that this frame and its locals (h11 state) are gone
                # while the WebSocket lives on.
                self.upgrade = request
                return _UPGRADE
            self.requests_served += 1
            self.last_request = self._is_last_request()
            scope = http_scope(
                request, self.info, self.server.lifespan_state, proto.request_headers
            )
            cycle = HTTPCycle(self, proto, request, scope)
            self.cycle = cycle
            try:
                await cycle.run(self.server.app)
            finally:
                if self.cycle is cycle:
                    self.cycle = None
                self.server.request_served()
            if cycle.handed_off:
                return _HANDED_OFF

    def _may_continue(self, cycle: HTTPCycle) -> bool:
        """Whether the connection may take another request after ``cycle``'s response (if
        the protocol can: ``start_next_cycle``, else ``_prepare_next_cycle``)."""
        if not cycle.keep_alive or self.last_request:
            return False
        return not self.server.shutting_down or self.server.replaced  # see SERVICE_RESTART

    def _is_last_request(self) -> bool:
        """This connection closes after the request just begun: its response says so."""
        # --limit-max-requests: the server stops once that many are done, so every request
        # begun from the limit on is the last one on its connection.
        server = self.server
        server.requests_begun += 1
        config = self.config
        per_connection = config.limit_max_requests_per_connection
        in_all = config.limit_max_requests
        return (per_connection is not None and self.requests_served >= per_connection) or (
            in_all is not None and server.requests_begun >= in_all
        )

    async def _next_request(self, proto: HTTP1Protocol, *, first: bool) -> h11.Request | None:
        """The next request head, ``None`` when the connection should just close.

        Two timers: while nothing of a request has arrived the connection is idle (keep-alive
        timeout; for a new connection the header timeout), and from the first byte the whole
        head must arrive within the header timeout (slowloris). Raises ``BadRequest``.
        """
        if proto.nothing_received:  # (h11's answer would be NEED_DATA, at more cost)
            event: h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] = NEED_DATA
            idle = True
        else:
            event = proto.next_event()
            idle = event is NEED_DATA and proto.buffered_size == 0
        if idle:
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

    async def _receive_idle(
        self, seconds: float, *, first: bool = False
    ) -> bytes | bytearray | None:
        """Wait for the first byte of a request, at most ``seconds``; if none comes the
        loop scope is cancelled (``tick``), which ends the connection. Shutdown cuts the
        wait short: idle connections are closed first, a new connection gets
        ``FIRST_REQUEST_GRACE``, and when the server is replaced keep-alive waits run out
        (``SERVICE_RESTART``).

        Between keep-alive requests the bound is kept by the server's Heartbeat, not by a
        deadline on the loop scope: setting and clearing a scope's deadline around every
        wait cost 2.6 µs per request (trio's deadline bookkeeping), where this is two
        attribute writes, and the Heartbeat entry is pushed about once per timeout per
        connection, however many requests it carries (see ``tick``). A new connection's
        wait still uses the deadline: a WebSocket makes no other, and a Heartbeat entry
        would stay behind for the header timeout (0.19 KiB per idle WebSocket).
        """
        if self.server.shutting_down:
            if first:
                seconds = min(seconds, FIRST_REQUEST_GRACE)
            elif not self.server.replaced:
                return None
        now = trio.current_time()
        due = now + seconds
        self._idle_due = due
        if first:
            self._first_request_due = now + FIRST_REQUEST_GRACE
            self.loop_scope.deadline = due
        elif due < self._idle_tick:
            self._idle_tick = due
            self.server.heartbeat.schedule(due, self)
        try:
            return await self.receive()
        finally:
            self._idle_due = math.inf
            if first:
                self._first_request_due = None
                self.loop_scope.deadline = math.inf

    def tick(self, now: float) -> None:
        """The Heartbeat's call at ``_idle_tick``: end a connection that has waited for its
        next request past its due time, or look again when the wait it is in now is due."""
        if now < self._idle_tick:
            return  # a stale entry: a sooner one was pushed since and has been served
        self._idle_tick = math.inf
        due = self._idle_due
        if due <= now:
            self.loop_scope.cancel()
        elif due != math.inf:
            self._idle_tick = due
            self.server.heartbeat.schedule(due, self)

    async def _prepare_next_cycle(self, proto: HTTP1Protocol) -> bool:
        """Reset for another request when ``start_next_cycle`` could not at once: after
        draining a small unread request body."""
        if proto.unread_body and proto.finish_body_in_buffer():
            return proto.start_next_cycle()  # e.g. a GET the app never called receive() for
        self.lingering = not proto.request_complete
        if not proto.unread_body or (proto.content_length or 0) > DRAIN_LIMIT:
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
        self,
        proto: HTTP1Protocol,
        status: int,
        detail: str,
        public: str | None = None,
        *,
        request: h11.Request | None = None,
    ) -> None:
        """Answer a request we will not run (bad input, overload) and close."""
        log.debug("rejecting request from %s with %d: %s", self.info.client, status, detail)
        self.lingering = True
        await self._answer_refused(proto, request, status, public)

    async def _answer_refused(
        self,
        proto: HTTP1Protocol,
        request: h11.Request | None,
        status: int,
        message: str | None,
        headers: list[tuple[bytes, bytes]] | tuple[()] = (),
    ) -> None:
        """Send the server's own error response to a request the app never saw (unless a
        response is under way already), and give it an access-log line like any other."""
        response = proto.error_response(status, message, headers)
        if response is None:
            return
        started = time.perf_counter()
        size = len(response) - response.index(b"\r\n\r\n") - 4  # (the body)
        try:
            await self.send(response)
        except ClientDisconnected:
            size = 0
        if self.server.access_log:
            scope = http_scope(request or _UNREAD_REQUEST, self.info, {})
            if request is None:  # a head that could not be read: "- - HTTP/1.1"
                scope["path"] = "-"
            duration = time.perf_counter() - started
            head = [*error_head(error_body(status, message)), *headers]  # (what was sent)
            log_http_line(
                self.config, scope, duration, status=status, size=size, response_headers=head
            )

    # -- WebSocket ---------------------------------------------------------------------------

    async def _open_websocket(self) -> WebSocketSession | None:
        """Finish reading the upgrade request and judge the handshake; ``None`` when it was
        answered with an error. A separate frame from the session's: its locals (h11 events,
        the request) are gone while the WebSocket lives on."""
        from .asgi.websocket import WebSocketSession
        from .protocols.websocket import HandshakeError, check_handshake

        proto = self.http
        request, self.upgrade = self.upgrade, None
        assert proto is not None and request is not None
        try:
            if not proto.request_complete and not await self._end_of_upgrade_request(proto):
                return None
            handshake = check_handshake(request.method, request.http_version, proto.request_headers)
        except BadRequest as exc:
            await self._reject(proto, exc.status, exc.detail, exc.public, request=request)
            return None
        except HandshakeError as exc:
            log.debug("bad WebSocket handshake from %s: %s", self.info.client, exc.detail)
            await self._answer_refused(proto, request, exc.status, exc.detail, exc.headers)
            return None
        return WebSocketSession(self, proto, request, handshake)

    async def _end_of_upgrade_request(self, proto: HTTP1Protocol) -> bool:
        """Read past the body an upgrade request announced (h11 parks in
        MIGHT_SWITCH_PROTOCOL only after it); False if the peer left. (A request without
        one never comes here: its head was all of it.) A body that never comes gets 408
        after ``timeout_request_body`` instead of holding the connection (slowloris)."""
        deadline = trio.current_time() + self.config.timeout_request_body
        while True:
            event = proto.next_event()
            if type(event) is h11.EndOfMessage:
                return True
            if event is NEED_DATA:
                if proto.client_waiting_for_100_continue:  # (RFC 9110 10.1.1)
                    try:
                        await self.send(proto.informational(100))
                    except ClientDisconnected:
                        return False
                with trio.move_on_at(deadline) as wait:
                    data = await self.receive()
                if wait.cancelled_caught:
                    raise BadRequest(408, "upgrade request body not received in time")
                if not data:
                    return False
                proto.receive_data(data)
            elif type(event) is not h11.Data:
                return False
