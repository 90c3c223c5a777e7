"""One timer for every WebSocket keepalive on the server: a heap of due times, one task.

A keepalive task per connection costs a task, two cancel scopes and their frames: about a
third of the memory of an idle WebSocket, and two cancel scopes per handshake. Here each
connection is a heap entry that wakes this task when it is due; the work a tick needs (a
ping to write, a connection to close) is handed back to the connection's own nursery.

Entries hold their targets weakly: a session that ended before its next tick would otherwise
be kept, with its connection and scope, for up to a ping interval (with many short-lived
WebSockets, thousands of dead sessions).
"""

from __future__ import annotations

import heapq
import itertools
import math
import weakref
from typing import Protocol

import trio


class Ticking(Protocol):
    """Anything weakly referenceable with a ``tick``."""

    def tick(self, now: float) -> None:
        """Called at (or after) the time it was scheduled for; may schedule again."""


class Heartbeat:
    """A scheduler of ``tick(now)`` calls; ``run()`` must be running for ticks to happen."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[Ticking]]] = []
        self._order = itertools.count()  # ties are served first come, first served
        self._sleep: trio.CancelScope | None = None

    def schedule(self, when: float, target: Ticking) -> None:
        heapq.heappush(self._heap, (when, next(self._order), weakref.ref(target)))
        sleep = self._sleep
        if sleep is not None and when < sleep.deadline:
            sleep.deadline = when

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        heap = self._heap
        task_status.started()
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, ref = heapq.heappop(heap)
                target = ref()
                if target is not None:  # (gone: the session ended and was freed)
                    target.tick(now)  # closed connections simply do not schedule again
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as sleep:
                self._sleep = sleep
                try:
                    await trio.sleep_forever()
                finally:
                    self._sleep = None
