"""Fixtures for the framework interop tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from framework_helpers import Probe


@pytest.fixture
def probe() -> Probe:
    return Probe()


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """ERROR records of the server's logger. Attached to the logger itself rather than
    read through caplog, because the CLI turns propagation off once it configured logging."""
    collector = _Collector()
    logger = logging.getLogger("trio_asgi.error")
    level = logger.level
    if logger.getEffectiveLevel() > logging.ERROR:
        logger.setLevel(logging.ERROR)
    logger.addHandler(collector)
    try:
        yield collector.records
    finally:
        logger.removeHandler(collector)
        logger.setLevel(level)
