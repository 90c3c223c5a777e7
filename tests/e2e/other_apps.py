"""A small app for the worker tests: its lifespan startup fails."""

from __future__ import annotations

from typing import Any


async def failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})
