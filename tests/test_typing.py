"""The package ships ``py.typed``: users' type checkers read our annotations, so mypy must
find them consistent (with the settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_passes_mypy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "trio_asgi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
