"""``--reload``: watch the source files and ask the supervisor for a restart when they change.

Only the supervisor imports this module, and only with ``--reload``; ``watchfiles`` (the
``trio-asgi[reload]`` extra) is imported when watching starts. The restart itself is the
supervisor's rolling restart with one worker: the new code starts while the old worker still
serves, so a file saved with a syntax error leaves the previous version running.

Which changes count (``ChangeFilter``): paths are taken relative to the watched directory and
matched with ``PurePath.match`` globs, which match from the right: ``*.py`` is any Python file,
``templates/*.html`` any ``.html`` file in a ``templates`` directory. A change counts when the
file matches ``*.py`` or an ``--reload-include`` glob, and neither the file nor a directory
above it matches an ``--reload-exclude`` glob. ``DEFAULT_EXCLUDE`` is skipped as well, unless
the file matches an ``--reload-include`` glob (``--reload-include .env`` works).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import Any, Final

import trio

from .config import Config
from .errors import ConfigError

log = logging.getLogger("trio_asgi.error")

DEFAULT_INCLUDE: Final = ("*.py",)
# Version control, virtualenvs and caches (hidden), bytecode, editor backups.
DEFAULT_EXCLUDE: Final = (".*", "__pycache__", "*.py[cod]", "*~")
# watchfiles groups the events of one save (editors write, rename, chmod...) until nothing
# happened for STEP_MS, for at most DEBOUNCE_MS.
STEP_MS: Final = 50
DEBOUNCE_MS: Final = 1600
# The watcher wakes this often without changes; its first wake-up is also the proof that the
# directories are being watched, which the supervisor waits for before starting the app.
IDLE_WAKEUP_MS: Final = 200


class ChangeFilter:
    """Decides whether a changed path should restart the server (module docstring)."""

    def __init__(
        self, roots: Iterable[Path], include: Iterable[str] = (), exclude: Iterable[str] = ()
    ) -> None:
        # Deepest first, so a path is relative to the most specific watched directory.
        self.roots = sorted((Path(root) for root in roots), key=lambda p: len(p.parts))[::-1]
        self.include = tuple(include)
        self.exclude = tuple(exclude)

    def __call__(self, change: Any, path: str) -> bool:
        """The signature watchfiles calls a filter with."""
        return self.accepts(path)

    def accepts(self, path: str | Path) -> bool:
        relative = self._relative(Path(path))
        if _matches_any(relative, self.exclude, with_parents=True):
            return False
        if _matches_any(relative, self.include):
            return True
        if _matches_any(relative, DEFAULT_EXCLUDE, with_parents=True):
            return False
        return _matches_any(relative, DEFAULT_INCLUDE)

    def _relative(self, path: Path) -> PurePath:
        for root in self.roots:
            if path.is_relative_to(root):
                return path.relative_to(root)
        return path


def _matches_any(path: PurePath, patterns: Iterable[str], *, with_parents: bool = False) -> bool:
    candidates = [path]
    if with_parents:
        candidates += [parent for parent in path.parents if parent.name]
    return any(candidate.match(pattern) for pattern in patterns for candidate in candidates)


class Reloader:
    """Watches ``dirs``; ``run`` calls ``on_change(paths)`` for every batch of changes."""

    def __init__(self, dirs: list[Path], change_filter: ChangeFilter) -> None:
        self.dirs = dirs
        self.filter = change_filter

    @classmethod
    def from_config(cls, config: Config) -> Reloader:
        """Check everything before anything is bound: ``ConfigError`` with one line."""
        try:
            import watchfiles  # noqa: F401 - the check; run() uses it
        except ImportError:
            raise ConfigError(
                "reload needs the watchfiles package: pip install 'trio-asgi[reload]'"
            ) from None
        dirs = []
        setting = "reload_dir" if config.reload_dir else "app_dir"  # (watched by default)
        for name in config.reload_dir or (config.app_dir,):
            path = Path(name).resolve()
            if not path.is_dir():
                raise ConfigError(f"{setting} {name!r} is not a directory")
            dirs.append(path)
        return cls(dirs, ChangeFilter(dirs, config.reload_include, config.reload_exclude))

    async def run(
        self,
        on_change: Callable[[list[str]], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Watch until cancelled; ``task_status.started()`` once the directories are watched.

        watchfiles blocks, so it runs in a thread; that thread wakes every IDLE_WAKEUP_MS,
        and stops at its next wake-up once ``stop`` is set.
        """
        import watchfiles

        token = trio.lowlevel.current_trio_token()
        stop = threading.Event()
        watching = trio.Event()

        def watch() -> None:
            changes_seen = watchfiles.watch(
                *self.dirs,
                watch_filter=self.filter,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=stop,
                rust_timeout=IDLE_WAKEUP_MS,
                yield_on_timeout=True,
                raise_interrupt=False,
            )
            first = True
            try:
                for changes in changes_seen:
                    if first:  # the first yield: the directories are being watched
                        trio.from_thread.run_sync(watching.set, trio_token=token)
                        first = False
                    if changes:
                        paths = sorted({path for _change, path in changes})
                        trio.from_thread.run_sync(on_change, paths, trio_token=token)
            except trio.RunFinishedError:
                pass  # the server is gone; so is our reason to watch

        async def watch_in_thread() -> None:
            try:
                await trio.to_thread.run_sync(watch, abandon_on_cancel=True)
            except Exception as exc:  # a watcher failure must not take the server down
                log.error("Watching for changes failed (%s); --reload is off now", exc)
            watching.set()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_in_thread)
                await watching.wait()
                task_status.started()
        finally:
            stop.set()
