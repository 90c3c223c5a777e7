"""A real nginx in front of ``python -m trio_asgi``, configured by examples/deploy/nginx.conf.

The example is run as it is, with only its paths and addresses pointed at the test's
temporary directory (each replacement must match exactly once, so the test notices when the
example changes). nginx runs as the current user, in the foreground, on a free loopback
port. Clients connect from 127.0.0.2, so the address the app sees can only be the client's
if ``--proxy-headers`` did its job: nginx itself connects to trio_asgi from 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "deploy" / "nginx.conf"
CLIENT_HOST = "127.0.0.2"  # any 127/8 address is local on Linux


def _find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


NGINX = _find_nginx()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NGINX is None, reason="nginx not found (Debian: apt-get install nginx)"),
]

# trio_asgi listens on 127.0.0.1 over TCP here. The example (and production) use a unix
# socket; once `--uds` exists, set this to True and the test runs exactly that way.
UNIX_SOCKET = False

PROBE_APP = """
import json


def describe(scope):
    headers = dict(scope["headers"])
    return json.dumps({
        "client": scope["client"],
        "scheme": scope["scheme"],
        "host": headers.get(b"host", b"").decode(),
        "path": scope["path"],
        "root_path": scope["root_path"],
    })


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": describe(scope).encode()})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "whoami":
                await send({"type": "websocket.send", "text": describe(scope)})
            elif message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
"""


def configure(text: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in replacements:
        assert text.count(old) == 1, f"examples/deploy/nginx.conf: expected one {old!r}"
        text = text.replace(old, new)
    return text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def trio_asgi(tmp_path: Path, *args: str) -> AsyncIterator[tuple[str, list[bytes]]]:
    """``python -m trio_asgi`` serving the probe app; yields the nginx upstream address and
    the access log (stdout) as it arrives."""
    (tmp_path / "probe_app.py").write_text(PROBE_APP)
    if UNIX_SOCKET:
        socket_path = tmp_path / "app.sock"
        bind = ["--uds", str(socket_path), "--forwarded-allow-ips", "unix"]
    else:
        bind = ["--port", "0"]  # --forwarded-allow-ips keeps its default, 127.0.0.1
    argv = [sys.executable, "-m", "trio_asgi", "probe_app:app", "--app-dir", str(tmp_path)]
    argv += ["--lifespan", "off", "--proxy-headers", *bind, *args]
    process = await trio.lowlevel.open_process(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None and process.stderr is not None
    access_log: list[bytes] = []
    try:
        errors = b""
        with trio.fail_after(20):
            while not (found := re.search(rb"listening on (\S+)", errors)):
                chunk = await process.stderr.receive_some()
                if not chunk:
                    raise AssertionError(f"trio_asgi exited: {errors.decode()}")
                errors += chunk
        if UNIX_SOCKET:
            upstream = f"unix:{socket_path}"
        else:
            upstream = found.group(1).decode().removeprefix("http://")

        async def drain(stream: Any, into: list[bytes]) -> None:
            while chunk := await stream.receive_some():
                into.append(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, process.stdout, access_log)
            nursery.start_soon(drain, process.stderr, [])
            yield upstream, access_log
            process.send_signal(signal.SIGINT)
            with trio.fail_after(20):
                assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def nginx(tmp_path: Path, upstream: str, *, prefix: str | None) -> AsyncIterator[int]:
    """nginx with the example's configuration, in the foreground; yields its port."""
    assert NGINX is not None
    for attempt in range(5):  # the free port may be taken by someone else before nginx binds
        port = free_port()
        replacements = [
            ("user www-data;", "user root root;" if os.geteuid() == 0 else ""),
            ("pid /run/nginx.pid;", f"pid {tmp_path}/nginx.pid;"),
            ("error_log /var/log/nginx/error.log;", f"error_log {tmp_path}/error.log info;"),
            ("access_log /var/log/nginx/access.log;", f"access_log {tmp_path}/access.log;"),
            ("client_body_temp_path /var/lib/nginx/", f"client_body_temp_path {tmp_path}/"),
            ("proxy_temp_path /var/lib/nginx/", f"proxy_temp_path {tmp_path}/"),
            ("fastcgi_temp_path /var/lib/nginx/", f"fastcgi_temp_path {tmp_path}/"),
            ("uwsgi_temp_path /var/lib/nginx/", f"uwsgi_temp_path {tmp_path}/"),
            ("scgi_temp_path /var/lib/nginx/", f"scgi_temp_path {tmp_path}/"),
            ("worker_processes auto;", "worker_processes 1;"),
            ("listen 80;", f"listen 127.0.0.1:{port};"),
            # The one line that picks unix socket or TCP:
            ("server unix:/run/trio_asgi/app.sock;", f"server {upstream};"),
        ]
        if prefix is not None:  # the example's "mounted under a prefix" variant
            replacements += [
                ("location / {", f"location {prefix}/ {{"),
                ("proxy_pass http://trio_asgi;", "proxy_pass http://trio_asgi/;"),
            ]
        conf = tmp_path / "nginx.conf"
        conf.write_text(configure(EXAMPLE.read_text(), replacements))
        pid_file = tmp_path / "nginx.pid"
        pid_file.unlink(missing_ok=True)
        error_log = tmp_path / "error.log"
        argv = [NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(error_log)]
        process = await trio.lowlevel.open_process(
            [*argv, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            # nginx writes its pid file after it has bound the listening socket: from then
            # on connections queue in the backlog until a worker accepts them. It offers no
            # other readiness signal, so this waits for the file.
            with trio.fail_after(15):
                while not pid_file.exists() and process.poll() is None:
                    await trio.sleep(0.01)
            if process.returncode is not None:
                assert process.stderr is not None
                output = (await process.stderr.receive_some()).decode()
                output += error_log.read_text() if error_log.exists() else ""
                if "Address already in use" in output and attempt < 4:
                    continue
                raise AssertionError(f"nginx did not start: {output}")
            yield port
            return
        finally:
            if process.returncode is None:
                process.terminate()  # SIGTERM: nginx's fast shutdown
                with trio.move_on_after(10):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    raise AssertionError("no free port for nginx")


def websocket_session(url: str) -> tuple[dict[str, Any], list[str | bytes]]:
    from websockets.sync.client import connect

    with connect(url, open_timeout=10, close_timeout=10, source_address=(CLIENT_HOST, 0)) as ws:
        ws.send("whoami")
        seen = json.loads(ws.recv(timeout=10))
        echoed = []
        for message in ("hello", b"\x00\x01\x02"):
            ws.send(message)
            echoed.append(ws.recv(timeout=10))
    return seen, echoed


@pytest.mark.parametrize("prefix", [None, "/api"], ids=["at-root", "under-a-prefix"])
async def test_http_and_websocket_through_nginx(tmp_path: Path, prefix: str | None) -> None:
    root_path = ["--root-path", prefix] if prefix else []
    access_format = ["--access-log-format", "{client_host} {scheme} {request_line} {status}"]
    async with trio_asgi(tmp_path, *root_path, *access_format) as (upstream, access_log):
        async with nginx(tmp_path, upstream, prefix=prefix) as port:
            base = f"http://127.0.0.1:{port}{prefix or ''}"
            transport = httpx.AsyncHTTPTransport(local_address=CLIENT_HOST)
            async with httpx.AsyncClient(transport=transport, timeout=10) as http:
                # A client-made X-Forwarded-For is kept by nginx, but never believed.
                response = await http.get(
                    f"{base}/items/1?q=x", headers={"X-Forwarded-For": "6.6.6.6"}
                )
                assert response.status_code == 200
                seen = response.json()
                big = await http.get(f"{base}/" + "x" * 4000)  # a long head fits too
                assert big.status_code == 200
            ws_seen, echoed = await trio.to_thread.run_sync(
                websocket_session, base.replace("http://", "ws://") + "/ws"
            )
    assert seen["client"] == [CLIENT_HOST, 0]
    assert seen["scheme"] == "http"
    assert seen["host"] == f"127.0.0.1:{port}"
    assert (seen["root_path"], seen["path"]) == (prefix or "", f"{prefix or ''}/items/1")
    assert ws_seen["client"] == [CLIENT_HOST, 0]
    assert ws_seen["scheme"] == "ws"
    assert ws_seen["path"] == f"{prefix or ''}/ws"
    assert echoed == ["hello", b"\x00\x01\x02"]
    lines = b"".join(access_log).decode()
    assert f"INFO:  {CLIENT_HOST} http GET {prefix or ''}/items/1?q=x HTTP/1.1 200" in lines
    errors = (tmp_path / "error.log").read_text()
    assert not re.search(r"\[(error|crit|alert|emerg)\]", errors), errors
