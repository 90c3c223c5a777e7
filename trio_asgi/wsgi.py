"""Run a WSGI (PEP 3333) application under trio_asgi, streaming in both directions.

The app is synchronous, so each request runs it in one of trio's worker threads, admitted
by a ``trio.CapacityLimiter`` of its own (``--wsgi-threads``): a slow WSGI app cannot block
the event loop, and cannot take threads from anything else that uses ``trio.to_thread``.

Every crossing from the app's thread into the server is one ``trio.from_thread.run`` call
that returns only when the server is done with it:

- ``wsgi.input`` pulls one request body chunk (at most 64 KiB, the server's read size) when
  the app reads, so an upload is never buffered whole and an app that ignores the body
  costs nothing (``100 Continue`` is only sent if the app reads).
- Each chunk of the response iterable is sent, and accepted by the transport, before the
  iterable is asked for the next one: a slow client slows the app down instead of filling
  memory, and a client that left makes the next send raise ``ClientDisconnected``, which
  stops the iteration. ``close()`` is called on the iterable whatever happened.

A thread cannot be interrupted. When the request is cancelled (shutdown deadline, a
router's timeout), the server stops waiting for it; the thread's next call into the server
raises ``ClientDisconnected`` so that it unwinds and closes the iterable, and it holds its
``--wsgi-threads`` slot until it has really returned.
"""

from __future__ import annotations

import inspect
import io
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote_to_bytes

import trio

from ._types import Message, Receive, Scope, Send
from .errors import ClientDisconnected
from .protocols.http1 import HOP_BY_HOP_HEADERS

log = logging.getLogger("trio_asgi.error")

# Threads running the app at once when nobody says otherwise (also trio's default limit).
DEFAULT_THREADS: Final = 40

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
Write = Callable[[bytes], None]
StartResponse = Callable[..., Write]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_NO_BODY_STATUSES: Final = frozenset({204, 304})
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-z]+")  # RFC 9110 5.6.2, lower-cased
_FORBIDDEN_IN_VALUE: Final = re.compile(rb"[\x00\r\n]")
_OVER: Final = "the server no longer serves this request (it was cancelled or has finished)"
_WEBSOCKET_DENIAL: Final = b"This server runs a WSGI application, which cannot accept WebSockets.\n"


class WSGIAdaptor:
    """An ASGI 3 application that runs the WSGI application ``app``.

    Args:
        app: the WSGI callable, ``app(environ, start_response)``.
        threads: how many requests may run the app at once; the others wait for a thread.
        multiprocess: the value of ``wsgi.multiprocess``: true when the server runs
            several worker processes (``--workers``).
    """

    def __init__(
        self, app: WSGIApp, *, threads: int = DEFAULT_THREADS, multiprocess: bool = False
    ) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, not {threads!r}")
        self.app = app
        self.threads = threads
        self.multiprocess = multiprocess
        # A CapacityLimiter belongs to one trio.run; the same adaptor may serve several runs
        # (tests do), so each run gets its own.
        self._limiter: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
            "trio_asgi.wsgi.limiter"
        )

    def __repr__(self) -> str:
        return f"WSGIAdaptor({self.app!r}, threads={self.threads})"

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The thread limiter of the current trio run."""
        try:
            return self._limiter.get()
        except LookupError:
            limiter = trio.CapacityLimiter(self.threads)
            self._limiter.set(limiter)
            return limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type == "http":
            await _Request(self, scope, receive, send).run()
        elif scope_type == "websocket":
            await _deny_websocket(scope, receive, send)
        elif scope_type == "lifespan":
            await _lifespan(receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {scope_type!r}")


async def _lifespan(receive: Receive, send: Send) -> None:
    """WSGI has no startup or shutdown: report both as done, so the server says nothing."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _deny_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """A WebSocket handshake cannot reach a WSGI app: answer it with a plain 404."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 404,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(_WEBSOCKET_DENIAL)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": _WEBSOCKET_DENIAL})
    else:
        await send({"type": "websocket.close"})  # servers without the extension answer 403


# -- environ ---------------------------------------------------------------------------------


def build_environ(
    scope: Scope, wsgi_input: io.BufferedIOBase, wsgi_errors: io.TextIOBase, multiprocess: bool
) -> Environ:
    """The PEP 3333 environ of an ASGI ``http`` scope (the ASGI spec's "WSGI compatibility").

    Strings are "bytes as latin-1" as WSGI requires: ``PATH_INFO`` holds the percent-decoded
    bytes of the path, so a path that is not valid UTF-8 reaches the app unchanged.
    """
    script_name = scope.get("root_path", "")
    path = _path_bytes(scope).decode("latin-1")
    root = script_name.encode("utf-8").decode("latin-1")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]
    # Otherwise the path is already relative to root_path (older routers strip it).
    scheme = scope.get("scheme", "http")
    environ: Environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": wsgi_input,
        # The body ends where the request's ends, chunked or not; frameworks (Werkzeug)
        # read bodies without Content-Length only when a server promises this.
        "wsgi.input_terminated": True,
        "wsgi.errors": wsgi_errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        if b"_" in raw_name:
            # "X_User" would become HTTP_X_USER, the same key as "X-User": a proxy that
            # vets one lets the other spoof it. Drop them, as nginx and gunicorn do.
            continue
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = "HTTP_" + name
        value = raw_value.decode("latin-1")
        if name in environ:
            value = environ[name] + ("; " if name == "HTTP_COOKIE" else ",") + value
        environ[name] = value
    server = scope.get("server")
    if server and server[1] is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    else:  # a unix socket, or unknown: what the client asked for is the best guess
        host, port = _split_host(environ.get("HTTP_HOST", ""))
        environ["SERVER_NAME"] = host or (server[0] if server else "localhost")
        environ["SERVER_PORT"] = port or ("443" if scheme == "https" else "80")
    return environ


def _path_bytes(scope: Scope) -> bytes:
    """The percent-decoded request path as bytes.

    ``scope["path"]`` is already decoded as UTF-8, which replaced invalid bytes; decoding
    ``raw_path`` ourselves keeps them, unless a router rewrote ``path`` without ``raw_path``.
    """
    path: str = scope["path"]
    raw = scope.get("raw_path")
    if raw:
        decoded = unquote_to_bytes(raw) if b"%" in raw else bytes(raw)
        if decoded.decode("utf-8", "replace") == path:
            return decoded
    return path.encode("utf-8")


def _split_host(host: str) -> tuple[str, str]:
    if host.startswith("["):  # [v6]:port
        name, _, rest = host[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else ""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, port
    return host, ""


class _Input(io.BufferedIOBase):
    """``wsgi.input``: reads pull request body chunks from the server on demand.

    ``pull()`` returns ``(chunk, more)``. Only what the app asked for beyond the last chunk
    is held here, so memory stays bounded by the app's read size plus one chunk.
    """

    def __init__(self, pull: Callable[[], tuple[bytes, bool]]) -> None:
        super().__init__()
        self._pull = pull
        self._buffer = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """One more chunk into the buffer; False at the end of the body."""
        if self._eof:
            return False
        chunk, more = self._pull()
        self._buffer += chunk
        if not more:
            self._eof = True
        return True

    def _take(self, size: int) -> bytes:
        buffer = self._buffer
        if size >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:size])
            del buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes, fewer only at the end of the body; all of it without a size."""
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def read1(self, size: int = -1) -> bytes:
        """Whatever is buffered, or else at most one chunk from the server."""
        if not self._buffer:
            self._fill()
        return self._take(len(self._buffer) if size < 0 else size)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            searched = len(self._buffer)
            if not self._fill():
                return self._take(searched)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> _Input:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


# Text written to wsgi.errors without a newline is logged once it reaches this length.
ERRORS_LINE_LIMIT: Final = 8 * 1024


class _Errors(io.TextIOBase):
    """``wsgi.errors``: each line the app writes becomes a record of ``trio_asgi.error``."""

    def __init__(self, context: str) -> None:
        super().__init__()
        self._context = context
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            log.error("WSGI app (%s): %s", self._context, line)
        if len(self._partial) > ERRORS_LINE_LIMIT:
            self.flush()  # an app that never ends its line still cannot grow this unbounded
        return len(text)

    def flush(self) -> None:
        if self._partial:
            partial, self._partial = self._partial, ""
            log.error("WSGI app (%s): %s", self._context, partial)


# -- one request -----------------------------------------------------------------------------


class _Request:
    """One call of the WSGI app: the trio side runs ``run()``; everything else runs in the
    app's thread and reaches the server only through ``_bridge``."""

    def __init__(self, adaptor: WSGIAdaptor, scope: Scope, receive: Receive, send: Send) -> None:
        self._adaptor = adaptor
        self._scope = scope
        self._receive = receive
        self._send = send
        self._token = trio.lowlevel.current_trio_token()
        self._abandoned = False  # set in trio once the request no longer waits for the thread
        self._bridging: trio.CancelScope | None = None  # the thread's call into the server
        # Response state, owned by the app's thread.
        self._status: int | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_sent = False
        self._complete = False  # the final body message was sent
        self._remaining: int | None = None  # declared Content-Length not yet sent
        self._no_body = scope["method"] == "HEAD"  # or a status that has no body
        self._single_chunk = False

    async def run(self) -> None:
        scope = self._scope
        target = f"{scope['method']} {scope['path']}"
        errors = _Errors(target)
        environ = build_environ(scope, _Input(self._read_body), errors, self._adaptor.multiprocess)
        try:
            await trio.to_thread.run_sync(
                self._call_app,
                environ,
                errors,
                limiter=self._adaptor.limiter,
                abandon_on_cancel=True,
                thread_name=f"WSGI {target[:80]}",
            )
        finally:
            self._abandoned = True
            if self._bridging is not None:
                # The thread's call into the server runs in trio's system nursery (threads
                # that may be abandoned cannot call into their host task), not under this
                # request: it ends with the request, before anyone else uses the connection
                # (a router answering by itself, the next request).
                self._bridging.cancel()

    # -- the bridge (runs in trio, called from the thread) -------------------------------

    async def _pull(self) -> tuple[bytes, bool]:
        message: Message = await self._while_served(self._receive)
        if message["type"] != "http.request":
            raise ClientDisconnected("the client disconnected before sending the whole body")
        return message.get("body", b""), message.get("more_body", False)

    async def _deliver(self, messages: list[Message]) -> None:
        for message in messages:
            await self._while_served(self._send, message)

    async def _while_served(self, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``call(*args)``, cut short (``ClientDisconnected``) when the request is over."""
        if self._abandoned:
            raise ClientDisconnected(_OVER)
        with trio.CancelScope() as scope:
            self._bridging = scope
            try:
                return await call(*args)
            finally:
                self._bridging = None
        raise ClientDisconnected(_OVER)

    def _read_body(self) -> tuple[bytes, bool]:
        try:
            return trio.from_thread.run(self._pull, trio_token=self._token)
        except trio.RunFinishedError:  # a thread left behind by a server that has stopped
            raise ClientDisconnected(_OVER) from None

    def _bridge(self, messages: list[Message]) -> None:
        try:
            trio.from_thread.run(self._deliver, messages, trio_token=self._token)
        except trio.RunFinishedError:
            raise ClientDisconnected(_OVER) from None

    # -- the app's thread ----------------------------------------------------------------

    def _call_app(self, environ: Environ, errors: _Errors) -> None:
        try:
            result = self._adaptor.app(environ, self.start_response)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # no "never awaited" warning on top of ours
                raise TypeError(
                    f"the WSGI app returned an awaitable ({type(result).__name__}): it looks "
                    "like an ASGI application; run it with --interface asgi3"
                )
            try:
                self._respond(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except SystemExit as exc:
            # In a worker thread sys.exit() ends only the thread, never the process; raised
            # in the server's task it would stop the server. It is the app's failure: a 500.
            raise RuntimeError(f"the WSGI app called sys.exit({exc.code!r})") from exc
        except BaseException:
            if self._abandoned:
                log.debug("WSGI app ended after its request was cancelled", exc_info=True)
            raise
        finally:
            errors.flush()

    def _respond(self, result: Iterable[bytes]) -> None:
        kind = type(result)
        if not (hasattr(kind, "__iter__") or hasattr(kind, "__getitem__")):
            # (Asked of the type: a TypeError from inside the app's own __iter__ is its own.)
            raise TypeError(f"the WSGI app returned {kind.__name__}, not an iterable of bytes")
        iterator = iter(result)
        # A one-item list is the whole body: send its length instead of chunking (PEP 3333).
        self._single_chunk = isinstance(result, list | tuple) and len(result) == 1
        for chunk in iterator:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(
                    f"the WSGI app yielded {type(chunk).__name__}, not bytes"
                    + (" (encode it)" if isinstance(chunk, str) else "")
                )
            if chunk and not self._write(chunk, iterating=True):
                break  # past the declared Content-Length: PEP 3333 says stop iterating
        self._finish()

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Write:
        """PEP 3333 ``start_response``: records the head; it is sent with the first body
        bytes, so an error before then can still replace it (``exc_info``)."""
        if exc_info is not None:
            try:
                if self._head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self._status is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        code, encoded = _parse_status(status), _encode_headers(headers)  # both, or neither
        self._status, self._headers = code, encoded
        # A replaced head takes what was derived from it along (a failed write() may have
        # derived it already): the Content-Length countdown and whether a body is allowed.
        self._remaining = None
        self._no_body = self._scope["method"] == "HEAD"
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()`` callable for apps that push instead of returning."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if data and not self._write(data, iterating=False):
            raise RuntimeError("write() past the Content-Length the app declared")

    def _head(self, body: bytes | bytearray | memoryview | None) -> Message:
        """The response head, sent along with the first body bytes (``body``) or with the
        end of an empty body (``None``)."""
        status = self._status
        if status is None:
            raise RuntimeError("the WSGI app sent body bytes before calling start_response()")
        headers = self._headers
        declared = [value for name, value in headers if name == b"content-length"]
        if status in _NO_BODY_STATUSES or status < 200:
            self._no_body = True
        elif declared:
            try:
                self._remaining = int(declared[0])
            except ValueError:
                pass  # the server refuses the response with a clear message
        elif body is not None and self._single_chunk:
            headers = [*headers, (b"content-length", str(len(body)).encode())]
            self._remaining = len(body)
        elif body is None and not self._no_body:
            headers = [*headers, (b"content-length", b"0")]  # nothing came: say so
        return {"type": "http.response.start", "status": status, "headers": headers}

    def _write(self, data: bytes | bytearray | memoryview, *, iterating: bool) -> bool:
        """Send ``data`` (with the head, the first time); False if nothing more may be sent."""
        messages = [] if self._head_sent else [self._head(data)]
        if self._complete:
            return False
        more = True
        remaining = self._remaining
        keep_going = True
        if remaining is not None:
            if len(data) > remaining:
                if not iterating:
                    raise RuntimeError(
                        f"write() of {len(data)} bytes, but only {remaining} remain of the "
                        "Content-Length the app declared"
                    )
                data = data[:remaining]
                keep_going = False
                if not data and not messages:
                    return False  # the declared length was all sent already
            remaining -= len(data)
            self._remaining = remaining
            # The response ends only when the app returns: until then it may still read
            # wsgi.input (ASGI answers receive() with http.disconnect once the response is
            # complete). A one-item list has nothing left to run.
            more = remaining > 0 or not self._single_chunk
        messages.append({"type": "http.response.body", "body": data, "more_body": more})
        self._head_sent = True
        self._complete = not more
        self._bridge(messages)
        return keep_going

    def _finish(self) -> None:
        if self._status is None:
            raise RuntimeError("the WSGI app returned without calling start_response()")
        messages = [] if self._head_sent else [self._head(None)]
        if self._complete:
            return
        if self._remaining and not self._no_body:
            raise RuntimeError(
                f"the WSGI app's body ended {self._remaining} bytes short of the "
                "Content-Length it declared"
            )
        messages.append({"type": "http.response.body", "body": b"", "more_body": False})
        self._head_sent = True
        self._complete = True
        self._bridge(messages)


def _parse_status(status: str) -> int:
    if not isinstance(status, str):
        raise TypeError(f"status must be a str like '200 OK', not {type(status).__name__}")
    code = status[:3]
    if not (code.isascii() and code.isdigit()) or status[3:4] not in ("", " ") or code < "100":
        raise ValueError(f"status must look like '200 OK', not {status!r}")
    return int(code)


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    if not isinstance(headers, list | tuple):
        raise TypeError(f"response headers must be a list of (name, value), not {headers!r}")
    encoded = []
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"response header {item!r} is not a (name, value) pair") from None
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"response header {item!r}: name and value must be str")
        try:
            lowered, raw = name.lower().encode("latin-1"), value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"response header {item!r} is not latin-1 text") from None
        if _TOKEN.fullmatch(lowered) is None or _FORBIDDEN_IN_VALUE.search(raw) is not None:
            # Checked here, not only when the head is sent, so the app's own error handling
            # still runs (PEP 3333: servers should check headers when start_response is called).
            raise ValueError(f"response header {item!r} is not a valid HTTP header")
        # Connection-level headers are the server's business (PEP 3333, "Other HTTP
        # Features"): dropped, as gunicorn does, except "Connection: close", which the server
        # honours. (wsgiref raises instead, which fails apps that run elsewhere.)
        if lowered in HOP_BY_HOP_HEADERS and (lowered != b"connection" or raw.lower() != b"close"):
            continue
        encoded.append((lowered, raw))
    return encoded
