"""The HTTP side of the test client: requests out, responses in, over one in-memory stream."""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from email.message import Message as _MIMEHeader
from typing import Any, Final

import h11
import trio

from ._streams import MemoryStream

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]] | None


class Headers:
    """Response (or request) headers: ordered, duplicates kept, looked up case-insensitively."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.raw = [(bytes(name).lower(), bytes(value)) for name, value in raw]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_list(name)
        return ", ".join(values) if values else default

    def get_list(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for found, value in self.raw if found == key]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_list(name))

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name.decode("latin-1") for name, _ in self.raw))

    def __len__(self) -> int:
        return len(self.raw)

    def keys(self) -> list[str]:
        """The distinct names, in order: with it ``dict(headers)`` works (repeated
        headers joined with ", ", like ``headers[name]``)."""
        return list(self)

    def items(self) -> list[tuple[str, str]]:
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.raw]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


def encode_headers(headers: HeaderInput) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [
        (
            name.encode("latin-1") if isinstance(name, str) else name,
            value.encode("latin-1") if isinstance(value, str) else value,
        )
        for name, value in pairs
    ]


class Response:
    """A complete response: status, headers, body."""

    def __init__(
        self,
        status_code: int,
        headers: Headers,
        content: bytes,
        *,
        http_version: str,
        connection_id: int,
        informational: list[tuple[int, Headers]],
        trailers: Headers,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.http_version = http_version
        self.connection_id = connection_id  # equal ids: the requests shared a connection
        self.informational = informational  # 1xx responses that came first (100, 103, ...)
        self.trailers = trailers

    @property
    def encoding(self) -> str:
        content_type = self.headers.get("content-type")
        if content_type:
            header = _MIMEHeader()
            header["content-type"] = content_type
            charset = header.get_param("charset")
            if isinstance(charset, str):
                return charset
        return "utf-8"

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


# How long a request with ``Expect: 100-continue`` waits for the 100 before it sends its body
# anyway (curl's default; RFC 9110 10.1.1 lets a client stop waiting).
CONTINUE_WAIT: Final = 1.0


def _expects_continue(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"expect" and value.strip().lower() == b"100-continue"
        for name, value in headers
    )


def build_request(
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | AsyncIterable[bytes] | None,
) -> h11.Request:
    """The request head, checked by h11 before any connection is used: one it refuses (a
    header value with CR LF, a non-ASCII target...) is a ValueError at once, not a request
    that is never sent and whose response is waited for in vain."""
    if isinstance(body, bytes | bytearray):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    elif body is not None:
        headers = [*headers, (b"transfer-encoding", b"chunked")]
    try:
        return h11.Request(method=method, target=target, headers=headers)
    except h11.LocalProtocolError as exc:
        raise ValueError(f"cannot send this request: {exc}") from exc


class ClientConnection:
    """One HTTP/1.1 connection from the test client to the server."""

    def __init__(self, stream: MemoryStream, connection_id: int) -> None:
        self.stream = stream
        self.id = connection_id
        self.h11 = h11.Connection(h11.CLIENT)
        self.received_any = False  # any response bytes on this connection in this cycle
        # Set when a request that expects 100-continue may send its body (a 100 came) or
        # must not (the final response came first).
        self._go_ahead: trio.Event | None = None
        self._continued = False  # a 100 came for the current request
        self._answered = False  # its final response came

    @property
    def reusable(self) -> bool:
        return (
            not self.stream.closed
            and self.h11.our_state is h11.DONE
            and self.h11.their_state is h11.DONE
        )

    def reset(self) -> None:
        self.h11.start_next_cycle()
        self.received_any = False

    async def send_request(
        self, request: h11.Request, body: bytes | AsyncIterable[bytes] | None
    ) -> None:
        self._continued = self._answered = False
        await self._send(request)
        if body and _expects_continue(request.headers) and not await self._may_send_body():
            return  # the server answered without wanting the body
        if isinstance(body, bytes | bytearray):
            if body:
                await self._send(h11.Data(data=bytes(body)))
        elif body is not None:
            async for chunk in body:
                if chunk:
                    await self._send(h11.Data(data=chunk))
        await self._send(h11.EndOfMessage())

    async def _may_send_body(self) -> bool:
        """Wait for ``100 Continue`` like curl does: at most ``CONTINUE_WAIT`` seconds (a
        server may ignore the expectation), and not at all once the final response came."""
        if not (self._continued or self._answered):  # (either may have come already)
            self._go_ahead = trio.Event()
            with trio.move_on_after(CONTINUE_WAIT):
                await self._go_ahead.wait()
            self._go_ahead = None
        return not self._answered

    def _heard(self, status: int) -> None:
        if status == 100:
            self._continued = True
        elif status >= 200:
            self._answered = True
        else:
            return
        if self._go_ahead is not None:
            self._go_ahead.set()

    async def _send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send_all(data)

    async def next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive_some()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                self.received_any = self.received_any or bool(data)
                self.h11.receive_data(data)
                continue
            assert isinstance(event, h11.Event)
            return event

    async def read_head(self) -> tuple[h11.Response, list[tuple[int, Headers]]]:
        informational: list[tuple[int, Headers]] = []
        while True:
            event = await self.next_event()
            if isinstance(event, h11.InformationalResponse):
                informational.append((event.status_code, Headers(event.headers)))
                self._heard(event.status_code)
            elif isinstance(event, h11.Response):
                self._heard(event.status_code)
                return event, informational
            else:
                raise h11.RemoteProtocolError(f"expected a response, got {event!r}")

    async def body_event(self) -> bytes | h11.EndOfMessage:
        """The next piece of the response body, or the end of it."""
        event = await self.next_event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return event
        raise h11.RemoteProtocolError(f"expected body data, got {event!r}")


class StreamingResponse:
    """A response whose body is read on demand (``client.stream(...)``).

    Not reading is a slow client: the server's writes back up once the in-memory "socket"
    buffer is full. ``drop()`` is a client that vanishes mid-response. Each read is bounded
    by the client's ``timeout`` (``aread()`` as a whole), and a body that breaks off because
    the app raised raises the app's exception (with ``raise_app_exceptions``).
    """

    def __init__(
        self,
        connection: ClientConnection,
        head: h11.Response,
        informational: list[tuple[int, Headers]],
        *,
        deadline: Callable[[str], AbstractContextManager[None]],
        raise_app_error: Callable[[], None],
    ) -> None:
        self._connection = connection
        self._deadline = deadline  # ClientTimeout when a read takes longer than ``timeout``
        self._raise_app_error = raise_app_error
        self.status_code = head.status_code
        self.headers = Headers(head.headers)
        self.http_version = head.http_version.decode()
        self.informational = informational
        self.connection_id = connection.id
        self.trailers = Headers([])
        self.complete = False

    async def receive_chunk(self) -> bytes | None:
        """The next body piece as it arrived, ``None`` at the end of the body."""
        with self._deadline("the next piece of the body"):
            return await self._next_chunk()

    async def _next_chunk(self) -> bytes | None:
        if self.complete:
            return None
        try:
            item = await self._connection.body_event()
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            self._raise_app_error()  # the body broke off because the app raised?
            raise
        if isinstance(item, h11.EndOfMessage):
            self.trailers = Headers(item.headers)
            self.complete = True
            return None
        return item

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while (chunk := await self.receive_chunk()) is not None:
            yield chunk

    async def aread(self) -> bytes:
        pieces = []
        with self._deadline("the body"):
            while (chunk := await self._next_chunk()) is not None:
                pieces.append(chunk)
        return b"".join(pieces)

    def drop(self) -> None:
        """Vanish: reset the connection without reading the rest."""
        self._connection.stream.abort()

    def pause_reading(self, paused: bool = True) -> None:
        """Stop taking bytes off the wire (a slow client); the server's writes back up."""
        self._connection.stream.pause_reading(paused)
