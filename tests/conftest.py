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
