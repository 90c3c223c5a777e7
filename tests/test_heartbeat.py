"""The server's one timer: ticks come when due, and it holds a target only while that target
has entries in its heap and has not been forgotten (an ended session or connection is not
kept, with its scope and buffers, until its next tick would have come)."""

from __future__ import annotations

from typing import Any

import trio

from trio_asgi.heartbeat import Heartbeat

from .conftest import status_of
from .test_keep_alive_timer import REQUEST, connection_pair, read_response


class Target:
    def __init__(self, again: float | None = None) -> None:
        self.heartbeat_key = 0
        self.ticks: list[float] = []
        self.again = again  # schedule once more, this long after a tick
        self.heartbeat: Heartbeat | None = None

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        if self.again is not None and self.heartbeat is not None:
            self.heartbeat.schedule(now + self.again, self)
            self.again = None


async def test_ticks_come_in_order_and_each_entry_ticks(autojump_clock: Any) -> None:
    heartbeat = Heartbeat()
    first, second = Target(), Target()
    async with trio.open_nursery() as nursery:
        await nursery.start(heartbeat.run)
        heartbeat.schedule(2, second)
        heartbeat.schedule(1, first)
        heartbeat.schedule(3, first)  # two entries: both tick
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert first.ticks == [1, 3]
    assert second.ticks == [2]
    assert heartbeat.targets == 0 and len(heartbeat) == 0


async def test_a_target_is_held_until_its_last_entry_ticks(autojump_clock: Any) -> None:
    heartbeat = Heartbeat()
    target = Target(again=4)
    target.heartbeat = heartbeat
    async with trio.open_nursery() as nursery:
        await nursery.start(heartbeat.run)
        heartbeat.schedule(1, target)
        await trio.sleep(2)
        assert target.ticks == [1] and heartbeat.targets == 1  # (it scheduled again)
        await trio.sleep(4)
        assert target.ticks == [1, 5]
        assert heartbeat.targets == 0  # no entry left: nothing holds it
        nursery.cancel_scope.cancel()


async def test_a_forgotten_target_gets_no_tick_and_is_let_go_at_once(
    autojump_clock: Any,
) -> None:
    heartbeat = Heartbeat()
    target, other = Target(), Target()
    async with trio.open_nursery() as nursery:
        await nursery.start(heartbeat.run)
        heartbeat.schedule(1, target)
        heartbeat.schedule(2, target)
        heartbeat.schedule(1.5, other)
        heartbeat.forget(target)
        assert heartbeat.targets == 1  # (its two entries are still in the heap)
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert target.ticks == []
    assert other.ticks == [1.5]
    assert len(heartbeat) == 0


async def test_a_closed_keep_alive_connection_is_not_held_until_its_timeout(
    autojump_clock: Any,
) -> None:
    state, conn, peer = connection_pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(state.heartbeat.run)
        served = trio.Event()

        async def serve() -> None:
            await conn.serve()
            served.set()

        nursery.start_soon(serve)
        await peer.send_all(REQUEST)
        assert status_of(await read_response(peer)) == 200
        await trio.testing.wait_all_tasks_blocked()
        assert state.heartbeat.targets == 1  # waiting for the next request: held
        await peer.aclose()
        await served.wait()
        assert trio.current_time() < 1  # (closed by the client, not by the timeout)
        assert len(state.heartbeat) == 1  # its entry is still in the heap...
        assert state.heartbeat.targets == 0  # ...but the connection is let go already
        nursery.cancel_scope.cancel()
