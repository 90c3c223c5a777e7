"""One WebSocket session: the ASGI connect/accept/receive/send/close/disconnect state machine.

Two tasks share a session, both in the connection's nursery: the application, and the
connection's own task, which becomes the frame reader once the app accepted. The reader
never waits on the app except when the app's inbox is full; then it stops *reading* (TCP
backpressure) rather than buffering. Every frame we send is produced while holding the write
lock, so frames hit the wire in the order they were made (compression contexts depend on
that). Keepalive pings come from the server's one ``Heartbeat`` timer, not a task per
session: an idle WebSocket is a socket, two parked tasks and these objects.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, cast

import h11
import trio
from wsproto.extensions import Extension

from .._types import ASGIApp, Message
from ..asyncio_apps import add_asyncio_hint
from ..errors import ASGIProtocolError, ClientDisconnected, only_client_disconnects
from ..logging import log_websocket_close, log_websocket_denied, log_websocket_open
from ..protocols.deflate import PerMessageDeflate
from ..protocols.http1 import HTTP1Protocol, InvalidResponse, error_body
from ..protocols.websocket import (
    ABNORMAL,
    GOING_AWAY,
    INTERNAL_ERROR,
    CloseReceived,
    ConnectionLost,
    Handshake,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    WebSocketProtocol,
    accept_headers,
    closable_by_app,
)
from .messages import header_list, message_type
from .scope import websocket_scope

if TYPE_CHECKING:
    from ..connection import Connection

log = logging.getLogger("trio_asgi.error")

# After we send a close frame the peer has this long to answer before we drop the TCP link.
CLOSE_HANDSHAKE_TIMEOUT: Final = 5.0
# After a protocol error, how long the app may take to handle the messages that came before
# it (and answer them) before we close.
FAILURE_DRAIN_TIMEOUT: Final = 1.0

_PAYLOAD_TYPES: Final = (str, bytes, bytearray)  # a tuple: `a | b` builds a union per call

# What a session's "decided" event becomes once set: one shared, already-set event instead
# of one per idle connection.
_DECIDED: Final = trio.Event()
_DECIDED.set()

# "Not yet" for a time; one shared float instead of a new ``-math.inf`` per session.
_NEVER: Final = -math.inf

# Headers of the 101 that the server writes from the negotiation, never the app.
_HANDSHAKE_HEADERS: Final = frozenset({b"sec-websocket-accept", b"sec-websocket-extensions"})

# Session states.
_CONNECTING: Final = 0  # handshake received, app has not decided
_RESPONDING: Final = 1  # app is sending a denial response (websocket.http.response.*)
_OPEN: Final = 2  # accepted
_CLOSED: Final = 3  # close frame sent or received, or handshake denied


class _Inbox:
    """Whole messages waiting for the app, then the end of the session.

    Bounded by the reader (it stops parsing when ``full``), so this never holds more than
    ``ws_max_queue`` messages (lists, not deques: a deque allocates a 64-slot block up
    front, and an idle connection should be small: the message list exists only while it
    holds messages, the waiter lists from first use).
    Waiting tasks are rescheduled directly: a ParkingLot's bookkeeping cost more per message
    than the rest of this class.

    The app waits in ``receive()`` from one task, nearly always: that task has a slot of its
    own (``_getter``), and only further tasks waiting at the same time queue in ``_getters``
    (170 bytes and two objects for the collector less per idle WebSocket than a list and an
    abort partial). The slot is taken only when no one else waits, so its task is always the
    longest waiter, woken first.
    """

    __slots__ = ("_drained", "_getter", "_getters", "_items", "_limit", "_space", "ended")

    def __init__(self, limit: int) -> None:
        self._items: list[str | bytes] | None = None
        self._drained: trio.Event | None = None  # someone waits for the app to catch up
        self._limit = limit
        self._getter: trio.lowlevel.Task | None = None
        self._getters: list[trio.lowlevel.Task] | None = None
        self._space: list[trio.lowlevel.Task] | None = None
        self.ended: tuple[int, str] | None = None

    @property
    def full(self) -> bool:
        return self._items is not None and len(self._items) >= self._limit

    def put(self, item: str | bytes) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        if self._getter is not None:
            trio.lowlevel.reschedule(self._getter)
            self._getter = None
        elif self._getters:
            trio.lowlevel.reschedule(self._getters.pop(0))

    def end(self, code: int, reason: str) -> None:
        if self.ended is None:
            self.ended = (code, reason)
        if self._getter is not None:
            trio.lowlevel.reschedule(self._getter)
            self._getter = None
        for waiters in (self._getters, self._space):
            while waiters:
                trio.lowlevel.reschedule(waiters.pop(0))

    def take(self) -> str | bytes | tuple[int, str] | None:
        """The next message; once all are taken, the ending ``(code, reason)``; ``None``
        while the session is open and nothing waits: then await ``arrival()``."""
        items = self._items
        if not items:
            return self.ended
        item = items.pop(0)
        if not items:
            self._items = None  # (an idle connection keeps no list)
        if self._space:
            trio.lowlevel.reschedule(self._space.pop(0))
        return item

    def arrival(self) -> Awaitable[object]:
        """Wait for the next ``put`` or ``end``: trio's wait itself, returned for the caller
        to await, so an app idle in ``receive()`` keeps no frame of ours (216 bytes per idle
        WebSocket)."""
        if self._drained is not None:
            self._drained.set()  # the app took everything and asks for more
        abort: Callable[[object], trio.lowlevel.Abort]
        if self._getter is None and not self._getters:
            self._getter = trio.lowlevel.current_task()
            abort = self  # see __call__
        else:
            if self._getters is None:
                self._getters = []
            abort = _join(self._getters)
        return trio.lowlevel.wait_task_rescheduled(abort)  # noqa: ASYNC105 (awaited by the caller)

    def __call__(self, _: object) -> trio.lowlevel.Abort:
        """trio's abort hook for the task in the getter slot (cancelled while waiting).

        The inbox itself rather than a bound method: that would be one more object for the
        collector to walk per idle WebSocket, which adds up with thousands of them.
        """
        self._getter = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def wait_drained(self) -> None:
        """Until the app has taken every message and waits in ``receive()`` again."""
        while self._items or (self._getter is None and not self._getters):
            self._drained = trio.Event()
            await self._drained.wait()
        self._drained = None

    async def wait_for_space(self) -> None:
        while self.full and self.ended is None:
            if self._space is None:
                self._space = []
            await trio.lowlevel.wait_task_rescheduled(_join(self._space))


def _join(waiters: list[trio.lowlevel.Task]) -> Callable[[object], trio.lowlevel.Abort]:
    """Queue the current task in ``waiters`` and return the abort function that takes it out
    again, for ``wait_task_rescheduled``. A partial, where a helper coroutine with a closure
    cost an idle connection 300 bytes more while it waits."""
    task = trio.lowlevel.current_task()
    waiters.append(task)
    return partial(_leave, waiters, task)


def _leave(
    waiters: list[trio.lowlevel.Task], task: trio.lowlevel.Task, _: object
) -> trio.lowlevel.Abort:
    waiters.remove(task)  # cancelled while waiting
    return trio.lowlevel.Abort.SUCCEEDED


class WebSocketSession:
    """State shared by the app's ``receive``/``send``, the frame reader and the heartbeat."""

    __slots__ = (
        "_accepted_once",
        "_app_closed",
        "_close_due",
        "_closing",
        "_conn",
        "_connect_delivered",
        "_decided",
        "_denial_head",
        "_denial_sent",
        "_denial_status",
        "_handshake",
        "_http",
        "_inbox",
        "_last_resume",
        "_next_ping",
        "_opened_at",
        "_ping_payload",
        "_ping_sent_at",
        "_pings",
        "_pong_due",
        "_read_paused",
        "_reading",
        "_state",
        "_ws",
        "heartbeat_key",
        "scope",
    )

    def __init__(
        self,
        conn: Connection,
        http: HTTP1Protocol,
        request: h11.Request,
        handshake: Handshake,
    ) -> None:
        self._conn = conn
        self._http: HTTP1Protocol | None = http
        self._handshake: Handshake | None = handshake
        self.scope: dict[str, Any] = websocket_scope(
            request,
            conn.info,
            conn.server.lifespan_state,
            handshake.subprotocols,
            http.request_headers,
        )
        self._state = _CONNECTING
        self._connect_delivered = False
        self._decided = trio.Event()  # accepted, denied, or the app gave up
        self._ws: WebSocketProtocol | None = None
        self._inbox = _Inbox(conn.config.ws_max_queue)
        self._app_closed = False  # the app sent websocket.close itself
        self._closing = False  # our close frame is queued or sent
        self._accepted_once = False
        self._reading = False  # the connection's task is the frame reader
        self._close_due: float | None = None  # our close frame is out: answer due by then
        # keepalive: the outstanding ping, its deadline, and whether backpressure paused
        # reading meanwhile (then the pong may sit unread behind data: not the peer's fault)
        self._pings = 0
        self.heartbeat_key = 0  # (set by the server's Heartbeat)
        self._next_ping = math.inf
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self._pong_due: float | None = None
        self._read_paused = False
        self._last_resume = _NEVER
        self._denial_status = 0  # the handshake was answered with this HTTP status
        self._denial_sent = 0  # body bytes of that answer, for the access log
        self._denial_head: list[tuple[bytes, bytes]] | None = None  # set by _start_denial
        # From the handshake (a denial's access-log line); reset when the app accepts.
        self._opened_at = time.monotonic() if conn.server.access_log else 0.0

    def _decide(self) -> None:
        """The handshake is accepted, denied or abandoned: wake whoever waits for that."""
        self._decided.set()
        self._decided = _DECIDED

    # -- running -------------------------------------------------------------------------

    async def start(self, app: ASGIApp) -> None:
        """Start the app in the connection's nursery and wait for its decision. The caller
        bounds the wait by ``ws_accept_timeout``, then asks ``opened``."""
        self._conn.helpers.start_soon(self._run_app, app)
        await self._decided.wait()

    async def opened(self) -> bool:
        """After ``start`` (returned, or cut short by its bound): True when the WebSocket
        is open and the connection's task should go on to ``read_frames``."""
        conn = self._conn
        config = conn.config
        if self._decided.is_set():
            pass
        elif self._state != _CONNECTING and self._denial_head is None:
            # Decided in time; its answer is still being written (each write is bounded by
            # the write timeout), or a denial response that began is being sent. (A denial
            # whose head is still held back gets the 503 instead.)
            await self._decided.wait()
        else:
            log.warning(
                "WebSocket app neither accepted nor rejected %s within %ss; closing",
                self.scope["path"],
                config.ws_accept_timeout,
            )
            await self._send_http_error(503)
        if self._ws is None:
            if self._denial_status and conn.server.access_log:
                log_websocket_denied(self, time.monotonic() - self._opened_at)
            return False
        if config.ws_ping_interval:
            self._next_ping = trio.current_time() + config.ws_ping_interval
            conn.server.heartbeat.schedule(self._next_ping, self)
        if self._state != _OPEN:  # the app closed before we even started reading
            self._await_close_answer()
        return True

    def _await_close_answer(self) -> None:
        """Our close frame is out: the peer has CLOSE_HANDSHAKE_TIMEOUT to answer it.

        The server's Heartbeat keeps this deadline, not a cancel scope around the reader:
        a scope there would be one more cancel status (two sets, ~600 bytes) for every idle
        WebSocket, to serve only the last seconds of a few of them.
        """
        if self._close_due is None:
            self._close_due = trio.current_time() + CLOSE_HANDSHAKE_TIMEOUT
            self._conn.server.heartbeat.schedule(self._close_due, self)

    async def _run_app(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except Exception as exc:
            if only_client_disconnects(exc):
                log.debug("WebSocket client disconnected (%s)", self.scope["path"])
            else:
                add_asyncio_hint(exc)
                log.exception("Exception in ASGI application (WebSocket %s)", self.scope["path"])
            await self._finish(INTERNAL_ERROR, failed=True)
        else:
            await self._finish(1000, failed=False)
        finally:
            self._decide()

    async def _finish(self, code: int, *, failed: bool) -> None:
        """The app is done: make sure the client is told, whatever state we are in."""
        state = self._state
        if state == _CONNECTING:
            if not failed:
                log.error("ASGI app returned without accepting or closing the WebSocket")
            await self._send_http_error(500)
        elif state == _RESPONDING:
            if self._denial_head is not None:  # nothing of the denial went out: a 500 can
                if not failed:
                    log.error("ASGI app returned before the body of its denial response")
                await self._send_http_error(500)
                return
            # Denial response cut short: the only honest ending is closing the connection.
            self._state = _CLOSED
            self._inbox.end(ABNORMAL, "")
        elif state == _OPEN:
            await self._close(code, "")

    # -- ASGI receive --------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self._connect_delivered:
            self._connect_delivered = True
            return {"type": "websocket.connect"}
        if self._state < _OPEN:
            # Nothing but the decision can come before accept; wait for the session to end.
            await self._decided.wait()
        inbox = self._inbox
        item = inbox.take()
        while item is None:
            await inbox.arrival()
            item = inbox.take()
        if type(item) is tuple:
            # The ending always passes a checkpoint, also right after waking: a task that
            # closed the session finishes writing its close frame before the app hears of it.
            await trio.lowlevel.checkpoint()
        if type(item) is str:
            return {"type": "websocket.receive", "text": item}
        if type(item) is bytes:
            return {"type": "websocket.receive", "bytes": item}
        code, reason = cast("tuple[int, str]", item)
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    # -- ASGI send -----------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message_type(message)
        if kind == "websocket.send":
            await self._send_message(message)
        elif kind == "websocket.accept":
            await self._accept(message)
        elif kind == "websocket.close":
            await self._app_close(message)
        elif kind == "websocket.http.response.start":
            self._start_denial(message)
        elif kind == "websocket.http.response.body":
            await self._send_denial_body(message)
        else:
            raise ASGIProtocolError(f"unexpected ASGI message {kind!r} on a WebSocket")

    async def _send_message(self, message: Message) -> None:
        if self._state != _OPEN or self._closing:
            self._not_open("websocket.send")
        data = message.get("bytes")
        text = message.get("text")
        if (data is None) == (text is None):
            raise ASGIProtocolError("websocket.send needs exactly one of 'bytes' and 'text'")
        payload = data if text is None else text
        if not isinstance(payload, _PAYLOAD_TYPES):
            raise ASGIProtocolError(f"websocket.send payload of type {type(payload).__name__}")
        ws = self._ws
        assert ws is not None
        conn = self._conn
        lock = conn.writing
        if not lock.try_acquire():
            await lock.acquire()
        try:
            if self._state != _OPEN:  # closed while we waited for the lock
                raise ClientDisconnected("WebSocket closed")
            try:
                await conn.write(ws.send(payload))
            except BaseException:
                # Failed, timed out, or cancelled part-way (e.g. the app's own timeout): the
                # stream is unusable (a cut frame, or a compressor ahead of the peer's).
                if conn.broken:
                    self._on_write_failure()
                raise
        finally:
            lock.release()

    def _not_open(self, what: str) -> None:
        if self._state == _CONNECTING:
            raise ASGIProtocolError(f"{what} before websocket.accept")
        if self._state == _RESPONDING:
            raise ASGIProtocolError(f"{what} during a denial response")
        if self._app_closed:
            raise ASGIProtocolError(f"{what} after websocket.close")
        raise ClientDisconnected("WebSocket closed")

    async def _accept(self, message: Message) -> None:
        if self._state != _CONNECTING:
            if self._state == _CLOSED and not self._accepted_once:
                raise ClientDisconnected("the handshake timed out or the client left")
            raise ASGIProtocolError("websocket.accept sent twice or after close")
        handshake = self._handshake
        http = self._http
        assert handshake is not None and http is not None
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in handshake.subprotocols:
            raise ASGIProtocolError(
                f"subprotocol {subprotocol!r} was not offered by the client "
                f"(offered: {handshake.subprotocols})"
            )
        try:
            extra = [
                (bytes(name).lower(), bytes(value))
                for name, value in header_list(message.get("headers", ()))
            ]
        except TypeError:
            raise ASGIProtocolError(
                "websocket.accept header names and values must be bytes"
            ) from None
        for name, _ in extra:
            if name == b"sec-websocket-protocol":
                raise ASGIProtocolError("use 'subprotocol', not a sec-websocket-protocol header")
            if name in _HANDSHAKE_HEADERS:
                # A second copy could claim an extension that is not in force, or break the
                # client's check of the accept key.
                raise ASGIProtocolError(f"the server writes {name.decode()} itself")
        config = self._conn.config
        supported: list[Extension] = (
            [PerMessageDeflate(config.ws_max_size)] if config.ws_per_message_deflate else []
        )
        headers, extensions = accept_headers(
            handshake,
            subprotocol=subprotocol,
            extra_headers=extra,
            supported_extensions=supported,
        )
        try:
            head = http.accept_switch(headers)
        except InvalidResponse as exc:
            raise ASGIProtocolError(f"invalid websocket.accept headers: {exc}") from None
        self._ws = WebSocketProtocol(
            max_message_size=config.ws_max_size,
            extensions=extensions,
            trailing_data=http.trailing_data,
        )
        # The HTTP state machine and the offer are done with; idle sessions should be small.
        self._conn.http = None
        self._http = None
        self._handshake = None
        self._state = _OPEN
        self._accepted_once = True
        self._conn.write_timeout = config.ws_send_timeout
        self._opened_at = time.monotonic()
        try:
            await self._conn.send(head)
        except ClientDisconnected:
            self._state = _CLOSED
            self._inbox.end(ABNORMAL, "")
            raise
        finally:
            self._decide()
        if self._conn.server.access_log:
            log_websocket_open(self)
        if self._conn.server.shutting_down:
            self.on_shutdown(self._conn.server.close_code)

    async def _app_close(self, message: Message) -> None:
        if self._state == _CONNECTING:
            # ASGI: closing before accept denies the handshake with 403. Code and reason
            # go nowhere, so they are not judged (FastAPI passes a list as the reason).
            await self._send_http_error(403)
            return
        code = message.get("code", 1000)
        if code is None:
            code = 1000
        reason = message.get("reason") or ""
        if type(code) is not int or not closable_by_app(code):
            raise ASGIProtocolError(f"websocket.close code {code!r} may not be sent (RFC 6455 7.4)")
        if not isinstance(reason, str):
            raise ASGIProtocolError("websocket.close reason must be a str")
        try:
            reason.encode()
        except UnicodeEncodeError:
            raise ASGIProtocolError(f"websocket.close reason {reason!r} is not UTF-8") from None
        if self._state != _OPEN or self._closing:
            self._not_open("websocket.close")
        self._app_closed = True
        await self._close(code, reason)

    def _start_denial(self, message: Message) -> None:
        if self._state != _CONNECTING:
            raise ASGIProtocolError("websocket.http.response.start after the handshake was decided")
        status = message.get("status")
        if type(status) is not int:
            raise ASGIProtocolError(
                f"websocket.http.response.start needs an int status: {status!r}"
            )
        self._denial_head = header_list(message.get("headers", ()))
        self._denial_status = status
        self._state = _RESPONDING

    async def _send_denial_body(self, message: Message) -> None:
        if self._state != _RESPONDING:
            raise ASGIProtocolError("websocket.http.response.body without a response start")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        http = self._http
        assert http is not None
        try:
            data = b""
            if self._denial_head is not None:
                self._denial_head.append((b"connection", b"close"))
                data = http.response_head(
                    self._denial_status, self._denial_head, body=len(body), final=not more_body
                )
                self._denial_head = None  # (h11 took it: from here on, no 500 can follow)
            if body:
                data += http.body(body)
            if not more_body:
                data += http.end()
        except InvalidResponse as exc:
            raise ASGIProtocolError(f"invalid denial response: {exc}") from None
        if not more_body:
            self._state = _CLOSED
            self._inbox.end(ABNORMAL, "")
        try:
            await self._conn.send(data)
            self._denial_sent += len(body)
        finally:
            if not more_body:
                self._decide()

    async def _send_http_error(self, status: int) -> None:
        self._state = _CLOSED
        self._inbox.end(ABNORMAL, "")
        assert self._http is not None
        response = self._http.error_response(status)
        try:
            if response is not None and not self._conn.broken:
                await self._conn.send(response)
                self._denial_status = status
                self._denial_sent = len(error_body(status))
        except ClientDisconnected:
            pass
        finally:
            self._decide()

    # -- closing -------------------------------------------------------------------------

    async def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake: send our close frame, tell the app, bound the wait.

        The frame queues behind messages whose ``send()`` began earlier (the write lock is
        FIFO), so it never overtakes data; messages sent after it are refused.
        """
        if self._state != _OPEN or self._closing:
            return
        self._closing = True
        self._inbox.end(code, reason)
        ws = self._ws
        assert ws is not None
        conn = self._conn
        try:
            async with conn.writing:
                if self._state == _OPEN:
                    self._state = _CLOSED
                    await conn.write(ws.close(code, reason))
        except ClientDisconnected:
            self._on_write_failure()
            return
        except BaseException:
            # Cancelled before our close frame was out: no closing handshake can follow.
            self._on_write_failure()
            raise
        finally:
            self._state = _CLOSED
        # The reader now only waits for the peer's answering close frame, not forever.
        if self._reading:
            self._await_close_answer()

    # -- keepalive (called by the server's Heartbeat) ------------------------------------

    def tick(self, now: float) -> None:
        """Ping when due; no matching pong within ``ws_ping_timeout`` closes with 1011; no
        answer to our close frame in time drops the connection."""
        if self._close_due is not None:
            # (ticks scheduled earlier for keepalive find this too and do nothing)
            if now >= self._close_due and self._reading:
                log.debug("WebSocket %s: no answer to our close frame", self.scope["path"])
                self._conn.abandon()
            return
        if self._state != _OPEN or self._closing:
            return  # over: do not schedule again
        config = self._conn.config
        heartbeat = self._conn.server.heartbeat
        due = self._pong_due
        if due is not None:
            if now < due:
                heartbeat.schedule(due, self)
            elif (
                self._read_paused
                or self._last_resume > self._ping_sent_at
                or self._ping_sent_at == math.inf
            ):
                # Backpressure held the pong behind unread data, or our ping is still queued
                # behind our own writes: not the peer's fault.
                self._pong_due = now + (config.ws_ping_timeout or 0)
                heartbeat.schedule(self._pong_due, self)
            else:
                log.info("WebSocket %s: keepalive ping timed out", self.scope["path"])
                self._conn.helpers.start_soon(self._close, INTERNAL_ERROR, "keepalive ping timeout")
            return
        if now < self._next_ping:
            heartbeat.schedule(self._next_ping, self)
            return
        self._pings += 1
        payload = self._pings.to_bytes(4, "big")  # tells a late pong from the awaited one
        self._ping_payload = payload
        self._ping_sent_at = math.inf  # until _send_ping wrote it
        self._conn.helpers.start_soon(self._send_ping, payload)
        self._next_ping = now + (config.ws_ping_interval or 0)
        if config.ws_ping_timeout:  # (0 or None: do not wait for the pong)
            # Provisional: _send_ping restarts it once the ping is out, and until then
            # waiting for our own writes is not the peer's fault (see above).
            self._pong_due = now + config.ws_ping_timeout
            heartbeat.schedule(min(self._pong_due, self._next_ping), self)
        else:
            heartbeat.schedule(self._next_ping, self)

    async def _send_ping(self, payload: bytes) -> None:
        ws = self._ws
        assert ws is not None
        conn = self._conn
        try:
            async with conn.writing:
                if self._state == _OPEN and not self._closing:
                    await conn.write(ws.ping(payload))
                    # The pong is due from now, not from when the ping queued for the lock.
                    self._ping_sent_at = now = trio.current_time()
                    timeout = conn.config.ws_ping_timeout
                    if timeout and self._pong_due is not None:
                        self._pong_due = now + timeout  # (the pending tick finds it)
        except ClientDisconnected:
            self._on_write_failure()

    def _on_write_failure(self) -> None:
        """A write failed or timed out: the stream is unusable, stop reading too."""
        self._state = _CLOSED
        self._inbox.end(ABNORMAL, "")
        if self._reading:
            self._conn.abandon()

    def on_shutdown(self, code: int = GOING_AWAY) -> None:
        """Server shutdown: close with 1001 (1012 for a restart) from a task of our own."""
        if self._state == _OPEN:
            self._conn.helpers.start_soon(self._close, code, "")

    # -- the reader (runs in the connection's task) --------------------------------------

    async def read_frames(self) -> None:
        """Parse frames until the connection ends; the app's inbox bounds what is read.
        Runs in the connection's task, once ``opened`` said yes."""
        ws = self._ws
        assert ws is not None
        conn = self._conn
        inbox = self._inbox
        self._reading = True
        try:
            while True:
                while not inbox.full or self._state == _CLOSED:
                    event = ws.next_event()
                    if event is None:
                        break
                    event_type = type(event)
                    if event_type is str or event_type is bytes:
                        if self._state == _OPEN:
                            inbox.put(event)  # type: ignore[arg-type]
                        # after our close frame, data is read and dropped (RFC 6455 1.4)
                    elif event_type is PingReceived:
                        await self._answer_ping(event)  # type: ignore[arg-type]
                    elif event_type is PongReceived:
                        # Unsolicited or late pongs are allowed and ignored (RFC 6455 5.5.3).
                        if event.payload == self._ping_payload:  # type: ignore[union-attr]
                            self._ping_payload = None
                            self._pong_due = None
                    elif event_type is CloseReceived:
                        await self._on_close_frame(event)  # type: ignore[arg-type]
                        return
                    elif event_type is ProtocolFailure:
                        await self._on_failure(event)  # type: ignore[arg-type]
                        return
                    else:
                        assert event_type is ConnectionLost
                        return
                if inbox.full and self._state == _OPEN:
                    self._read_paused = True
                    try:
                        await inbox.wait_for_space()
                    finally:
                        self._read_paused = False
                        self._last_resume = trio.current_time()
                    continue
                # Connection.receive inline: an idle WebSocket waits in trio's own wait for
                # the socket, with no frame of receive() kept (230 bytes per connection).
                data = conn.receive_nowait()
                while data is None:
                    try:
                        await conn.readable()
                    except (trio.ClosedResourceError, OSError):  # abandon() closed it
                        conn.broken = True
                    data = conn.receive_nowait()
                ws.receive_data(data)
        finally:
            # Also when the close-handshake deadline cancelled the read: the peer never
            # answered our close frame.
            self._reading = False
            self._on_lost()
            if conn.server.access_log:
                ended = inbox.ended or (ABNORMAL, "")
                log_websocket_close(self, ended[0], time.monotonic() - self._opened_at)

    async def _answer_ping(self, event: PingReceived) -> None:
        ws = self._ws
        assert ws is not None
        if not ws.can_send:
            return
        conn = self._conn
        try:
            async with conn.writing:
                if ws.can_send:
                    await conn.write(ws.pong(event.payload))
        except ClientDisconnected:
            pass

    async def _on_close_frame(self, event: CloseReceived) -> None:
        if self._state == _OPEN:
            # The peer started the closing handshake: echo its code, as RFC 6455 5.5.1 asks.
            await self._close_now(event.code, event.reason)
        # Otherwise the peer answered our close frame: the closing handshake is complete.

    async def _on_failure(self, event: ProtocolFailure) -> None:
        log.debug("WebSocket protocol error from %s: %s", self._conn.info.client, event.reason)
        if self._state == _OPEN:
            # Messages that arrived before the bad frame were valid: give the app a moment
            # to take them and send its answers before the close frame goes out (what the
            # Autobahn suite expects of a strict server). Nothing more is parsed meanwhile.
            with trio.move_on_after(FAILURE_DRAIN_TIMEOUT):
                await self._inbox.wait_drained()
        await self._close_now(event.code, event.reason[:60])

    async def _close_now(self, code: int, reason: str) -> None:
        """Answer or fail from the reader: closed at once, the app told ``code``."""
        self._state = _CLOSED
        self._inbox.end(code, reason)
        ws = self._ws
        assert ws is not None
        conn = self._conn
        try:
            async with conn.writing:
                await conn.write(ws.close(code, reason))
        except ClientDisconnected:
            pass

    def _on_lost(self) -> None:
        self._state = _CLOSED
        self._conn.broken = True
        self._inbox.end(ABNORMAL, "")
