"""Run a request's app in a ``contextvars`` context of its own, inside the connection's task.

Each connection serves its HTTP requests one after another in one task (a task per request
would cost a tenth of a small request), and a trio task has one context for its life. A
value one request's app set (the current user, a request id) would then be seen by the next
request on the connection, which a proxy may be forwarding for someone else. Servers that
start a task per request isolate requests for free; here each app runs in a copy of the
connection's context, entered at each step of its coroutine, the way asyncio runs a task:
0.5-0.8 µs per request in a microbenchmark, 1-3 % of a small request under load
(docs/performance.md).

Seeing each step also tells when the app waits, which is how ``handoff.py`` learns, at no
cost to the usual app, that one runs on after its response.
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


async def _awaiting(awaitable: Awaitable[T]) -> T:
    return await awaitable


@types.coroutine
def in_context(
    context: contextvars.Context,
    awaitable: Awaitable[T],
    on_wait: Callable[[], object],
) -> Generator[Any, Any, T]:
    """Await ``awaitable`` with ``context`` current whenever it runs, calling ``on_wait``
    each time it waits; trio's traps pass through untouched, and whatever trio sends or
    throws in is passed on."""
    # An ASGI app may return any awaitable (an object with ``__await__``, as class-based
    # endpoints do); only a coroutine can be driven a step at a time.
    coro = awaitable if type(awaitable) is types.CoroutineType else _awaiting(awaitable)
    step: Any = coro.send
    value: Any = None
    while True:
        try:
            trap = context.run(step, value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        on_wait()
        try:
            value = yield trap
        except BaseException as exc:  # (thrown in by trio, or GeneratorExit on close)
            step, value = coro.throw, exc
        else:
            step = coro.send
