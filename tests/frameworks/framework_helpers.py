"""Shared by the framework interop tests: a probe the apps report into, and thread helpers.

The frameworks run in-process on a live loopback server (``serve_in_background``), on the
test's own trio loop, so an app can set a ``trio.Event`` that the test waits on: no sleeping
and no polling to find out what the app saw.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import trio

TIMEOUT = 10.0
T = TypeVar("T")

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


class Probe:
    """Facts recorded by the app under test, each awaitable by name."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._arrived: defaultdict[str, trio.Event] = defaultdict(trio.Event)

    def record(self, key: str, value: Any = True) -> None:
        self.values[key] = value
        self._arrived[key].set()

    async def wait(self, key: str, timeout: float = TIMEOUT) -> Any:
        with trio.fail_after(timeout):
            await self._arrived[key].wait()
        return self.values[key]

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The app, recording ``"raised /path"`` (the exception) or ``"returned /path"``."""

        async def recorded(scope: Scope, receive: Any, send: Any) -> None:
            where = scope.get("path", scope["type"])
            try:
                await app(scope, receive, send)
            except BaseException as exc:
                self.record(f"raised {where}", exc)
                raise
            self.record(f"returned {where}")

        return recorded


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking client in a worker thread (its own timeouts bound it)."""
    return await trio.to_thread.run_sync(functools.partial(function, *args))
