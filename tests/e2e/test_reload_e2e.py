"""--reload: edit a file of a running app, and the server serves the new code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import trio

from .supervised import TIMEOUT, Supervised, http_get, supervised

pytestmark = pytest.mark.e2e

pytest.importorskip("watchfiles")

APP = textwrap.dedent(
    """
    VERSION = {version!r}

    async def app(scope, receive, send):
        body = VERSION.encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({{"type": "http.response.start", "status": 200, "headers": headers}})
        await send({{"type": "http.response.body", "body": body}})
    """
)


def write_app(directory: Path, version: str) -> None:
    # Same size every time, and often within the same second: a stale bytecode cache
    # (validated by source mtime and size) would serve the old version.
    (directory / "reloadable.py").write_text(APP.format(version=version))


async def version(server: Supervised) -> str:
    status, body = await http_get(server.host, server.port, "/")
    assert status == 200
    return body.decode()


async def reloaded(server: Supervised, mark: int) -> None:
    """Wait until the worker that served before ``mark`` has stopped."""
    [old] = server.ready_pids()[-1:]
    await server.wait_for(r"Reloading: .* changed", since=mark)
    await server.wait_for(rf"Worker {old} stopped", since=mark)


async def test_edits_are_served_and_a_broken_edit_keeps_the_old_code(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    args = ("reloadable:app", "--reload", "--lifespan", "off")
    async with supervised(*args, cwd=tmp_path) as server:
        assert f"reloading on changes in {tmp_path}" in server.log
        assert await version(server) == "v1"

        mark = len(server.log)
        write_app(tmp_path, "v2")
        await reloaded(server, mark)
        assert "Reloading: reloadable.py changed" in server.log[mark:]
        assert await version(server) == "v2"

        mark = len(server.log)
        (tmp_path / "reloadable.py").write_text("def broken(:\n")
        await server.wait_for(
            r"Rolling restart stopped: .* 1 worker\(s\) keep running the previous code; "
            r"waiting for file changes",
            since=mark,
        )
        assert await version(server) == "v2"

        mark = len(server.log)
        write_app(tmp_path, "v3")
        await reloaded(server, mark)
        assert await version(server) == "v3"
    assert server.process.returncode == 0
    assert not (tmp_path / "__pycache__").exists()  # no bytecode written into the project


async def test_only_watched_included_files_trigger_a_reload(tmp_path: Path) -> None:
    app_dir, watched = tmp_path / "app", tmp_path / "watched"
    app_dir.mkdir()
    watched.mkdir()
    write_app(app_dir, "v1")
    args = (
        "reloadable:app",
        "--lifespan", "off",
        "--reload",
        "--reload-dir", str(watched),
        "--reload-include", "*.html",
        "--reload-exclude", "ignored_*.py",
    )  # fmt: skip
    async with supervised(*args, cwd=app_dir) as server:
        mark = len(server.log)
        write_app(app_dir, "v2")  # not watched
        (watched / "ignored_module.py").write_text("x = 1\n")  # excluded
        (watched / "notes.txt").write_text("not included\n")
        (watched / "page.html").write_text("<p>included</p>\n")  # included
        await reloaded(server, mark)
        reloads = server.log[mark:].count("Reloading:")
        assert reloads == 1
        assert "Reloading: ../watched/page.html changed" in server.log[mark:]
        assert await version(server) == "v2"  # the restart loaded the current code


async def test_an_app_broken_at_start_is_served_once_fixed(tmp_path: Path) -> None:
    (tmp_path / "reloadable.py").write_text("raise RuntimeError('not yet')\n")
    args = ("reloadable:app", "--reload", "--lifespan", "off")
    async with supervised(*args, cwd=tmp_path, listening=False) as server:
        await server.wait_for(r"The app failed to start; waiting for file changes")
        assert server.process.returncode is None
        write_app(tmp_path, "v1")
        [match] = await server.wait_for(r"listening on http://([\d.]+):(\d+)")
        server.host, server.port = match.group(1), int(match.group(2))
        assert await version(server) == "v1"
    assert server.process.returncode == 0


async def test_a_newer_change_gives_up_a_worker_still_starting(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    args = ("reloadable:app", "--reload", "--lifespan", "off")
    async with supervised(*args, cwd=tmp_path) as server:
        mark = len(server.log)
        (tmp_path / "reloadable.py").write_text("import time\ntime.sleep(600)\n")  # hangs
        await server.wait_for(r"Reloading: reloadable.py changed", since=mark)
        mark = len(server.log)
        write_app(tmp_path, "v2")  # while the new worker hangs importing the module
        await server.wait_for(r"Reloading: reloadable.py changed: restarting again", since=mark)
        await reloaded(server, mark)
        assert await version(server) == "v2"
    assert server.process.returncode == 0


async def test_a_change_gives_up_an_app_hanging_at_its_first_start(tmp_path: Path) -> None:
    """The first start is given up for newer code like a roll (README, 'Workers and
    reload'); it used to wait for the hanging import forever."""
    project = tmp_path / "project"  # the marker file lies outside the watched directory
    project.mkdir()
    importing = tmp_path / "importing"
    (project / "reloadable.py").write_text(
        f"import pathlib, time\npathlib.Path({str(importing)!r}).touch()\ntime.sleep(600)\n"
    )
    args = ("reloadable:app", "--reload", "--lifespan", "off")
    async with supervised(*args, cwd=project, listening=False) as server:
        with trio.fail_after(TIMEOUT):
            while not importing.exists():  # the worker hangs in the import now
                await trio.sleep(0.05)
        write_app(project, "v1")
        await server.wait_for(r"Reloading: reloadable.py changed: restarting\n")
        [match] = await server.wait_for(r"listening on http://([\d.]+):(\d+)")
        server.host, server.port = match.group(1), int(match.group(2))
        assert await version(server) == "v1"
    assert server.process.returncode == 0
