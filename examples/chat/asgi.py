"""The chat as a plain ASGI 3 application: a page at ``/``, a WebSocket at ``/ws/{room}``.

Each WebSocket session runs one task group with two tasks: the *reader* (the session's own
task) turns the client's messages into room events; the *writer* drains the member's bounded
outbox onto the socket. Whichever ends first cancels the other, and leaving the group always
takes the member out of its room, so no task or member outlives its connection.

Wire protocol (JSON text frames). Client → server: ``{"type": "message", "text": "..."}``.
Server → client: ``welcome`` (your id and name, who is here, recent history), ``join`` and
``leave`` (presence, with the new member list), ``message``, and ``error`` for bad input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

import trio

from .rooms import POLICY_VIOLATION, UNSUPPORTED_DATA, Hub, Member, Room

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STATIC_DIR: Final = Path(__file__).parent / "static"
# Longest chat message and name, in characters: a chat line, not a file transfer.
MAX_TEXT: Final = 2000
MAX_NAME: Final = 32
ROOM_NAME: Final = re.compile(r"[\w-]{1,40}")
WS_PATH: Final = re.compile(r"/ws/([^/]+)")
# The page only talks to its own origin; nothing inline, so a hostile chat message that
# somehow reached the DOM as markup still could not run script.
PAGE_HEADERS: Final = [
    (b"content-security-policy", b"default-src 'self'; connect-src 'self' ws: wss:"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-cache"),
]
ASSETS: Final = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/chat.js": ("chat.js", b"text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", b"text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", b"image/svg+xml"),
}


class ChatApp:
    """The ASGI app. ``create_app()`` builds one; ``app`` below is the default instance."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # Read once: a few small files, served from memory.
        self._assets = {
            path: ((STATIC_DIR / filename).read_bytes(), content_type)
            for path, (filename, content_type) in ASSETS.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    # -- HTTP ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, send: Send) -> None:
        path = scope["path"]
        if path == "/rooms":
            body, content_type = json.dumps(self.hub.summary()).encode(), b"application/json"
        elif path in self._assets:
            body, content_type = self._assets[path]
        else:
            await _respond(send, 404, b"Not Found\n")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
            return
        headers = [(b"content-type", content_type), *PAGE_HEADERS]
        await _respond(send, 200, b"" if scope["method"] == "HEAD" else body, headers, len(body))

    # -- WebSocket -------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        match = WS_PATH.fullmatch(scope["path"])
        if match is None:
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            return
        await send({"type": "websocket.accept"})
        room_name = match.group(1)  # scope["path"] is already percent-decoded
        if ROOM_NAME.fullmatch(room_name) is None:
            # Accept first, then close: a browser can show a close reason, not an HTTP 403.
            reason = "room names are 1-40 letters, digits, '_' or '-'"
            await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason})
            return
        room, member = self.hub.join(room_name, _name_from(scope["query_string"]))
        try:
            async with trio.open_nursery() as session:
                session.start_soon(_write, member, send, session.cancel_scope)
                await self._read(room, member, receive)
                session.cancel_scope.cancel()  # the client left: stop the writer too
        finally:
            self.hub.leave(room, member)

    async def _read(self, room: Room, member: Member, receive: Receive) -> None:
        """Turn the client's messages into room events until it disconnects."""
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                # The writer sends the close frame; we keep reading until the session ends.
                self.hub.kick(member, UNSUPPORTED_DATA, "send JSON text frames")
                continue
            try:
                event = json.loads(text)
                said = event["text"] if event["type"] == "message" else None
            except (ValueError, TypeError, KeyError):
                said = None
            if not isinstance(said, str):
                _tell(member, 'expected {"type": "message", "text": "..."}')
            elif not said.strip():
                _tell(member, "empty message")
            elif len(said) > MAX_TEXT:
                _tell(member, f"messages are limited to {MAX_TEXT} characters")
            else:
                room.post(member, said.strip())


async def _write(member: Member, send: Send, session: trio.CancelScope) -> None:
    """Drain the member's outbox onto its WebSocket; close it if the member is kicked."""
    try:
        with member.writer_scope:
            async with member.outbox:
                async for text in member.outbox:
                    if member.kicked is not None:
                        break  # no point sending the backlog of a member being dropped
                    await send({"type": "websocket.send", "text": text})
            if member.kicked is not None:
                code, reason = member.kicked
                await send({"type": "websocket.close", "code": code, "reason": reason})
    except OSError:
        pass  # the client is gone (ASGI servers raise an OSError from send, spec 2.4)
    finally:
        session.cancel()  # no writer, no session: stop the reader too


def _tell(member: Member, error: str) -> None:
    """An error for this member only; if even that does not fit, the next broadcast drops it."""
    member.offer(json.dumps({"type": "error", "error": error}))


def _name_from(query_string: bytes) -> str | None:
    """The ``name`` query parameter, whitespace-collapsed and cut to ``MAX_NAME``."""
    values = parse_qs(query_string.decode("utf-8", "replace")).get("name", [])
    name = " ".join(values[0].split())[:MAX_NAME] if values else ""
    return name or None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    length: int | None = None,
) -> None:
    if headers is None:
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
    size = len(body) if length is None else length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(size).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(*, queue_size: int = 32, history_size: int = 50, kick_grace: float = 5.0) -> ChatApp:
    """A chat app with its own rooms; see ``Hub`` for what the settings mean."""
    return ChatApp(Hub(queue_size=queue_size, history_size=history_size, kick_grace=kick_grace))


app = create_app()
