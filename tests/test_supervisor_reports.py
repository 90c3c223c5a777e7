"""The supervisor hears every report a worker wrote, also one written just before it exited.

A worker that reaches --limit-max-requests reports ``retiring`` and exits as soon as its
connections are drained, often within a millisecond. Should the report still be unread when
the exit is noticed, the supervisor would take the exit for a crash: a restart after a
backoff that grows with every recycled worker, instead of an immediate replacement.
"""

from __future__ import annotations

import logging
import socket
import sys

import pytest
import trio

from trio_asgi import Config
from trio_asgi.supervisor import Supervisor, Worker
from trio_asgi.worker import RETIRING


async def exited_worker(report: str) -> Worker:
    """A process that wrote ``report`` on its control socket and has exited already."""
    ours, theirs = socket.socketpair()
    fd = theirs.fileno()
    line = report.encode() + b"\n"
    code = f"import os; os.write({fd}, {line!r})"
    process = await trio.lowlevel.open_process([sys.executable, "-S", "-c", code], pass_fds=[fd])
    theirs.close()
    await process.wait()
    control = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    return Worker(slot=0, process=process, control=control)


async def test_a_report_written_just_before_exit_is_read(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor("app:app", Config(workers=1))
    supervisor.slots[0].current = None  # (its replacement is running: nothing to restart)
    # Whether the report was read before the exit was noticed depends on the scheduler's
    # order, so several times.
    for _ in range(20):
        worker = await exited_worker(RETIRING)
        with caplog.at_level(logging.INFO, logger="trio_asgi"):
            async with trio.open_nursery() as nursery:
                supervisor._nursery = supervisor._tasks = nursery
                await supervisor._watch_worker(worker)
        assert worker.retiring
        assert worker.exited.is_set()
        # Taken for a worker that left by itself, not for a crash (which says "exited" or
        # "crashed" and schedules a restart).
        assert f"Worker {worker.pid} stopped" in caplog.text
