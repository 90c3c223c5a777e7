"""Checks shared by the HTTP and WebSocket state machines on what the app sends."""

from __future__ import annotations

from typing import Any

from .._types import Message
from ..errors import ASGIProtocolError


def message_type(message: Message) -> str:
    """The message's ``type``; a message without one is the app's error, raised from send."""
    try:
        return message["type"]  # type: ignore[no-any-return]
    except (KeyError, TypeError):
        raise ASGIProtocolError(f"ASGI message must be a dict with a 'type': {message!r}") from None


def header_list(headers: Any) -> list[tuple[bytes, bytes]]:
    """``headers`` as a list of pairs (apps send lists of lists, tuples, generators...)."""
    try:
        return [(name, value) for name, value in headers]
    except (TypeError, ValueError):
        raise ASGIProtocolError("headers must be [name, value] pairs") from None
