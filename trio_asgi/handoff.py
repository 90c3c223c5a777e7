"""Apps that run on after their response: their connection's next request goes to a new task.

A connection runs each request's app in its own task, one request after another: a task per
request would cost about 8 µs, a tenth of a small request. But an app may keep running once
its response is complete (Starlette's ``BackgroundTasks``, a final flush of logs or
metrics), and its client, which has its answer, sends the next request on the same
connection; Uvicorn and Hypercorn serve that at once.

So a connection whose app waits for something after its response went out is noted here
(``HTTPCycle._waits``, seen by the step-by-step driver of ``asgi/context.py``, or a final
write from another task of the app), and one task per server looks at the notes
``HANDOFF_AFTER`` later: a connection whose app has not returned by then goes on serving
in a new task of the connection's nursery, while the old task finishes the app. The usual
app returns right after its response without waiting, and costs nothing here: no note,
and no wakeup of the checking task (each costs about 20 µs).
"""

from __future__ import annotations

import math
from typing import Final, Protocol

import trio

# How long an app may run on after its response before the next request on its connection
# gets a task of its own: short against any background work worth the name, long enough
# for the few awaits that middleware does after a response, and at most one wakeup of the
# checking task per interval under load.
HANDOFF_AFTER: Final = 0.001


class Handoff(Protocol):
    """A connection whose response went out while its app may still run."""

    def hand_off(self) -> None:
        """Serve the connection's next requests from a new task, if the app still runs."""


class Handoffs:
    """Connections whose response went out in the last ``HANDOFF_AFTER``; ``run()`` must be
    running.

    Connections, not requests, are noted: a connection lives on anyway, while a finished
    request kept alive until the next check would be seen (and promoted) by the garbage
    collector, with everything it holds.
    """

    def __init__(self) -> None:
        self._noted: list[Handoff] = []
        self._sleep: trio.CancelScope | None = None

    def note(self, connection: Handoff) -> None:
        noted = self._noted
        noted.append(connection)
        sleep = self._sleep
        if len(noted) == 1 and sleep is not None:
            sleep.deadline = trio.current_time() + HANDOFF_AFTER

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.CancelScope(
                deadline=trio.current_time() + HANDOFF_AFTER if self._noted else math.inf
            ) as sleep:
                self._sleep = sleep
                try:
                    await trio.sleep_forever()
                finally:
                    self._sleep = None
            noted, self._noted = self._noted, []
            for connection in noted:
                connection.hand_off()
