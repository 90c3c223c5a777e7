"""Helpers shared by the test modules."""

from __future__ import annotations

from typing import Any

import pytest

from trio_asgi.testing import MemoryStream


async def raw_exchange(stream: MemoryStream, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read everything until the server closes."""
    await stream.send_all(data)
    return await stream.receive_until_eof()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def anyio_backend() -> str:  # for plugins that look for it; we only run on trio
    return "trio"


def header(message: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in message.get("headers", []):
        if key == name:
            return bytes(value)
    return None


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    """Tests that run the CLI configure trio_asgi's loggers; undo that for the next test
    (caplog relies on records propagating to the root logger)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("trio_asgi.error", "trio_asgi.access")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    yield
    for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.setLevel(level)
