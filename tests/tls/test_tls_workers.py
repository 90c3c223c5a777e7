"""TLS with --workers: the supervisor binds, every worker wraps the socket with its own context."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import pytest
import trio

from ..e2e.supervised import ROOT
from .conftest import TLSFiles

pytestmark = pytest.mark.e2e

LISTENING = re.compile(rb"listening on https://([\d.]+):(\d+)")


async def test_workers_serve_https(tls: TLSFiles) -> None:
    argv = [
        sys.executable, "-m", "trio_asgi", "tests.e2e.worker_app:app", "--workers", "2",
        "--port", "0", "--certfile", tls.certfile, "--keyfile", tls.keyfile,
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(argv, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        log = b""
        with trio.fail_after(30):
            while not (match := LISTENING.search(log)):
                chunk = await process.stderr.receive_some()
                assert chunk, log.decode()
                log += chunk
        url = f"https://{match.group(1).decode()}:{match.group(2).decode()}"
        pids = set()
        with trio.fail_after(30):
            while len(pids) < 2:  # new connections land on either worker
                async with httpx.AsyncClient(verify=tls.client_context()) as http:
                    response = await http.get(url + "/pid")
                assert response.status_code == 200
                pids.add(response.text)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
