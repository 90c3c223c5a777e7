"""--workers: a supervisor and worker processes on shared sockets, over real connections."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import httpx
import pytest
import trio

from .supervised import (
    APP,
    TIMEOUT,
    Held,
    Supervised,
    get_pid,
    http_get,
    process_gone,
    supervised,
    wait_until,
    websocket_session,
)

pytestmark = pytest.mark.e2e


async def hold_one_per_worker(server: Supervised, workers: int) -> list[Held]:
    """With --limit-concurrency 1 a worker holding a request accepts no other, so N held
    requests are served by N different workers (a later one waits in the backlog)."""
    return [await Held.open(server) for _ in range(workers)]


async def test_workers_serve_the_shared_socket_and_a_killed_one_comes_back() -> None:
    async with supervised(APP, "--workers", "3", "--limit-concurrency", "1") as server:
        started = server.ready_pids()
        assert len(started) == 3
        assert server.log.count("listening on") == 1
        assert "(3 workers" in server.log

        held = await hold_one_per_worker(server, 3)
        assert sorted(h.pid for h in held) == sorted(started)
        for h in held:
            await h.close()

        killed, terminated, survivor = started
        os.kill(killed, signal.SIGKILL)  # a crash
        os.kill(terminated, signal.SIGTERM)  # stops gracefully, but nobody asked it to
        await server.wait_for(rf"Worker {killed} crashed \(killed by SIGKILL\); restarting")
        await server.wait_for(rf"Worker {terminated} exited \(exit code 0\); restarting")
        replacements = (await server.wait_for(r"Worker (\d+) ready", count=5))[3:]
        new_pids = [int(match.group(1)) for match in replacements]
        held = await hold_one_per_worker(server, 3)
        assert sorted(h.pid for h in held) == sorted([survivor, *new_pids])
        for h in held:
            await h.close()
    assert server.process.returncode == 0


async def test_sighup_rolls_every_worker_without_failing_a_request() -> None:
    async with supervised(APP, "--workers", "2") as server:
        old = set(server.ready_pids())
        phase = "before"  # then "rolling" (from SIGHUP until every old worker left), "after"
        served: dict[str, list[int]] = {"before": [], "rolling": [], "after": []}
        failures: list[BaseException] = []
        progress = trio.Event()

        async def load() -> None:
            nonlocal progress
            while True:
                started_in = phase  # a request that began earlier may end later
                try:
                    served[started_in].append(await get_pid(server))
                except (OSError, AssertionError, ValueError) as exc:
                    failures.append(exc)
                progress.set()
                progress = trio.Event()

        async def keep_alive_load() -> None:
            """One client reusing its connections, as browsers and proxies do."""
            nonlocal progress
            async with httpx.AsyncClient(base_url=f"http://{server.host}:{server.port}") as http:
                while True:
                    started_in = phase
                    try:
                        response = await http.get("/pid")
                        assert response.status_code == 200
                        served[started_in].append(int(response.text))
                    except (httpx.HTTPError, AssertionError, ValueError) as exc:
                        failures.append(exc)
                    progress.set()
                    progress = trio.Event()

        async def until_served(started_in: str, count: int) -> None:
            while len(served[started_in]) < count:
                await progress.wait()

        ws_code: list[int | None] = []
        ws_pid: list[int] = []
        ws_open = trio.Event()

        def opened(pid: int) -> None:
            ws_pid.append(pid)
            ws_open.set()

        async def ws_client() -> None:
            url = f"ws://{server.host}:{server.port}/ws"
            ws_code.append(await trio.to_thread.run_sync(websocket_session, url, opened))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws_client)
            await ws_open.wait()
            for _ in range(3):
                nursery.start_soon(load)
            nursery.start_soon(keep_alive_load)
            await until_served("before", 10)
            mark = len(server.log)
            phase = "rolling"
            server.send_signal(signal.SIGHUP)
            [done] = await server.wait_for(r"Rolling restart done: .* in ([\d.]+) s", since=mark)
            for pid in old:
                await server.wait_for(rf"Worker {pid} stopped", since=mark)
            phase = "after"
            await until_served("after", 10)
            nursery.cancel_scope.cancel()

        new = set(server.ready_pids(mark))
        assert len(new) == 2 and not new & old
        assert failures == []
        assert served["rolling"], "no request was made during the roll"
        assert set(served["after"]) <= new  # once the old workers are gone, only new ones
        assert ws_pid[0] in old
        assert ws_code == [1012]  # "service restart": reconnect, another worker answers
        print(f"roll of 2 workers: {done.group(1)} s; {len(served['rolling'])} requests during it")


async def test_sigterm_drains_in_flight_requests_then_exits_0() -> None:
    async with supervised(APP, "--workers", "2") as server:
        slow = await Held.open(server, "/until-stop")
        server.send_signal(signal.SIGTERM)
        rest = await slow.rest()
        assert b"finished" in rest  # the app finished after the stop began
        assert await server.wait() == 0
    assert "Received SIGTERM: stopping 2 worker(s) gracefully" in server.log
    assert server.log.count(" stopped") == 2
    assert "Traceback" not in server.log


async def test_ctrl_c_to_the_group_drains_and_a_second_signal_stops_at_once() -> None:
    """A terminal sends SIGINT to every process of the group: workers leave it to the
    supervisor, so one Ctrl-C is one graceful stop, not a forced one."""
    async with supervised(
        APP, "--workers", "2", "--timeout-graceful-shutdown", "60", start_new_session=True
    ) as server:
        stuck = await Held.open(server)  # a response that only ends when the client leaves
        os.killpg(server.pid, signal.SIGINT)
        await server.wait_for(r"Shutting down: waiting for 1 connection")
        assert server.process.returncode is None  # draining: the request is in flight
        server.send_signal(signal.SIGINT)
        assert await server.wait() == 1  # forced: not a clean shutdown
        await stuck.close()
    assert server.log.count("Received SIGINT") == 2
    assert "Received SIGINT again: stopping now" in server.log
    assert "Traceback" not in server.log


async def test_workers_stop_when_the_supervisor_is_killed() -> None:
    async with supervised(APP, "--workers", "2") as server:
        workers = server.ready_pids()
        server.process.kill()
        await server.wait()
        for pid in workers:
            await wait_until(functools.partial(process_gone, pid), f"worker {pid} exits")
    assert "Supervisor gone: shutting down gracefully" in server.log


async def test_limit_max_requests_recycles_workers_without_failures() -> None:
    async with supervised(APP, "--workers", "2", "--limit-max-requests", "2") as server:
        first = set(server.ready_pids())
        pids: list[int] = []
        # A keep-alive client: the connection of a recycled worker is not closed under it.
        async with httpx.AsyncClient(base_url=f"http://{server.host}:{server.port}") as http:
            # Until a replacement answers: how many requests the retiring workers answer
            # meanwhile depends on how fast the replacement starts, so bound the time.
            with trio.fail_after(60):
                while set(pids) <= first:
                    response = await http.get("/pid")
                    assert response.status_code == 200
                    pids.append(int(response.text))
                    await trio.sleep(0.01)
            pids.append(await get_pid(server))  # and on a new connection
        [retired] = await server.wait_for(r"Worker (\d+) reached --limit-max-requests")
        await server.wait_for(rf"Worker {retired.group(1)} stopped")
    assert "crashed" not in server.log
    assert "retrying" not in server.log


async def test_broken_code_on_disk_stops_the_roll_and_crashes_back_off(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    async with supervised(APP, "--workers", "2", env={"WORKER_APP_BROKEN": str(flag)}) as server:
        old = server.ready_pids()
        flag.touch()  # new workers cannot import the app any more
        mark = len(server.log)
        server.send_signal(signal.SIGHUP)
        await server.wait_for(
            r"Rolling restart stopped: a new worker failed to start; 2 worker\(s\) keep",
            since=mark,
        )
        assert await get_pid(server) in old  # the old code still serves

        os.kill(old[0], signal.SIGKILL)
        await server.wait_for(r"crashed \(killed by SIGKILL\); restarting it in 0.1 s", since=mark)
        # The replacement fails to start again and again: each wait doubles.
        await server.wait_for(rf"Could not replace worker {old[0]}; retrying in 0.2 s", since=mark)
        flag.unlink()
        [match] = await server.wait_for(r"Worker (\d+) ready", since=mark)
        assert int(match.group(1)) not in old
    assert "broken on purpose" in server.log


@pytest.mark.parametrize(
    ("app", "code", "message"),
    [
        ("no_such_module_xyz:app", 2, "could not import module 'no_such_module_xyz'"),
        ("tests.e2e.other_apps:failing_startup", 3, "application startup failed: no database"),
    ],
)
async def test_an_app_that_cannot_start_fails_once_with_its_exit_code(
    app: str, code: int, message: str
) -> None:
    async with supervised(app, "--workers", "3", listening=False) as server:
        assert await server.wait() == code
    assert server.log.count("trio-asgi: error:") == 1, server.log
    assert message in server.log
    assert "listening on" not in server.log
    assert "Traceback" not in server.log


async def test_every_worker_runs_an_asyncio_app_on_its_own_loop() -> None:
    args = ("--workers", "2", "--limit-concurrency", "1", "--app-loop", "asyncio")
    async with supervised(APP, *args) as server:
        held = {h.pid: h for h in await hold_one_per_worker(server, 2)}
        for pid in server.ready_pids():
            await held[pid].close()  # the one worker free to answer
            status, body = await http_get(server.host, server.port, "/loop")
            assert (status, body) == (200, b"%d asyncio" % pid)
            held[pid] = await Held.open(server)
            assert held[pid].pid == pid
        for h in held.values():
            await h.close()


async def test_workers_serve_a_unix_socket() -> None:
    """The supervisor shares a unix socket with its workers like a TCP one (it refused it:
    "workers cannot share a UnixSocketListener"), and removes its file at exit."""
    # A short directory: a unix socket path holds at most 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="uds-")) / "app.sock"
    try:
        args = (APP, "--workers", "2", "--uds", str(path))
        async with supervised(*args, listening=False) as server:
            await server.wait_for(rf"listening on unix:{re.escape(str(path))}")
            await server.wait_for(r"Worker \d+ ready", count=2)
            for _ in range(4):
                with trio.fail_after(TIMEOUT):
                    stream = await trio.open_unix_socket(str(path))
                    async with stream:
                        await stream.send_all(
                            b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        )
                        response = b""
                        while data := await stream.receive_some():
                            response += data
                assert response.startswith(b"HTTP/1.1 200 ")
        assert server.process.returncode == 0, server.log
        assert not path.exists()
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
