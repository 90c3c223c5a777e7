"""pytest fixtures for testing ASGI apps with trio_asgi (registered through ``pytest11``).

Define an ``app`` fixture (and optionally ``asgi_config``), then ask for ``asgi_client``
(in-process, no sockets) or ``asgi_server`` (a live server on a loopback port). The tests run
under pytest-trio, so use ``trio_mode = true`` or mark them ``@pytest.mark.trio``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Generator
from typing import Any, Final

import pytest

from . import LiveServer, TestClient, serve_in_background

# TestClient's keyword options that are not server settings.
_CLIENT_ONLY_OPTIONS: Final = frozenset(
    name
    for name, parameter in inspect.signature(TestClient).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)

_OUR_FIXTURES = frozenset({"asgi_client", "asgi_server"})


@pytest.fixture
def asgi_config() -> dict[str, Any]:
    """Server settings for ``asgi_client``/``asgi_server``; override it to change them:
    any ``trio_asgi.Config`` field, and for ``asgi_client`` also ``TestClient`` options
    (``timeout``, ``raise_app_exceptions``...)."""
    return {}


@pytest.fixture
async def asgi_client(app: Any, asgi_config: dict[str, Any]) -> AsyncIterator[TestClient]:
    """An in-process :class:`~trio_asgi.testing.TestClient` for the test's ``app``."""
    async with TestClient(app, **asgi_config) as client:
        yield client


@pytest.fixture
async def asgi_server(app: Any, asgi_config: dict[str, Any]) -> AsyncIterator[LiveServer]:
    """The test's ``app`` served on 127.0.0.1 and a free port (``.url``, ``.ws_url``)."""
    # asgi_config may also hold TestClient's own options; the live server takes the rest
    # (and rejects a misspelt setting, as TestClient would).
    server_options = {
        key: value for key, value in asgi_config.items() if key not in _CLIENT_ONLY_OPTIONS
    }
    async with serve_in_background(app, **server_options) as server:
        yield server


def _single_leaf(group: BaseExceptionGroup) -> BaseException | None:
    """The only exception inside (possibly nested) single-member groups, if that is all."""
    current: BaseException = group
    while isinstance(current, BaseExceptionGroup):
        if len(current.exceptions) != 1:
            return None
        current = current.exceptions[0]
    return current


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """For tests using our fixtures, report a failed ``assert`` as itself, not wrapped in
    the one-member ExceptionGroup that the test's trio nursery puts around it."""
    try:
        return (yield)
    except BaseExceptionGroup as group:
        leaf = _single_leaf(group)
        if leaf is None or not _OUR_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            raise
        raise leaf from None
