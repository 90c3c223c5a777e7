"""A lock for the tasks that share one connection (see ``FIFOLock``)."""

from __future__ import annotations

import trio


class FIFOLock:
    """A FIFO lock for the tasks of one connection, cheap when uncontended: its writers, and
    an app's tasks reading one request body.

    ``trio.StrictFIFOLock`` always checkpoints and tracks its owner; on the per-message hot
    path that was a tenth of the cost of an echoed WebSocket message. Here taking a free lock
    is one attribute write (``try_acquire``), and a release hands the lock straight to the
    longest waiter, so tasks get it (and writes go out) in the order they asked.
    """

    __slots__ = ("_waiters", "locked")

    def __init__(self) -> None:
        self.locked = False
        # Created on first contention: most connections never see any, and thousands of
        # idle WebSockets each keep a write lock.
        self._waiters: trio.lowlevel.ParkingLot | None = None

    def try_acquire(self) -> bool:
        if self.locked:
            return False
        self.locked = True
        return True

    async def acquire(self) -> None:
        if self.locked:
            if self._waiters is None:
                self._waiters = trio.lowlevel.ParkingLot()
            await self._waiters.park()  # woken holding the lock (see release)
        else:
            self.locked = True

    def release(self) -> None:
        if self._waiters:
            self._waiters.unpark()  # ownership passes to the next waiter
        else:
            self.locked = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
