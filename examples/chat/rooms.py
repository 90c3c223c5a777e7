"""Rooms and members: broadcast over bounded trio memory channels, without ever waiting.

Every member owns a bounded outgoing channel that its own writer task drains onto its
WebSocket; a room hands each broadcast to every member with ``send_nowait``. A member whose
channel is full has stopped keeping up (a stalled network, a suspended laptop): it is dropped
from the room instead of making the sender wait. So one slow connection never slows the
others, and a room's memory is bounded by members x queue size.

This module knows nothing of ASGI; ``asgi.py`` connects it to WebSockets.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from typing import Any, Final

import trio

# WebSocket close codes (RFC 6455 7.4.1 and the IANA registry) the chat uses.
UNSUPPORTED_DATA: Final = 1003  # a binary message: the chat speaks JSON text
POLICY_VIOLATION: Final = 1008  # a bad room name
TRY_AGAIN_LATER: Final = 1013  # dropped for being too slow; reconnecting later is fine

Event = dict[str, Any]


class Member:
    """One connection in one room: a name, a bounded outbox, and a way to be shown out."""

    def __init__(self, member_id: int, name: str, queue_size: int) -> None:
        self.id = member_id
        self.name = name
        # The room writes, the member's writer task reads; nothing else touches the queue.
        self._outbox_send, self.outbox = trio.open_memory_channel[str](queue_size)
        self.kicked: tuple[int, str] | None = None  # (close code, reason) once asked to go
        # The writer runs inside this scope, so a kick can bound a send that never finishes.
        self.writer_scope = trio.CancelScope()

    def offer(self, text: str) -> bool:
        """Queue ``text`` without waiting; False only when the queue is full."""
        try:
            self._outbox_send.send_nowait(text)
        except trio.WouldBlock:
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # already kicked, or its writer is gone: the session is ending anyway
        return True

    def kick(self, code: int, reason: str, grace: float) -> None:
        """Ask the writer to close the WebSocket with ``code``, skipping what is queued.

        A member is usually kicked because its writer is stuck in a send to a peer that does
        not read. That send gets ``grace`` seconds to finish, so that the close frame can
        still follow it; after that the writer is cancelled and the connection just drops.
        """
        if self.kicked is not None:
            return
        self.kicked = (code, reason)
        self._outbox_send.close()  # a writer waiting for work wakes up with EndOfChannel
        deadline = trio.current_time() + grace
        self.writer_scope.deadline = min(self.writer_scope.deadline, deadline)

    def describe(self) -> Event:
        return {"id": self.id, "name": self.name}


class Room:
    """Members who see each other's messages, plus a short history for newcomers."""

    def __init__(self, name: str, *, history_size: int, kick_grace: float) -> None:
        self.name = name
        self.members: dict[int, Member] = {}
        self.history: deque[Event] = deque(maxlen=history_size)
        self._kick_grace = kick_grace

    def roster(self) -> list[Event]:
        return [member.describe() for member in self.members.values()]

    def add(self, member: Member) -> None:
        """Welcome ``member`` (who is here, recent messages), then tell everyone it joined."""
        self.members[member.id] = member
        welcome = {
            "type": "welcome",
            "room": self.name,
            **member.describe(),
            "members": self.roster(),
            "history": list(self.history),
        }
        member.offer(json.dumps(welcome))  # the first item of an empty queue always fits
        self.broadcast({"type": "join", **member.describe(), "members": self.roster()})

    def post(self, member: Member, text: str) -> None:
        event = {"type": "message", **member.describe(), "text": text, "time": time.time()}
        self.history.append(event)
        self.broadcast(event)

    def remove(self, member: Member, reason: str) -> None:
        """Take ``member`` out (if still in) and tell the others why."""
        if self.members.pop(member.id, None) is not None:
            self.broadcast(self._leave_event(member, reason))

    def broadcast(self, event: Event) -> None:
        """Queue ``event`` for every member now; drop the members who cannot take it.

        Dropping a member is news for the others, which may in turn find a queue full, so
        this loops until no one else is dropped (at most once per member).
        """
        pending = deque([event])
        while pending:
            text = json.dumps(pending.popleft())
            too_slow = [member for member in self.members.values() if not member.offer(text)]
            for member in too_slow:
                del self.members[member.id]
                member.kick(TRY_AGAIN_LATER, "too slow: messages were piling up", self._kick_grace)
            pending.extend(self._leave_event(member, "dropped (too slow)") for member in too_slow)

    def _leave_event(self, member: Member, reason: str) -> Event:
        return {"type": "leave", **member.describe(), "reason": reason, "members": self.roster()}


class Hub:
    """All rooms of one app. A room exists while someone is in it.

    Args:
        queue_size: messages a member may fall behind before it is dropped.
        history_size: recent messages a newcomer is shown.
        kick_grace: seconds a dropped member's pending send gets before the connection is cut.
    """

    def __init__(
        self, *, queue_size: int = 32, history_size: int = 50, kick_grace: float = 5.0
    ) -> None:
        if queue_size < 2:
            raise ValueError("queue_size must leave room for the welcome and one more message")
        self.queue_size = queue_size
        self.history_size = history_size
        self.kick_grace = kick_grace
        self.rooms: dict[str, Room] = {}
        self._ids = itertools.count(1)

    def join(self, room_name: str, name: str | None) -> tuple[Room, Member]:
        member_id = next(self._ids)
        member = Member(member_id, name or f"guest-{member_id}", self.queue_size)
        room = self.rooms.get(room_name)
        if room is None:
            room = Room(room_name, history_size=self.history_size, kick_grace=self.kick_grace)
            self.rooms[room_name] = room
        room.add(member)
        return room, member

    def leave(self, room: Room, member: Member) -> None:
        room.remove(member, "left")
        if not room.members and self.rooms.get(room.name) is room:
            del self.rooms[room.name]

    def kick(self, member: Member, code: int, reason: str) -> None:
        member.kick(code, reason, self.kick_grace)

    def summary(self) -> dict[str, int]:
        """Room name → number of members, for the ``/rooms`` endpoint."""
        return {name: len(room.members) for name, room in sorted(self.rooms.items())}
