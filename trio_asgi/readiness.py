"""Waiting for many plain sockets at once, with one epoll set of the server's, while busy.

trio waits for a socket with a one-shot epoll registration, re-armed by an ``epoll_ctl``
call at every wait: each keep-alive request or WebSocket message pays that syscall (and
trio's bookkeeping around it) on top of its read and its write. Here every connection's
socket is also registered once, edge-triggered, in an epoll set of the server's; one task
waits on the set with trio and turns its events into wake-ups, a batch at a time, so a wait
is a dictionary entry (``docs/performance.md``, change 24).

That pays only when many sockets become ready together: every wake-up takes a hop through
the set's task (its own ``epoll_wait``, the set's re-arm, one more pass of trio's loop), and
a lone client lost 14 % of its requests per second to it. So connections wait here only
while the server is *busy*:

- idle (the start): connections wait with trio. Every ``probe_every`` seconds the task
  clears the set, waits for the next event in it and counts the sockets that still have
  unread data when it runs (epoll leaves out those read meanwhile); ``enter_at`` or more
  make the server busy;
- busy: the task counts the sockets of each wake-up, and when their running mean falls
  below ``leave_below`` the server is idle again; whoever waits here is woken, reads, and
  waits with trio from then on.

Edge-triggered means an event comes only when data arrives, so a socket may wait here only
once a read found it empty or came back short (``Connection.receive_nowait``); one that may
hold more waits with trio. An event that comes while nobody waits here is kept, and the
next wait here returns at once (the read may then find nothing, and wait again). Without
the task running (a ``ServerState`` that no server runs) and where epoll is missing, all
waits are trio's.
"""

from __future__ import annotations

import select
from collections.abc import Awaitable
from typing import Final

import trio

_EPOLL: Final = getattr(select, "epoll", None)
_EVENTS: Final = (
    getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLRDHUP", 0) | getattr(select, "EPOLLET", 0)
)
# Events taken per epoll_wait; more are taken at once by polling again.
_BATCH: Final = 1024

# How fast the mean load follows the wake-ups: each weighs this much.
_WEIGHT: Final = 1 / 8


class ReadinessSet:
    """One server's socket waits while it is busy. ``run()`` serves them while it runs."""

    # Sockets ready together at a probe that make the server busy, and the mean per wake-up
    # below which it is idle again (apart, so that it does not flap).
    enter_at: int = 4
    leave_below: float = 2.0
    # Seconds between probes while idle. A probe waits for an event in the set, so it does
    # not wake an idle server.
    probe_every: float = 0.02

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._waiters: dict[int, trio.lowlevel.Task] = {}
        self._ready: set[int] = set()  # events that came while nobody waited here
        self._load = 0.0  # mean sockets per wake-up, while busy
        # Connections wait here (``wait``), not with trio; only while ``run`` runs.
        self.busy = False

    @property
    def running(self) -> bool:
        return self._epoll is not None

    def watch(self, fd: int) -> bool:
        """Take ``fd`` (a new connection's socket) into the set; False when it is not ours
        to watch (``run`` is not running, or the descriptor is already closed).

        Once per connection, not per descriptor number: a number is reused as soon as its
        socket is closed, and the new socket needs a registration of its own."""
        epoll = self._epoll
        if epoll is None:
            return False
        try:
            try:
                epoll.register(fd, _EVENTS)
            except FileExistsError:  # (the number of a socket closed without ``forget``)
                epoll.modify(fd, _EVENTS)
        except OSError:
            return False
        self._ready.discard(fd)  # (a stale event of the number's previous socket)
        return True

    def wait(self, fd: int) -> Awaitable[None]:
        """What to await for watched ``fd`` to become readable, after a read found it empty
        or came back short. The wait may end without data (see the module docstring), and
        ends when ``forget`` is called: then the caller's connection is closed.

        A plain function returning the awaitable: an idle reader keeps no frame of ours.
        """
        if not self.busy:
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
        once) and wake whoever waits for it here."""
        self._ready.discard(fd)
        epoll = self._epoll
        if epoll is not None:
            try:
                epoll.unregister(fd)
            except OSError:  # pragma: no cover - (registered once, forgotten once)
                pass
        task = self._waiters.pop(fd, None)
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if _EPOLL is None:  # pragma: no cover - (Linux has epoll)
            task_status.started()
            return
        epoll = _EPOLL()
        self._epoll = epoll
        descriptor = epoll.fileno()
        try:
            task_status.started()
            while True:
                if self.busy:
                    await trio.lowlevel.wait_readable(descriptor)
                    self._load += (self._take_events(epoll) - self._load) * _WEIGHT
                    if self._load < self.leave_below:
                        self.busy = False
                        self._wake_all()
                else:
                    await trio.sleep(self.probe_every)
                    self._take_events(epoll)  # (what came since the last probe)
                    await trio.lowlevel.wait_readable(descriptor)
                    together = self._take_events(epoll)
                    if together >= self.enter_at:
                        self.busy = True
                        self._load = together
        finally:
            self._epoll = None
            self.busy = False
            epoll.close()
            self._ready.clear()
            self._wake_all()  # (each reads, and waits with trio from now on)

    def _take_events(self, epoll: select.epoll) -> int:
        """Wake the waiters of every socket with an event; keep the others' events. Returns
        how many sockets had one."""
        waiters = self._waiters
        ready = self._ready
        reschedule = trio.lowlevel.reschedule
        taken = 0
        events = epoll.poll(0, _BATCH)
        while events:
            for fd, _ in events:
                task = waiters.pop(fd, None)
                if task is not None:
                    reschedule(task)
                else:
                    ready.add(fd)
            taken += len(events)
            events = epoll.poll(0, _BATCH) if len(events) == _BATCH else []
        return taken

    def _wake_all(self) -> None:
        for task in self._waiters.values():
            trio.lowlevel.reschedule(task)
        self._waiters.clear()


class _Abort:
    """A cancelled wait takes its entry back (the abort function trio calls)."""

    __slots__ = ("_fd", "_waiters")

    def __init__(self, waiters: dict[int, trio.lowlevel.Task], fd: int) -> None:
        self._waiters = waiters
        self._fd = fd

    def __call__(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._waiters.pop(self._fd, None)
        return trio.lowlevel.Abort.SUCCEEDED
