"""One timer for the server's connections: WebSocket keepalive pings and close-handshake
deadlines, and the keep-alive timeout of HTTP connections waiting for their next request.
A heap of due times, one task.

A keepalive task per connection costs a task, two cancel scopes and their frames: about a
third of the memory of an idle WebSocket, and two cancel scopes per handshake. Here each
connection is a heap entry that wakes this task when it is due; the work a tick needs (a
ping to write, a connection to close) is handed back to the connection's own nursery.

The heap holds numbers only, ``(due, order, key)``: the targets are looked up by key. Such
entries are invisible to the cyclic garbage collector, which walks every live object of a
server holding thousands of idle WebSockets on each full collection; an entry that named its
target (through a weak reference, so that ended sessions are not kept) was two more objects
per idle connection for it to walk.

A target is held while it has entries in the heap, and no longer once ``forget`` is called:
an ended session, its connection and scope are freed at once, not up to a ping interval
later (with many short-lived WebSockets, thousands of them). Entries of a forgotten target
are skipped when they come due.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio


class Ticking(Protocol):
    """What a Heartbeat can tick: a ``tick`` and a ``heartbeat_key`` slot (0 until first
    scheduled; the Heartbeat sets it)."""

    heartbeat_key: int

    def tick(self, now: float) -> None:
        """Called at (or after) the time it was scheduled for; may schedule again."""


class Heartbeat:
    """A scheduler of ``tick(now)`` calls; ``run()`` must be running for ticks to happen."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._order = itertools.count()  # ties are served first come, first served
        self._keys = itertools.count(1)
        self._targets: dict[int, Ticking] = {}  # by key, while scheduled and not forgotten
        self._pending: dict[int, int] = {}  # entries in the heap, by key
        self._sleep: trio.CancelScope | None = None

    def schedule(self, when: float, target: Ticking) -> None:
        key = target.heartbeat_key
        if not key:
            key = target.heartbeat_key = next(self._keys)
        self._targets[key] = target
        self._pending[key] = self._pending.get(key, 0) + 1
        heapq.heappush(self._heap, (when, next(self._order), key))
        sleep = self._sleep
        if sleep is not None and when < sleep.deadline:
            sleep.deadline = when

    def forget(self, target: Ticking) -> None:
        """``target`` has ended: no more ticks, and let it go now."""
        self._targets.pop(target.heartbeat_key, None)

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def targets(self) -> int:
        """How many targets are held."""
        return len(self._targets)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        heap = self._heap
        targets = self._targets
        pending = self._pending
        task_status.started()
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, key = heapq.heappop(heap)
                left = pending[key] - 1
                if left:
                    pending[key] = left
                    target = targets.get(key)
                else:  # its last entry: held no longer, unless tick schedules it again
                    del pending[key]
                    target = targets.pop(key, None)
                if target is not None:  # (None: forgotten)
                    target.tick(now)  # closed connections simply do not schedule again
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as sleep:
                self._sleep = sleep
                try:
                    await trio.sleep_forever()
                finally:
                    self._sleep = None
