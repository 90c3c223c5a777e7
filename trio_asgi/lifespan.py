"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last."""

from __future__ import annotations

import logging
import math
from typing import Any

import trio

from ._types import ASGIApp, Message
from .asyncio_apps import ASYNCIO_HINT, add_asyncio_hint, looks_like_asyncio_on_trio
from .config import LifespanMode
from .errors import ASGIProtocolError, StartupFailed

log = logging.getLogger("trio_asgi.error")


class Lifespan:
    """Runs the app's ``lifespan`` scope as one task for the whole life of the server."""

    def __init__(
        self,
        app: ASGIApp,
        mode: LifespanMode,
        state: dict[str, Any],
        *,
        shutdown_limit: float = math.inf,
    ) -> None:
        self._app = app
        self._mode = mode
        self._shutdown_limit = shutdown_limit  # seconds (--timeout-lifespan-shutdown)
        self.state = state
        self.running = False  # the app is inside the lifespan protocol right now
        self._startup_sent = False
        self._startup_done = trio.Event()
        self._startup_error: str | None = None
        self._shutdown_requested = trio.Event()
        self._shutdown_sent = False
        self._shutdown_done = trio.Event()
        self.shutdown_failure: str | None = None

    async def startup(self, nursery: trio.Nursery) -> None:
        """Run startup to its end; raise ``StartupFailed`` if the app reports failure."""
        if self._mode == "off":
            return
        self.running = True
        nursery.start_soon(self._main)
        await self._startup_done.wait()
        if self._startup_error is not None:
            raise StartupFailed(self._startup_error)

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app's answer, at most the shutdown
        limit (then the caller cancels the lifespan task)."""
        if not self.running:
            return
        self._shutdown_requested.set()
        limit = self._shutdown_limit
        with trio.move_on_after(limit) as waited:
            await self._shutdown_done.wait()
        if waited.cancelled_caught:
            self.shutdown_failure = f"did not finish within {limit:g} s"
            log.error(
                "Application shutdown did not finish within %g s "
                "(--timeout-lifespan-shutdown); cancelled",
                limit,
            )

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self._app(scope, self._receive, self._send)
        except Exception as exc:
            add_asyncio_hint(exc)
            if self._startup_done.is_set():
                log.exception("Exception in the ASGI lifespan protocol", exc_info=exc)
            elif self._mode == "auto":
                log.info("ASGI 'lifespan' protocol appears unsupported; continuing without it.")
            else:
                log.exception("Exception in the ASGI lifespan protocol", exc_info=exc)
                self._startup_error = f"lifespan startup raised {type(exc).__name__}: {exc}"
        else:
            if not self._startup_done.is_set():
                if self._mode == "auto":
                    log.info("ASGI app returned from lifespan without starting up; ignoring it.")
                else:
                    self._startup_error = "the app returned before lifespan.startup.complete"
        finally:
            self.running = False
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> Message:
        if not self._startup_sent:
            self._startup_sent = True
            return {"type": "lifespan.startup"}
        await self._shutdown_requested.wait()
        if self._shutdown_sent:
            await trio.sleep_forever()  # nothing comes after shutdown
        self._shutdown_sent = True
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        message_type = message.get("type") if isinstance(message, dict) else None
        if message_type == "lifespan.startup.complete" and not self._startup_done.is_set():
            self._startup_done.set()
        elif message_type == "lifespan.startup.failed" and not self._startup_done.is_set():
            text = message.get("message") or "no message given"
            log.error("Application startup failed: %s", text)
            if looks_like_asyncio_on_trio(str(text)):
                log.error(ASYNCIO_HINT)
            self._startup_error = str(text)
            self._startup_done.set()
        elif message_type == "lifespan.shutdown.complete" and self._shutdown_requested.is_set():
            self._shutdown_done.set()
        elif message_type == "lifespan.shutdown.failed" and self._shutdown_requested.is_set():
            self.shutdown_failure = str(message.get("message") or "no message given")
            log.error("Application shutdown failed: %s", self.shutdown_failure)
            if looks_like_asyncio_on_trio(self.shutdown_failure):
                log.error(ASYNCIO_HINT)
            self._shutdown_done.set()
        else:
            raise ASGIProtocolError(f"unexpected lifespan message {message!r}")
        await trio.lowlevel.checkpoint()
