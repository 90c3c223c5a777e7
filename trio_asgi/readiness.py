"""Waiting for many plain sockets to become readable, with one epoll set of our own.

trio waits for a socket with a one-shot epoll registration, re-armed by an ``epoll_ctl``
call at every wait: a keep-alive request or a WebSocket message waits once, so each pays a
syscall (and trio's bookkeeping around it) on top of its read and its write. Here every
connection's socket is registered once, edge-triggered, in an epoll set of the server's: a
wait is a dictionary entry, and one task turns the set's events into wake-ups, a batch at a
time, waiting on the set's own descriptor with trio (``docs/performance.md``, change 21).

Edge-triggered means an event comes only when data arrives, so a socket may be waited for
only once a read found it empty or came back short (``Connection.receive_nowait``); one that
may hold more is read again after a plain checkpoint instead. An event that comes while
nobody waits is kept, and the next wait returns at once (the read may then find nothing,
and wait again).

Without the task running (a ``ServerState`` that no server runs, as in some tests) and
where epoll is missing, waits are trio's own.
"""

from __future__ import annotations

import select
from collections.abc import Awaitable
from typing import Final

import outcome
import trio

_EPOLL: Final = getattr(select, "epoll", None)
_EVENTS: Final = (
    getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLRDHUP", 0) | getattr(select, "EPOLLET", 0)
)
# Events taken per epoll_wait; more are taken at once by polling again.
_BATCH: Final = 1024


class ReadinessPoller:
    """One server's readable-socket waits. ``run()`` serves them while it runs."""

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._registered: set[int] = set()
        self._waiters: dict[int, trio.lowlevel.Task] = {}
        self._ready: set[int] = set()  # events that came while nobody waited

    @property
    def running(self) -> bool:
        return self._epoll is not None

    def watch(self, fd: int) -> bool:
        """Take ``fd`` (a new connection's socket) into the set; False when waits are not
        ours to serve (``run`` is not running, or the descriptor is already closed).

        Once per connection, not per descriptor number: a number is reused as soon as its
        socket is closed, and the new socket needs a registration of its own."""
        epoll = self._epoll
        if epoll is None:
            return False
        try:
            epoll.register(fd, _EVENTS)
        except FileExistsError:  # (the same socket again)
            epoll.modify(fd, _EVENTS)
        except OSError:
            return False
        self._registered.add(fd)
        self._ready.discard(fd)  # (a stale event of the number's previous socket)
        return True

    def wait(self, fd: int) -> Awaitable[None]:
        """What to await for watched ``fd`` to become readable, after a read found it
        empty or came back short; raises ``trio.ClosedResourceError`` if ``forget`` is
        called meanwhile. Trio's own wait once ``run`` has ended.

        A plain function returning the awaitable: an idle reader keeps no frame of ours.
        """
        if self._epoll is None:
            return trio.lowlevel.wait_readable(fd)  # noqa: ASYNC105 (awaited by the caller)
        ready = self._ready
        if fd in ready:
            ready.discard(fd)
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (awaited by the caller)
        waiters = self._waiters
        if fd in waiters:
            raise trio.BusyResourceError("another task is already reading this socket")
        waiters[fd] = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(_Abort(waiters, fd))  # noqa: ASYNC105

    def forget(self, fd: int) -> None:
        """``fd`` is about to be closed: drop its registration (the number may be reused at
        once), and a task waiting for it gets ``trio.ClosedResourceError``, as trio does."""
        self._ready.discard(fd)
        if fd in self._registered:
            self._registered.discard(fd)
            if self._epoll is not None:
                try:
                    self._epoll.unregister(fd)
                except OSError:
                    pass
        task = self._waiters.pop(fd, None)
        if task is not None:
            trio.lowlevel.reschedule(task, outcome.Error(trio.ClosedResourceError()))

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if _EPOLL is None:
            task_status.started()
            return
        epoll = _EPOLL()
        waiters = self._waiters
        ready = self._ready
        reschedule = trio.lowlevel.reschedule
        self._epoll = epoll
        try:
            task_status.started()
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                events = epoll.poll(0, _BATCH)
                while events:
                    for fd, _ in events:
                        task = waiters.pop(fd, None)
                        if task is not None:
                            reschedule(task)
                        else:
                            ready.add(fd)
                    events = epoll.poll(0, _BATCH) if len(events) == _BATCH else ()
        finally:
            self._epoll = None
            epoll.close()
            self._registered.clear()
            ready.clear()
            # Whoever still waits wakes up, reads and waits again: with trio, from now on.
            for task in waiters.values():
                reschedule(task)
            waiters.clear()


class _Abort:
    """A cancelled wait takes its entry back (the abort function trio calls)."""

    __slots__ = ("_fd", "_waiters")

    def __init__(self, waiters: dict[int, trio.lowlevel.Task], fd: int) -> None:
        self._waiters = waiters
        self._fd = fd

    def __call__(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._waiters.pop(self._fd, None)
        return trio.lowlevel.Abort.SUCCEEDED
