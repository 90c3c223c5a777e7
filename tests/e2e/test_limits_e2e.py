"""Process-level limits, checked on a real server process: descriptors, backlog, max requests."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys

import pytest
import trio

from .test_cli_e2e import ROOT, _read_until_listening

pytestmark = pytest.mark.e2e


async def start(*args: str, nofile: int | None = None) -> tuple[trio.Process, str, list[bytes]]:
    def lower_limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_asgi", "examples.echo:app", "--port", "0", *args],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        preexec_fn=lower_limit,
    )
    collected: list[bytes] = []
    url = await _read_until_listening(process, collected)
    return process, url, collected


async def stop(process: trio.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
    with trio.fail_after(20):
        return await process.wait()


async def request(stream: trio.SocketStream) -> bytes:
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"Hello, world!" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


async def test_running_out_of_descriptors_is_survived() -> None:
    process, url, collected = await start(
        "--timeout-request-header", "120", "--no-access-log", nofile=48
    )
    host, port = url[len("http://") :].rsplit(":", 1)

    async def drain_stderr() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.receive_some():
            collected.append(chunk)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_stderr)
            streams = [await trio.open_tcp_stream(host, int(port)) for _ in range(80)]
            with trio.fail_after(10):
                while b"out of file descriptors" not in b"".join(collected):
                    await trio.sleep(0.05)
            # The connections it did accept are still served...
            assert b"200 OK" in await request(streams[0])
            # ...and once descriptors are free again, new clients get in.
            for stream in streams[1:60]:
                await stream.aclose()
            with trio.fail_after(10):
                fresh = await trio.open_tcp_stream(host, int(port))
                assert b"200 OK" in await request(fresh)
            await stop(process)
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
    log = b"".join(collected).decode()
    assert log.count("out of file descriptors") == 1
    assert "accept() works again" in log
    assert "Traceback" not in log


async def test_backlog_reaches_the_listening_socket() -> None:
    process, url, _ = await start("--backlog", "37")
    port = url.rsplit(":", 1)[1]
    try:
        result = await trio.run_process(
            ["ss", "-ltnH", f"sport = :{port}"], capture_stdout=True, check=False
        )
    except FileNotFoundError:
        pytest.skip("ss (iproute2) is not installed")
    finally:
        await stop(process)
    # For listening sockets ss shows the backlog in the Send-Q column.
    assert re.search(rb"LISTEN\s+\d+\s+37\s", result.stdout), result.stdout


async def test_limit_max_requests_exits_the_process_gracefully() -> None:
    process, url, collected = await start("--limit-max-requests", "3")
    host, port = url[len("http://") :].rsplit(":", 1)
    try:
        for _ in range(3):
            stream = await trio.open_tcp_stream(host, int(port))
            assert b"200 OK" in await request(stream)
            await stream.aclose()
        with trio.fail_after(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
    assert process.stderr is not None
    rest = b""
    while chunk := await process.stderr.receive_some():
        rest += chunk
    assert b"--limit-max-requests" in b"".join(collected) + rest
