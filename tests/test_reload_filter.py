"""Which changed files make --reload restart the server (reload.ChangeFilter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_asgi.reload import ChangeFilter

ROOT = Path("/srv/project")


@pytest.mark.parametrize(
    ("path", "include", "exclude", "expected"),
    [
        ("app.py", (), (), True),
        ("pkg/sub/models.py", (), (), True),
        ("README.md", (), (), False),
        ("templates/page.html", ("*.html",), (), True),
        ("templates/page.html", ("templates/*.html",), (), True),
        ("static/page.html", ("templates/*.html",), (), False),
        # always ignored: hidden files and directories, bytecode, caches, backups
        (".venv/lib/python3.11/site-packages/x.py", (), (), False),
        (".git/hooks/pre-commit.py", (), (), False),
        ("pkg/__pycache__/models.cpython-311.py", (), (), False),
        ("pkg/models.pyc", (), (), False),
        ("app.py~", (), (), False),
        (".#app.py", (), (), False),
        # ...unless named by an include glob
        (".env", (".env",), (), True),
        # user excludes: the file, or any directory above it
        ("tests/test_app.py", (), ("tests",), False),
        ("tests/unit/test_app.py", (), ("tests",), False),
        ("generated_models.py", (), ("generated_*.py",), False),
        ("pkg/generated_models.py", (), ("generated_*.py",), False),
        ("src/app.py", (), ("tests",), True),
        # excludes beat includes
        ("build/page.html", ("*.html",), ("build",), False),
    ],
)
def test_change_filter(
    path: str, include: tuple[str, ...], exclude: tuple[str, ...], expected: bool
) -> None:
    change_filter = ChangeFilter([ROOT], include, exclude)
    assert change_filter.accepts(ROOT / path) is expected


def test_paths_are_relative_to_the_watched_directory() -> None:
    """A hidden directory *above* the watched one does not hide everything in it."""
    root = Path("/home/me/.projects/site")
    assert ChangeFilter([root]).accepts(root / "app.py")


def test_the_deepest_watched_directory_wins() -> None:
    change_filter = ChangeFilter([ROOT, ROOT / "vendor" / "lib"], exclude=("vendor",))
    assert not change_filter.accepts(ROOT / "vendor" / "other.py")
    assert change_filter.accepts(ROOT / "vendor" / "lib" / "mod.py")  # relative: mod.py


def test_called_the_way_watchfiles_calls_it() -> None:
    change_filter = ChangeFilter([ROOT])
    assert change_filter(object(), str(ROOT / "app.py")) is True
