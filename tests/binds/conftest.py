"""Fixtures of the bind tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to about 100 bytes, and pytest's
    tmp_path can be longer than that."""
    path = Path(tempfile.mkdtemp(prefix="ta-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
