"""One HTTP request/response cycle: the ``receive()`` and ``send()`` an ASGI app is called with.

Reading is pull-based: the socket is read only inside ``receive()``, when the app asks for
body or waits for a disconnect, so an app that ignores a large body costs no memory and a
slow app is backpressure, not buffering. Writing happens inside ``send()``, which returns
once the transport took the bytes (ASGI "flush before returning").
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import h11
import trio

from .._types import ASGIApp, Message
from ..asyncio_apps import add_asyncio_hint
from ..errors import ASGIProtocolError, ClientDisconnected, only_client_disconnects
from ..locks import FIFOLock
from ..logging import log_http_access
from ..protocols.http1 import (
    HOP_BY_HOP_HEADERS,
    NEED_DATA,
    BadRequest,
    HTTP1Protocol,
    InvalidResponse,
    error_body,
    error_head,
)
from .context import in_context
from .files import send_file_range, send_path
from .messages import header_list, message_type

if TYPE_CHECKING:
    from ..connection import Connection

log = logging.getLogger("trio_asgi.error")

# A request body is handed to the app in pieces of at most this size, merging the small
# pieces that a single read produced (chunked encoding makes many).
BODY_CHUNK: Final = 64 * 1024
# While the app waits for a disconnect, a pipelining client may send its next requests; we
# keep reading (that is how EOF is noticed) until this much is buffered, then stop.
PIPELINE_BUFFER_LIMIT: Final = 64 * 1024

# Seconds into a graceful stop after which an app waiting in receive() beside a response it
# is still streaming (SSE) hears http.disconnect; responses in flight finish before that.
RELEASE_AFTER: Final = 1.0

_NO_RELEASE: Final = trio.CancelScope()  # (the cycle has ended: a stop releases nothing)

# Response states.
_NOT_STARTED: Final = 0  # nothing from the app yet
_STARTED: Final = 1  # http.response.start held back, nothing written
_STREAMING: Final = 2  # head written, body under way
_TRAILERS: Final = 3  # body ended, trailers still to come from the app
_COMPLETE: Final = 4  # the whole response was produced

_DISCONNECT: Final = "http.disconnect"
_BYTES: Final = (bytes, bytearray, memoryview)  # a tuple: `a | b` would build a union per call
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# Fields that must be known before the content (framing, routing, connection, content
# format, authentication), so never in trailers (RFC 9110 6.5.1).
_NOT_IN_TRAILERS: Final = HOP_BY_HOP_HEADERS | {
    b"authorization",
    b"content-encoding",
    b"content-length",
    b"content-range",
    b"content-type",
    b"host",
    b"www-authenticate",
}


class HTTPCycle:
    """State of one request while the app runs; also what the access log reports."""

    __slots__ = (
        "_app_running",
        "_bad_request",
        "_body_done",
        "_conn",
        "_disconnected",
        "_ended",
        "_ended_event",
        "_head",
        "_no_body",
        "_noted",
        "_proto",
        "_reading",
        "_release_scope",
        "_released",
        "_response",
        "_started_at",
        "_status",
        "_trailers",
        "_wants_trailers",
        "_watch_scope",
        "_watcher",
        "bytes_sent",
        "bytes_written",
        "handed_off",
        "keep_alive",
        "request",
        "scope",
        "task",
    )

    def __init__(
        self, conn: Connection, proto: HTTP1Protocol, request: h11.Request, scope: dict[str, Any]
    ) -> None:
        self._conn = conn
        self._proto = proto
        self.request = request
        self.scope = scope
        self._response = _NOT_STARTED
        self._status = 0
        self._head: list[tuple[bytes, bytes]] = []
        self._no_body = request.method == b"HEAD"
        self._body_done = False  # the final http.request (more_body=False) was delivered
        self._disconnected = False
        self._bad_request: BadRequest | None = None
        self._reading: FIFOLock | None = None  # taken while a task reads the body
        # released apps parked in receive() after the body: disconnect, completion, shutdown
        self._ended = False
        # What a parked receive() waits on, made only then: most apps never park (a trio
        # Event made and set per request is 0.4 µs).
        self._ended_event: trio.Event | None = None
        self._released = False  # shutdown told the app http.disconnect
        self._release_scope: trio.CancelScope | None = None  # see on_shutdown
        self._watcher: trio.Event | None = None
        self._watch_scope: trio.CancelScope | None = None
        self._started_at = time.perf_counter() if conn.server.access_log else 0.0
        self._wants_trailers = False
        self._trailers: list[tuple[bytes, bytes]] = []
        self.bytes_sent = 0  # body bytes, for the access log
        self.bytes_written = False  # anything of the response reached the transport
        self.keep_alive = True
        self._app_running = False
        self._noted = False  # for a handoff, see _waits
        # The task running the app: the app runs in a copy of its context, and so does the
        # task a handoff starts.
        self.task: trio.lowlevel.Task | None = None
        self.handed_off = False  # the connection went on in another task (``handoff.py``)

    # -- receive -------------------------------------------------------------------------

    async def receive(self) -> Message:
        # Shutdown releases an app parked after its request body once its response streams
        # (SSE); one still reading the body gets the rest (an upload in flight finishes, e.g.
        # on a worker being replaced).
        released = self._released and self._body_done and self._response >= _STREAMING
        if self._disconnected or released or self._response == _COMPLETE:
            # Yield, but answer even inside an already-cancelled scope: Starlette's
            # is_disconnected() polls receive() that way.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return {"type": _DISCONNECT}
        if self._body_done:
            # Only a read tells that a peer left: a helper task reads from now on (a
            # pipelined next request stays buffered in h11 for after this cycle).
            if self._watcher is None:
                self._watcher = trio.Event()  # set when the watcher has stopped
                self._conn.helpers.start_soon(self._watch_for_disconnect, self._watcher)
            if not self._ended:
                if self._ended_event is None:
                    self._ended_event = trio.Event()
                await self._ended_event.wait()
            else:
                await trio.lowlevel.checkpoint()
            return {"type": _DISCONNECT}
        proto = self._proto
        if proto.client_waiting_for_100_continue and self._response <= _STARTED:
            # RFC 9110 10.1.1: tell the client to go ahead only once the app wants the body
            # (also after http.response.start: the head is held back, nothing went out).
            await self._conn.send(proto.informational(100))
        return await self._read_body()

    async def _read_body(self) -> Message:
        """The next piece of the body. Tasks of the app that ask at once take turns (only
        one task may wait on a socket); one that had to wait asks ``receive()`` again, as
        the body may have ended, the response completed or the client left meanwhile."""
        lock = self._reading
        if lock is None:
            lock = self._reading = FIFOLock()
        if not lock.try_acquire():
            await lock.acquire()
            lock.release()
            return await self.receive()
        try:
            return await self._read_body_piece()
        finally:
            lock.release()
            if self._noted:  # the app ran on after its response while this task read the
                self._noted = False  # body, which kept it from a handoff: look again now
                self._waits()

    async def _read_body_piece(self) -> Message:
        proto = self._proto
        pieces: list[bytes] = []
        size = 0
        while True:
            try:
                event = proto.next_event()
            except BadRequest as exc:
                # A broken body (bad chunk framing, early EOF): nothing more will come.
                self._bad_request = exc
                return self._lost()
            if event is NEED_DATA:
                if pieces:
                    break
                with trio.move_on_after(self._conn.config.timeout_request_body):
                    proto.receive_data(await self._conn.receive())
                    continue
                # The client stalled mid-body: 408 if the app has not answered yet.
                self._bad_request = BadRequest(408, "request body not received in time")
                return self._lost()
            event_type = type(event)
            if event_type is h11.Data:
                pieces.append(event.data)  # type: ignore[union-attr]
                size += len(event.data)  # type: ignore[union-attr]
                if size >= BODY_CHUNK:
                    break
            elif event_type is h11.EndOfMessage:
                self._body_done = True
                body = b"".join(pieces) if len(pieces) != 1 else bytes(pieces[0])
                return {"type": "http.request", "body": body, "more_body": False}
            else:  # pragma: no cover - h11 yields only Data/EndOfMessage mid-body
                return self._lost()
        body = b"".join(pieces) if len(pieces) != 1 else bytes(pieces[0])
        return {"type": "http.request", "body": body, "more_body": True}

    def _lost(self) -> Message:
        self._disconnected = True
        self.keep_alive = False
        self._end()
        return {"type": _DISCONNECT}

    async def _watch_for_disconnect(self, stopped: trio.Event) -> None:
        conn = self._conn
        proto = self._proto
        try:
            with trio.CancelScope() as scope:
                self._watch_scope = scope
                while True:
                    if proto.buffered_size >= PIPELINE_BUFFER_LIMIT:
                        await trio.sleep_forever()  # enough pipelined requests read ahead
                    data = await conn.receive()
                    proto.receive_data(data)
                    if not data:
                        self._lost()
                        return
        finally:
            stopped.set()

    async def stop_watching(self) -> None:
        """End the disconnect watcher before anyone else reads the stream (and a pending
        shutdown release, which would otherwise hold the connection's nursery open)."""
        if self._release_scope is not None:
            self._release_scope.cancel()
        self._release_scope = _NO_RELEASE  # a stop that begins from now on starts none
        if self._watcher is not None:  # (none started: nothing to wait for)
            if self._watch_scope is not None:
                self._watch_scope.cancel()
            await self._watcher.wait()

    def on_shutdown(self) -> None:
        """Server shutdown: an app parked in ``receive()`` whose response is streaming
        ``RELEASE_AFTER`` seconds later (or from then on) hears ``http.disconnect`` then (SSE
        would otherwise hold the stop until its deadline). With a shorter
        ``--timeout-graceful-shutdown``, at half of it.

        Not at once: Django, Quart and others wait in ``receive()`` beside every view and
        cancel the view (or the response being sent) on ``http.disconnect``, so an immediate
        release would fail the requests in flight instead of letting them finish.
        """
        if not self._conn.server.replaced:
            # (Replaced: a head not sent yet says "close"; one that promised keep-alive is
            # kept to its word, see connection.SERVICE_RESTART.)
            self.keep_alive = False
        if self._release_scope is None and self._response != _COMPLETE:
            self._release_scope = trio.CancelScope()
            self._conn.helpers.start_soon(self._release_later, self._release_scope)

    async def _release_later(self, scope: trio.CancelScope) -> None:
        with scope:  # cancelled when the cycle ends first
            await trio.sleep(min(RELEASE_AFTER, self._conn.config.timeout_graceful_shutdown / 2))
            self._released = True
            if self._response >= _STREAMING:
                self._end()
            # (otherwise ``head`` does, when the response starts streaming)

    # -- send ----------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message_type(message)
        if kind == "http.response.body":
            await self._send_body(message)
        elif kind == "http.response.start":
            self._start(message)
        elif kind == "http.response.trailers":
            await self._send_trailers(message)
        elif kind == "http.response.pathsend":
            await send_path(self, message)
        elif kind == "http.response.zerocopysend":
            await send_file_range(self, message)
        elif kind == "http.response.early_hint" and self._conn.config.http_early_hints:
            await self._send_early_hint(message)
        else:
            raise ASGIProtocolError(f"unexpected ASGI message {kind!r} in an HTTP cycle")

    def _start(self, message: Message) -> None:
        if self._response != _NOT_STARTED:
            raise ASGIProtocolError("http.response.start sent twice")
        status = message.get("status")
        if type(status) is not int:
            raise ASGIProtocolError(f"http.response.start needs an int 'status', got {status!r}")
        self._head = header_list(message.get("headers", ()))
        self._status = status
        if status in _NO_BODY_STATUSES:
            self._no_body = True
        self._wants_trailers = bool(message.get("trailers", False))
        self._response = _STARTED

    def check_body_allowed(self, what: str) -> None:
        """Raise unless a body message may be sent now (also used by ``files.py``)."""
        state = self._response
        if state == _NOT_STARTED:
            raise ASGIProtocolError(f"{what} sent before http.response.start")
        if state in (_COMPLETE, _TRAILERS):
            raise ASGIProtocolError(f"{what} sent after the response body ended")
        if self._disconnected or self._conn.broken:
            raise ClientDisconnected("client disconnected")

    def head(self, body: int = 0, *, final: bool = False) -> bytes:
        """The response head, if not written yet (``b""`` otherwise). The head is held back
        until the first body message, so a failing app can still get a clean 500; ``body``
        and ``final`` describe that message (see ``HTTP1Protocol.response_head``)."""
        if self._response != _STARTED:
            return b""
        conn = self._conn
        # A client still holding its body back for a 100 will not send it now: the
        # connection cannot carry another request, which RFC 9110 10.1.1 says to announce.
        if (
            conn.server.shutting_down
            or conn.last_request
            or self._proto.client_waiting_for_100_continue
        ):
            self._head.append((b"connection", b"close"))  # h11 then closes after it
        data = self._proto.response_head(
            self._status, self._head, body=None if self._no_body else body, final=final
        )
        self._response = _STREAMING
        if self._released and not final:
            # A stop released the app already: a long poll turned into SSE. (Not for a
            # whole response: a listener beside the view would cancel it mid-write.)
            self._end()
        return data

    def body_end(self) -> bytes:
        """Bytes ending the body, unless trailers are still to come from the app."""
        if self._wants_trailers:
            self._response = _TRAILERS
            return b""
        self._response = _COMPLETE
        return self._proto.end()

    async def _send_body(self, message: Message) -> None:
        self.check_body_allowed("http.response.body")
        body = message.get("body", b"")
        if not isinstance(body, _BYTES):
            raise ASGIProtocolError(f"response body must be bytes, got {type(body).__name__}")
        proto = self._proto
        final = not message.get("more_body", False)
        try:
            data = self.head(len(body), final=final)
            if body and not self._no_body:
                data += proto.body(body)
                self.bytes_sent += len(body)
            if final:
                data += self.body_end()
        except InvalidResponse as exc:
            raise self.invalid(exc) from None
        if data:
            await self.write(data)
        elif self._response == _COMPLETE:  # (nothing left to write: a HEAD, or a length)
            self._completed()

    async def _send_trailers(self, message: Message) -> None:
        if self._response != _TRAILERS:
            raise ASGIProtocolError(
                "http.response.trailers needs 'trailers': True in http.response.start and "
                "must follow the last http.response.body"
            )
        for name, value in header_list(message.get("headers", ())):
            if bytes(name).lower() in _NOT_IN_TRAILERS:
                # Useless after the body and dangerous to a peer that believes them.
                log.warning("Dropped trailer field %r (RFC 9110 6.5.1)", bytes(name))
            else:
                self._trailers.append((name, value))
        if message.get("more_trailers", False):
            return
        trailers = self._trailers if self._may_send_trailers() else []
        self._response = _COMPLETE
        try:
            data = self._proto.end(trailers)
        except InvalidResponse as exc:
            raise self.invalid(exc) from None
        await self.write(data)

    def _may_send_trailers(self) -> bool:
        """Trailers only go to clients that asked (``TE: trailers``) over chunked framing."""
        if self.request.http_version != b"1.1" or self._no_body:
            return False
        te = b",".join(value for name, value in self.request.headers if name == b"te")
        if b"trailers" not in (token.strip().lower() for token in te.split(b",")):
            return False
        return not any(name.lower() == b"content-length" for name, _ in self._head)

    async def _send_early_hint(self, message: Message) -> None:
        """103 Early Hints (RFC 8297) with the app's Link values, while the head is unsent."""
        links = message.get("links", ())
        if self._response >= _STREAMING:
            return  # too late: the final response head is already out
        if self.request.http_version != b"1.1":
            return  # RFC 9110 15.2: no 1xx responses to HTTP/1.0 clients
        # (Checked first: bytes(n) of an int n would allocate n zero bytes.)
        try:
            links = None if isinstance(links, (*_BYTES, str)) else list(links)
        except TypeError:
            links = None
        if links is None or not all(isinstance(link, _BYTES) for link in links):
            raise ASGIProtocolError("early hint 'links' must be a list of bytes")
        if not links:
            return  # nothing to hint
        try:
            data = self._proto.informational(103, [(b"link", bytes(link)) for link in links])
        except InvalidResponse as exc:
            raise ASGIProtocolError(f"invalid early hint links: {exc}") from None
        await self.write(data)

    def invalid(self, exc: InvalidResponse) -> ASGIProtocolError:
        """The app asked for an invalid response: if nothing was written, a 500 can still
        replace it; otherwise the connection will be closed."""
        if self._response == _STREAMING and not self.bytes_written:
            self._response = _STARTED
        return ASGIProtocolError(f"invalid response: {exc}")

    async def write(self, data: bytes) -> None:
        """Write response bytes under the connection's write lock."""
        try:
            await self._conn.send(data)
        except ClientDisconnected:
            self.client_lost()
            raise
        self.wrote()

    def client_lost(self) -> None:
        """A response write failed: the client is gone (also used by ``files.py``)."""
        self._disconnected = True
        self.keep_alive = False

    def wrote(self) -> None:
        """Response bytes reached the transport; once the response is complete, an app
        waiting in ``receive()`` hears ``http.disconnect`` (also used by ``files.py``)."""
        self.bytes_written = True
        if self._response == _COMPLETE:
            self._completed()

    def _completed(self) -> None:
        """The whole response went out."""
        self._end()
        self._log_access()
        if trio.lowlevel.current_task() is not self.task:
            self._waits()  # another task of the app sent it: the app's own waits already

    def _waits(self) -> None:
        """The app waits for something: if its response went out already, it runs on after
        it (background work), and its connection is noted for a handoff (``handoff.py``).
        An app that returns right after its response never gets here."""
        if not self._noted and self._sent:
            self._noted = True
            if self.keep_alive:
                self._conn.server.handoffs.note(self._conn)

    @property
    def runs_on(self) -> bool:
        """The app still runs although its whole response went out, on a connection that
        can take another request (see ``handoff.py``)."""
        return (
            self._app_running
            and self.keep_alive
            and self._sent
            and not (self._reading is not None and self._reading.locked)  # (body reader)
        )

    @property
    def _sent(self) -> bool:
        """The whole response went out (``_ended`` is set once its last bytes were)."""
        return self._response == _COMPLETE and self._ended

    def _end(self) -> None:
        """Release apps parked in receive() (see ``_ended``), and any that park from now."""
        self._ended = True
        if self._ended_event is not None:
            self._ended_event.set()

    @property
    def no_body(self) -> bool:
        return self._no_body

    @property
    def proto(self) -> HTTP1Protocol:
        return self._proto

    @property
    def conn(self) -> Connection:
        return self._conn

    # -- running the app -----------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app and make sure the client gets a complete answer or a closed socket."""
        self._app_running = True
        self.task = trio.lowlevel.current_task()
        try:
            try:
                call = app(self.scope, self.receive, self.send)
                await in_context(self.task.context.copy(), call, self._waits)
            finally:
                self._app_running = False  # (before any await: no handoff from here on)
        except Exception as exc:
            if only_client_disconnects(exc) or self._disconnected:
                # Frameworks re-raise our ClientDisconnected as their own exception
                # (Starlette's ClientDisconnect); once the client is gone, that is all it is.
                log.debug("client disconnected during %s", self._target(), exc_info=exc)
            else:
                add_asyncio_hint(exc)
                log.exception("Exception in ASGI application (%s)", self._target(), exc_info=exc)
            await self._finish_after_error()
        else:
            if self._response != _COMPLETE:
                await self._finish_incomplete()
        finally:
            await self.stop_watching()
        self._log_access()

    def _log_access(self) -> None:
        """The access-log line, once: when the response is complete (work the app does after
        it is not what the client waited for), or when the app returns without one."""
        started = self._started_at
        if started and self._conn.server.access_log:  # (0: the log is off, or written)
            self._started_at = 0.0
            log_http_access(self, time.perf_counter() - started)

    async def _finish_after_error(self) -> None:
        if self._response == _COMPLETE:
            return  # the client has its whole answer: the connection can go on
        self.keep_alive = False
        if self._response in (_NOT_STARTED, _STARTED):
            if self._bad_request is not None:  # the app gave up on a broken request body
                await self._send_error(self._bad_request.status, self._bad_request.public)
            elif not self._disconnected:
                await self._send_error(500)

    async def _finish_incomplete(self) -> None:
        if self._response in (_NOT_STARTED, _STARTED):
            if self._bad_request is not None:
                await self._send_error(self._bad_request.status, self._bad_request.public)
            elif not self._disconnected:
                log.error("ASGI app returned without completing a response (%s)", self._target())
                await self._send_error(500)
            self.keep_alive = False
        else:
            if not self._disconnected:
                # (After a shutdown release the app was told the client left: no error.)
                log.log(
                    logging.DEBUG if self._released else logging.ERROR,
                    "ASGI app returned in the middle of a response (%s)",
                    self._target(),
                )
            self.keep_alive = False

    async def _send_error(self, status: int, detail: str | None = None) -> None:
        self.keep_alive = False
        response = self._proto.error_response(status, detail)
        self._status = status
        self._response = _COMPLETE
        self._head = []  # (the app's head never went out; the access log shows what did)
        if response is None or self._conn.broken:
            return
        try:
            await self._conn.send(response)
        except ClientDisconnected:
            return
        body = error_body(status, detail)
        self._head = error_head(body)
        if self.request.method != b"HEAD":
            self.bytes_sent = len(body)  # what the access log reports

    # -- reporting -----------------------------------------------------------------------

    @property
    def status(self) -> int:
        return self._status

    def _target(self) -> str:
        return f"{self.scope['method']} {self.scope['path']}"
