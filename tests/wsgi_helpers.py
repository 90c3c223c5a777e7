"""Tools shared by the WSGI tests: hold requests inside a WSGI app without sleeping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import trio

# Real seconds a test may wait for a worker thread before it fails instead of hanging.
# Threads and MockClock do not mix (the clock jumps while a thread works), so WSGI tests
# run on the real clock and only ever wait for events, never for time to pass.
THREAD_WAIT = 10.0


async def wait_in_thread(predicate: Callable[[], bool], condition: threading.Condition) -> None:
    """Wait, without blocking the event loop, until ``predicate()`` holds under ``condition``."""

    def wait() -> bool:
        with condition:
            return condition.wait_for(predicate, timeout=THREAD_WAIT)

    assert await trio.to_thread.run_sync(wait), "timed out waiting for the WSGI app's threads"


class Gate:
    """Requests that call ``pass_through()`` wait inside the app until ``release()``.

    ``inside`` counts the threads waiting right now, ``peak`` the most there ever were.
    """

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.inside = 0
        self.entered = 0
        self.peak = 0
        self.opened = False

    def pass_through(self) -> None:
        with self.condition:
            self.inside += 1
            self.entered += 1
            self.peak = max(self.peak, self.inside)
            self.condition.notify_all()
            self.condition.wait_for(lambda: self.opened, timeout=THREAD_WAIT)
            self.inside -= 1

    async def wait_inside(self, count: int) -> None:
        await wait_in_thread(lambda: self.inside >= count, self.condition)

    def release(self) -> None:
        with self.condition:
            self.opened = True
            self.condition.notify_all()


class Flag:
    """A threading.Event a trio test can wait for."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.value: Any = None

    def set(self, value: Any = True) -> None:
        self.value = value
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> Any:
        assert await trio.to_thread.run_sync(self._event.wait, THREAD_WAIT), "flag never set"
        return self.value
