"""Test ASGI apps on trio through the real server, without sockets and without threads.

``TestClient`` runs a real :class:`trio_asgi.Server` whose listener hands out in-memory
streams: every request travels as bytes through the same connection, h11 and wsproto code
as in production, so timeouts, backpressure and disconnects behave as they do on a socket
(and run in virtual time under ``trio.testing.MockClock``). ``serve_in_background`` runs the
server on a real loopback port for third-party clients.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json as jsonlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.extensions import Extension, PerMessageDeflate

from .._types import ASGIApp, Message, Receive, Scope, Send
from ..config import Config
from ..errors import only_client_disconnects
from ..server import Server
from ._http import (
    ClientConnection,
    HeaderInput,
    Headers,
    Response,
    StreamingResponse,
    build_request,
    encode_headers,
)
from ._streams import DEFAULT_BUFFER, MemoryStream, stream_pair
from ._urls import Target, encode_params, resolve
from ._websocket import (
    Binary,
    Closed,
    Text,
    WebSocketClient,
    WebSocketClosed,
    WebSocketDenied,
    build_frame,
)

__all__ = [
    "Binary",
    "ClientTimeout",
    "Closed",
    "Headers",
    "LiveServer",
    "MemoryListener",
    "MemoryStream",
    "Response",
    "StreamingResponse",
    "TestClient",
    "Text",
    "WebSocketClient",
    "WebSocketClosed",
    "WebSocketDenied",
    "build_frame",
    "serve_in_background",
    "stream_pair",
]

# Port numbers handed to in-memory connections, so each has its own scope["client"].
_FIRST_CLIENT_PORT = 50000
# The client address of the connection the current task serves, set when the server starts
# serving it (the app runs in that task or in its children). scope["client"] names the
# connection too, except behind --proxy-headers, where it is the forwarded client.
_CONNECTION: contextvars.ContextVar[tuple[str, int]] = contextvars.ContextVar("connection")


class ClientTimeout(trio.TooSlowError):
    """A client call waited longer than the client's ``timeout`` (the message says for what,
    and lists the app's last ASGI events on that connection)."""


class MemoryListener(trio.abc.Listener[MemoryStream]):
    """A listener whose connections come from ``connect()`` instead of the network.

    Connections queue like in a kernel backlog (``backlog`` of them) until the server's
    accept loop takes them.
    """

    def __init__(self, address: tuple[str, int] = ("testserver", 80), backlog: int = 128) -> None:
        self.address = address
        self._send, self._receive = trio.open_memory_channel[MemoryStream](backlog)

    async def accept(self) -> MemoryStream:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener closed") from None

    async def aclose(self) -> None:
        self._receive.close()
        await trio.lowlevel.checkpoint()

    async def connect(
        self, client_address: tuple[str, int], *, buffer_size: int = DEFAULT_BUFFER
    ) -> MemoryStream:
        client_end, server_end = stream_pair(buffer_size)
        server_end.client_address = client_address  # type: ignore[attr-defined]
        server_end.server_address = self.address  # type: ignore[attr-defined]
        try:
            await self._send.send(server_end)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionRefusedError("the server is not accepting connections") from None
        return client_end


def _summary(message: Message) -> str:
    """A message with long payloads shortened to a prefix and their length."""
    parts = []
    for key, value in message.items():
        if isinstance(value, bytes | str) and len(value) > 40:
            unit = "bytes" if isinstance(value, bytes) else "chars"
            value = f"{value[:32]!r}... ({len(value)} {unit})"
        else:
            value = repr(value)
        parts.append(f"{key!r}: {value}")
    return "{" + ", ".join(parts) + "}"


class _Transcript:
    """The last ASGI events of one connection, to explain a test that waited in vain."""

    def __init__(self) -> None:
        self.events: deque[str] = deque(maxlen=12)
        self.error: BaseException | None = None

    def add(self, direction: str, message: Message) -> None:
        self.events.append(f"  {direction} {_summary(message)}")

    def describe(self) -> str:
        if not self.events:
            return "  (the app has not received or sent anything on this connection)"
        return "\n".join(self.events)

    @contextlib.contextmanager
    def deadline(self, timeout: float | None, what: str) -> Iterator[None]:
        if timeout is None:
            yield
            return
        try:
            with trio.fail_after(timeout):
                yield
        except trio.TooSlowError:
            raise ClientTimeout(
                f"timed out after {timeout}s {what}; the app's last ASGI events:\n{self.describe()}"
            ) from None


class _TaskGroupOwner:
    """An async context manager that owns a nursery without wrapping the body's own
    exception in an ExceptionGroup (so a failed ``assert`` stays a plain failure)."""

    _nursery: trio.Nursery
    _nursery_manager: Any

    async def _open_nursery(self) -> trio.Nursery:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        return self._nursery

    async def _close_nursery(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._nursery.cancel_scope.cancel()
        try:
            return bool(await self._nursery_manager.__aexit__(exc_type, exc, tb))
        except BaseExceptionGroup as group:
            if exc is not None:
                _, rest = group.split(lambda e: e is exc)
                if rest is None:
                    raise exc from None
            raise


class TestClient(_TaskGroupOwner):
    """``async with TestClient(app, **config) as client:`` — an in-process client.

    Entering runs lifespan startup (``StartupFailed`` if the app reports failure); leaving
    runs a graceful server shutdown and lifespan shutdown. ``config`` are ``trio_asgi.Config``
    fields (``ws_max_size=...``, ``timeout_keep_alive=...``).

    Args:
        base_url: what request URLs are resolved against (as httpx does: ``items`` and
            ``?page=2`` are relative to it; ``http://example.org/x`` sends
            ``Host: example.org``). With ``https://`` the app sees scheme https/wss.
        timeout: default bound, in seconds, for every client call (a request's response,
            each read of a streamed body, a WebSocket send, receive, ping or handshake);
            ``None`` waits forever. Under ``MockClock(autojump_threshold=0)`` it passes in
            virtual time.
        raise_app_exceptions: an exception that escapes the app is raised again from the
            client call that was waiting for its response (the server still answers 500).
        keep_alive: reuse one connection for consecutive requests.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: Any,
        *,
        base_url: str = "http://testserver",
        timeout: float | None = 10.0,
        raise_app_exceptions: bool = True,
        keep_alive: bool = True,
        buffer_size: int = DEFAULT_BUFFER,
        client_host: str = "127.0.0.1",
        **config: Any,
    ) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        base = resolve(base_url, "/")
        self.host = base.host  # the Host header of requests to a path
        self._secure = base.secure
        self.timeout = timeout
        self.raise_app_exceptions = raise_app_exceptions
        self.keep_alive = keep_alive
        self.buffer_size = buffer_size
        self._client_host = client_host
        self.config = Config(**config)
        self._app: ASGIApp | None = None  # the app as the server adapted it
        self.server = Server(app, self.config, wrap=self._record)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.listener = MemoryListener((parts.hostname or "testserver", port), self.config.backlog)
        self._ports = itertools.count(_FIRST_CLIENT_PORT)
        self._transcripts: dict[tuple[str, int], _Transcript] = {}
        self._idle: ClientConnection | None = None
        self.connections_opened = 0
        self._served = trio.Event()
        self._shutdown_reported = False
        serve_connection = self.server._handle

        async def handle(stream: MemoryStream) -> None:
            _CONNECTION.set(stream.client_address)  # type: ignore[attr-defined]
            await serve_connection(stream, secure_transport=self._secure)

        self.server._handle = handle  # type: ignore[method-assign, assignment]

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> TestClient:
        nursery = await self._open_nursery()
        try:
            await nursery.start(self._serve)
        except BaseException as exc:
            await self._close_nursery(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def _serve(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.server.serve(listeners=[self.listener], task_status=task_status)
        finally:
            self._served.set()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if exc is None:
                await self.shutdown()
        finally:
            handled = await self._close_nursery(exc_type, exc, tb)
        return handled

    async def shutdown(self) -> None:
        """Stop the server the way SIGTERM does, and wait until it has (lifespan included).

        A failed lifespan shutdown is raised once, by the first call that sees it: a test
        that caught it does not get it again when it leaves the ``async with`` block.
        """
        self.server.request_shutdown()
        await self._served.wait()
        failure = self.server.lifespan.shutdown_failure
        if failure is not None and not self._shutdown_reported:
            self._shutdown_reported = True
            raise RuntimeError(f"lifespan shutdown failed: {failure}")

    @property
    def lifespan_state(self) -> dict[str, Any]:
        return self.server.state.lifespan_state

    # -- the app, observed -----------------------------------------------------------------

    def _record(self, app: ASGIApp) -> ASGIApp:
        self._app = app
        return self._recording_app

    async def _recording_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._app is not None
        if scope["type"] == "lifespan":
            await self._app(scope, receive, send)
            return
        address = _CONNECTION.get(None) or tuple(scope["client"])  # type: ignore[arg-type]
        transcript = self._transcripts.setdefault(address, _Transcript())

        async def recorded_receive() -> Message:
            message = await receive()
            transcript.add("app received", message)
            return message

        async def recorded_send(message: Message) -> None:
            transcript.add("app sent", message)
            await send(message)

        try:
            await self._app(scope, recorded_receive, recorded_send)
        except Exception as exc:
            if not only_client_disconnects(exc):
                transcript.error = exc
            raise

    def _raise_app_error(self, client_address: tuple[str, int]) -> None:
        transcript = self._transcripts.get(client_address)
        if self.raise_app_exceptions and transcript is not None and transcript.error is not None:
            error, transcript.error = transcript.error, None
            raise error

    # -- connections -----------------------------------------------------------------------

    async def connect(self, *, buffer_size: int | None = None) -> MemoryStream:
        """A raw connection to the server, for speaking bytes (malformed requests...)."""
        address = (self._client_host, next(self._ports))
        self._transcripts[address] = _Transcript()
        self.connections_opened += 1
        stream = await self.listener.connect(address, buffer_size=buffer_size or self.buffer_size)
        stream.client_address = address  # type: ignore[attr-defined]
        return stream

    async def _connection(self, *, reuse: bool) -> tuple[ClientConnection, bool]:
        """A connection for the next request, and whether it is a reused keep-alive one."""
        idle, self._idle = self._idle, None
        if reuse and idle is not None and idle.reusable and not idle.stream.peer_closed:
            idle.reset()
            return idle, True
        if idle is not None:
            await idle.stream.aclose()
        stream = await self.connect()
        connection = ClientConnection(stream, stream.client_address[1])  # type: ignore[attr-defined]
        return connection, False

    async def _release(self, connection: ClientConnection) -> None:
        if self.keep_alive and connection.reusable and self._idle is None:
            self._idle = connection
        else:
            await connection.stream.aclose()

    def _transcript(self, connection: ClientConnection | MemoryStream) -> _Transcript:
        stream = connection.stream if isinstance(connection, ClientConnection) else connection
        return self._transcripts[stream.client_address]  # type: ignore[attr-defined]

    # -- HTTP ------------------------------------------------------------------------------

    def _target(self, url: str) -> Target:
        """Where ``url`` goes; its scheme must be the base_url's, which decides for the whole
        client whether the server sees https/wss."""
        target = resolve(self.base_url, url)
        if target.secure != self._secure:
            raise ValueError(
                f"{url!r} does not have the scheme of this client's base_url "
                f"{self.base_url!r}; use a TestClient with base_url of that scheme"
            )
        return target

    def _prepare(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: HeaderInput,
        content: bytes | str | AsyncIterable[bytes] | None,
        json: Any,
        data: Mapping[str, Any] | None,
    ) -> tuple[h11.Request, bytes | AsyncIterable[bytes] | None]:
        where = self._target(url)
        target = where.target
        if params:
            target += ("&" if "?" in target else "?") + encode_params(params)
        raw_headers = encode_headers(headers)
        names = {name.lower() for name, _ in raw_headers}
        if b"host" not in names:
            raw_headers.insert(0, (b"host", where.host.encode("ascii")))
        body: bytes | AsyncIterable[bytes] | None = None
        content_type: bytes | None = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            content_type = b"application/json"
        elif data is not None:
            body = encode_params(data).encode()
            content_type = b"application/x-www-form-urlencoded"
        elif isinstance(content, str):
            body = content.encode()
        elif content is not None:
            body = content
        if content_type is not None and b"content-type" not in names:
            raw_headers.append((b"content-type", content_type))
        return build_request(method.upper(), target.encode("ascii"), raw_headers, body), body

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: HeaderInput = None,
        content: bytes | str | AsyncIterable[bytes] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[StreamingResponse]:
        """Send a request; yield the response once its head arrived, body still unread.

        A request given up on (cancelled, ``ClientTimeout``) closes its connection, as a
        client that goes away does: the app hears ``http.disconnect``.
        """
        request, body = self._prepare(method, url, params, headers, content, json, data)
        replayable = not isinstance(body, AsyncIterable)
        reuse = self.keep_alive
        while True:
            connection, reused = await self._connection(reuse=reuse)
            transcript = self._transcript(connection)
            address = connection.stream.client_address  # type: ignore[attr-defined]
            try:
                with transcript.deadline(self.timeout, f"the response to {method} {url}"):
                    head, informational = await self._exchange(connection, request, body)
                break
            except (h11.RemoteProtocolError, trio.BrokenResourceError):
                await connection.stream.aclose()
                if reused and replayable and not connection.received_any:
                    # The server closed the idle connection just as we reused it; like
                    # any HTTP client, try once more on a new connection.
                    reuse = False
                    continue
                self._raise_app_error(address)
                raise
            except BaseException:
                await trio.aclose_forcefully(connection.stream)
                raise

        def deadline(what: str) -> contextlib.AbstractContextManager[None]:
            return transcript.deadline(self.timeout, f"waiting for {what} of {method} {url}")

        response = StreamingResponse(
            connection,
            head,
            informational,
            deadline=deadline,
            raise_app_error=lambda: self._raise_app_error(address),
        )
        try:
            yield response
        finally:
            if response.complete:
                await self._release(connection)
            else:
                await connection.stream.aclose()
        self._raise_app_error(address)

    async def _exchange(
        self,
        connection: ClientConnection,
        request: h11.Request,
        body: bytes | AsyncIterable[bytes] | None,
    ) -> tuple[h11.Response, list[tuple[int, Headers]]]:
        """Send the request while reading the response head: an app may answer early."""

        async def send() -> None:
            try:
                await connection.send_request(request, body)
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                # The server answered or closed before taking the whole request (h11 then
                # refuses to send more; build_request checked the request itself).
                pass

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                return await connection.read_head()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: HeaderInput = None,
        content: bytes | str | AsyncIterable[bytes] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
    ) -> Response:
        """Send a request and read the whole response."""
        async with self.stream(
            method, url, params=params, headers=headers, content=content, json=json, data=data
        ) as streamed:
            body = await streamed.aread()
        return Response(
            streamed.status_code,
            streamed.headers,
            body,
            http_version=streamed.http_version,
            connection_id=streamed.connection_id,
            informational=streamed.informational,
            trailers=streamed.trailers,
        )

    async def get(self, url: str, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str, **kwargs: Any) -> Response:
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url: str, **kwargs: Any) -> Response:
        return await self.request("OPTIONS", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> Response:
        return await self.request("DELETE", url, **kwargs)

    # -- WebSocket -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def websocket(
        self,
        path: str,
        *,
        subprotocols: list[str] | tuple[str, ...] = (),
        headers: HeaderInput = None,
        compression: bool | Extension = False,
    ) -> AsyncIterator[WebSocketClient]:
        """Open a WebSocket; ``WebSocketDenied`` if the server answers with HTTP instead.

        ``compression=True`` offers permessage-deflate with wsproto's defaults; pass a
        configured ``wsproto.extensions.PerMessageDeflate`` to offer other parameters.
        ``ws.extensions`` tells what was agreed. Leaving the block closes the connection
        cleanly (code 1000) unless it already ended. ``path`` is resolved like an HTTP
        request's URL (a ``ws://`` or ``wss://`` URL works too); a ``Host`` header in
        ``headers`` replaces the URL's.
        """
        where = self._target(path)
        host = where.host
        extra_headers = []
        for name, value in encode_headers(headers):
            if name.lower() == b"host":
                host = value.decode("latin-1")
            else:
                extra_headers.append((name, value))
        stream = await self.connect()
        transcript = self._transcript(stream)
        address = stream.client_address  # type: ignore[attr-defined]
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=host,
            target=where.target,
            subprotocols=list(subprotocols),
            extensions=(
                [compression]
                if isinstance(compression, Extension)
                else [PerMessageDeflate()]
                if compression
                else []
            ),
            extra_headers=extra_headers,
        )
        try:
            with transcript.deadline(self.timeout, f"the WebSocket handshake of {path}"):
                await stream.send_all(ws.send(request))
                accepted = await self._handshake(stream, ws)
        except BaseException:
            await stream.aclose()
            self._raise_app_error(address)
            raise
        client = WebSocketClient(
            stream,
            ws,
            subprotocol=accepted.subprotocol,
            headers=Headers(accepted.extra_headers),
            extensions=accepted.extensions,
            timeout=self.timeout,
            describe=transcript,
            raise_app_error=lambda: self._raise_app_error(address),
        )
        self._nursery.start_soon(client.run_reader)
        try:
            yield client
        except BaseException:
            client.stop()
            stream.abort()
            raise
        if client.closed is None and not stream.closed:
            try:
                await client.close()
            except ClientTimeout:
                stream.abort()
        client.stop()
        self._raise_app_error(address)

    async def _handshake(self, stream: MemoryStream, ws: WSConnection) -> AcceptConnection:
        rejection: RejectConnection | None = None
        body = b""
        while True:
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    return event
                if isinstance(event, RejectConnection):
                    rejection = event
                    if not event.has_body:
                        raise WebSocketDenied(event.status_code, Headers(event.headers), b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished and rejection is not None:
                        raise WebSocketDenied(
                            rejection.status_code, Headers(rejection.headers), body
                        )
            try:
                data = await stream.receive_some()
            except trio.BrokenResourceError:
                data = b""
            if not data:
                if rejection is not None:
                    raise WebSocketDenied(rejection.status_code, Headers(rejection.headers), body)
                raise ConnectionResetError("the server closed the connection during the handshake")
            ws.receive_data(data)


class LiveServer:
    """A server on a real loopback socket, for third-party clients (httpx, websockets...)."""

    def __init__(self, server: Server, addresses: list[tuple[str, int | None]]) -> None:
        self.server = server
        self.addresses = addresses
        host, port = addresses[0]
        self.host = host
        self.port = port
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # With TLS configured the first binds are the TLS ones (--insecure-bind come last).
        secure = server.config.uses_tls
        self.url = f"{'https' if secure else 'http'}://{authority}"
        self.ws_url = f"{'wss' if secure else 'ws'}://{authority}"


class _BackgroundServer(_TaskGroupOwner):
    def __init__(self, app: Any, config: Config) -> None:
        self._server = Server(app, config)
        self._done = trio.Event()

    async def __aenter__(self) -> LiveServer:
        nursery = await self._open_nursery()
        try:
            addresses = await nursery.start(self._serve)
        except BaseException as exc:
            await self._close_nursery(type(exc), exc, exc.__traceback__)
            raise
        return LiveServer(self._server, addresses)

    async def _serve(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._server.serve(task_status=task_status)
        finally:
            self._done.set()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if exc is None:
                self._server.request_shutdown()
                await self._done.wait()
        finally:
            handled = await self._close_nursery(exc_type, exc, tb)
        return handled


def serve_in_background(app: Any, **config: Any) -> _BackgroundServer:
    """``async with serve_in_background(app, **config) as server:`` — a live server on
    127.0.0.1 and a free port (``server.url``, ``server.ws_url``; ``https``/``wss`` with
    ``certfile``), stopped gracefully on exit."""
    config.setdefault("port", 0)
    return _BackgroundServer(app, Config(**config))
