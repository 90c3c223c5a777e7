"""``python -m trio_asgi`` with inherited sockets (``fd://N``, systemd socket activation), a unix
socket and TLS from the command line, as a supervisor would start it."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(rb"listening on (.+) \(press CTRL\+C to quit\)")


class Running:
    def __init__(self, process: trio.Process, listening: list[str]) -> None:
        self.process = process
        self.listening = listening  # the startup line's listeners
        self.stderr = b""


@asynccontextmanager
async def run_server(
    argv: list[str], *, pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    process = await trio.lowlevel.open_process(
        argv,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=pass_fds,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert process.stderr is not None
    collected = b""
    try:
        with trio.fail_after(20):
            while not (match := LISTENING.search(collected)):
                chunk = await process.stderr.receive_some()
                if not chunk:
                    raise AssertionError(f"server exited before listening: {collected.decode()}")
                collected += chunk
        running = Running(process, match.group(1).decode().split(", "))
        yield running
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            while chunk := await process.stderr.receive_some():
                collected += chunk
            assert await process.wait() == 0
        running.stderr = collected
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def trio_asgi(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_asgi", "examples.echo:app", *args]


def over_unix(path: Path) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(uds=str(path))


async def hello(url: str, **client: Any) -> str:
    async with httpx.AsyncClient(**client) as http:
        response = await http.get(url + "/")
    assert response.status_code == 200
    return response.text


async def test_fd_bind_serves_an_inherited_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        argv = trio_asgi("--bind", f"fd://{sock.fileno()}")
        async with run_server(argv, pass_fds=(sock.fileno(),)) as running:
            assert running.listening == [f"http://127.0.0.1:{port}"]
            assert await hello(f"http://127.0.0.1:{port}") == "Hello, world!\n"


# Started by this wrapper, the server sees what systemd would give it: the sockets from
# descriptor 3 on, LISTEN_FDS, and LISTEN_PID naming its own pid (exec keeps the pid).
SYSTEMD_WRAPPER = """
import fcntl, os, sys
# Out of the way first, so that moving one to 3 cannot overwrite another that is there.
fds = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 100) for fd in sys.argv[1].split(",")]
for target, fd in enumerate(fds, start=3):
    os.dup2(fd, target)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


async def test_systemd_socket_activation(sock_dir: Path) -> None:
    path = sock_dir / "activated.sock"
    with socket.socket() as tcp, socket.socket(socket.AF_UNIX) as unix:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        unix.bind(str(path))
        unix.listen()
        port = tcp.getsockname()[1]
        fds = (tcp.fileno(), unix.fileno())
        argv = [
            sys.executable,
            "-c",
            SYSTEMD_WRAPPER,
            ",".join(map(str, fds)),
            *trio_asgi("--bind", "systemd")[1:],
        ]
        async with run_server(argv, pass_fds=fds) as running:
            assert running.listening == [f"http://127.0.0.1:{port}", f"unix:{path}"]
            assert await hello(f"http://127.0.0.1:{port}") == "Hello, world!\n"
            assert await hello("http://localhost", transport=over_unix(path)) == "Hello, world!\n"
        assert path.exists()  # systemd's socket: not ours to remove


async def test_systemd_bind_without_activation_exits_1() -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": "1"}
    result = await trio.run_process(
        trio_asgi("--bind", "systemd"), cwd=ROOT, capture_stderr=True, check=False, env=env
    )
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(
        "trio-asgi: error: cannot serve on systemd: LISTEN_PID is 1, not this process ("
    )


async def test_unix_socket_from_the_command_line(sock_dir: Path) -> None:
    path = sock_dir / "cli.sock"
    async with run_server(trio_asgi("--uds", str(path), "--uds-permissions", "600")) as running:
        assert running.listening == [f"unix:{path}"]
        assert oct(path.stat().st_mode & 0o777) == oct(0o600)
        assert await hello("http://localhost", transport=over_unix(path)) == "Hello, world!\n"
    assert not path.exists()


async def test_tls_from_the_command_line_with_an_encrypted_key(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    argv = trio_asgi(
        "--bind", "127.0.0.1:0",
        "--insecure-bind", "127.0.0.1:0",
        "--certfile", str(tmp_path / "cert.pem"),
        "--keyfile", str(tmp_path / "key.pem"),
        "--keyfile-password", "pw",
    )  # fmt: skip
    async with run_server(argv) as running:
        https_url, http_url = running.listening
        assert https_url.startswith("https://127.0.0.1:") and http_url.startswith("http://")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        assert await hello(https_url, verify=context) == "Hello, world!\n"
        assert await hello(http_url) == "Hello, world!\n"
    assert b"Traceback" not in running.stderr
