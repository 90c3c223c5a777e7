"""Audit of "every option in --help works and is tested": one test per option that had no
test failing when the option is ignored, and failing tests for options that misbehave.

Each option goes through the command line (``parse_args``, as ``python -m trio_asgi`` does)
or through ``TestClient``/``Server`` with the Config it builds; options that only make sense
in a process of their own are in ``tests/e2e/test_cli_option_audit_e2e.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sniffio
import trio
import trio.testing

import trio_asgi
from trio_asgi import Config, ConfigError, Server
from trio_asgi.cli import main, parse_args
from trio_asgi.testing import TestClient

Scope = dict[str, Any]


async def scope_app(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with what the server put in the scope, and the async library it runs on."""
    if scope["type"] != "http":
        return
    body = json.dumps(
        {"server": scope["server"], "library": sniffio.current_async_library()}
    ).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def cli_config(*argv: str) -> Config:
    """The Config ``python -m trio_asgi APP *argv`` would serve with."""
    _, config = parse_args(["tests.test_cli_option_audit:scope_app", *argv])
    return config


def vars_of(config: Config) -> dict[str, Any]:
    """A Config as the keyword arguments of TestClient."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


@asynccontextmanager
async def serving(app: Any, config: Config) -> AsyncIterator[list[Any]]:
    """The server running on real sockets; yields its bound addresses."""
    server = Server(app, config)
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(server.serve)
        yield addresses
        server.request_shutdown()


async def http_get(host: str, port: int) -> dict[str, Any]:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            response = b""
            while chunk := await stream.receive_some():
                response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), response
    return json.loads(body)  # type: ignore[no-any-return]


def one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the command line, which must exit 2 with one ``trio-asgi: error:`` line."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith("trio-asgi: error: "), err
    assert "Traceback" not in err
    return err


# -- options that work, with no test that would notice them being ignored ---------------------


def test_version_prints_the_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"trio-asgi {trio_asgi.__version__}\n"


async def test_host_is_the_address_listened_on() -> None:
    """Every served test so far used 127.0.0.1, the default: ignoring --host went unnoticed
    (tests/binds/test_bind_config.py only checks Config.binds())."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    config = cli_config("--host", "127.0.0.2", "--port", "0")
    async with serving(scope_app, config) as addresses:
        [(host, port)] = addresses
        assert host == "127.0.0.2"
        assert (await http_get("127.0.0.2", port))["server"] == ["127.0.0.2", port]


async def test_fd_serves_the_inherited_socket() -> None:
    """``--fd N`` itself (the shortcut, not ``--bind fd://N``) was only tested for its errors."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    fd = sock.detach()  # the server owns it now and closes it on exit
    try:
        config = cli_config("--fd", str(fd), "--port", "0")  # (port: if --fd were ignored)
        async with serving(scope_app, config) as addresses:
            assert addresses == [("127.0.0.1", port)]
            assert (await http_get("127.0.0.1", port))["server"] == ["127.0.0.1", port]
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # closed with the server, as it should be


class Quart:
    """Named like Quart's class, so ``--app-loop auto`` takes it for an asyncio app."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await scope_app(scope, receive, send)


Quart.__module__, Quart.__qualname__ = "quart.app", "Quart"


async def test_app_loop_trio_overrides_the_recognition_of_an_asyncio_app() -> None:
    """The help's way out ("Pass --app-loop trio to override") had no test: the existing
    ones pass --app-loop trio only for apps that auto runs on trio anyway."""
    pytest.importorskip("trio_asyncio")
    async with TestClient(Quart(), app_loop="auto") as client:
        assert (await client.get("/")).json()["library"] == "asyncio"  # recognised...
    config = cli_config("--app-loop", "trio")
    async with TestClient(Quart(), **vars_of(config)) as client:
        assert (await client.get("/")).json()["library"] == "trio"  # ...and overridden


# -- bad values: one line on stderr, exit code 2 ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backlog", "many"], "argument --backlog: invalid int value: 'many'"),
        (["--timeout-keep-alive", "soon"], "argument --timeout-keep-alive: invalid float"),
        (["--timeout-keep-alive", "nan"], "timeout_keep_alive must be a number of seconds"),
        (["--ws-ping-timeout", "-1"], "ws_ping_timeout must be a number of seconds >= 0"),
        (["--limit-concurrency", "0"], "limit_concurrency must be a positive integer"),
        (["--uds", "/tmp/x.sock", "--uds-permissions", "999"], "invalid mode value: '999'"),
        (["--lifespan", "maybe"], "argument --lifespan: invalid choice: 'maybe'"),
        (["--ws-per-message-deflate", "yes please"], "invalid true|false value"),
        (["--bind", "127.0.0.1:99999"], "invalid bind '127.0.0.1:99999'"),
        (["--bind", "::1:80"], "put an IPv6 address in brackets"),
        (["--certfile", "/nonexistent/cert.pem"], "cannot load certfile"),
        (["--log-config", "/nonexistent/logging.json"], "log_config: no such file"),
        (["--cert-reqs", "required"], "cert_reqs needs certfile"),
        (["--forwarded-allow-ips", "10.0.0.300"], "forwarded_allow_ips: '10.0.0.300'"),
        (["--access-log-ws-format", "{status}"], "unknown atom {status}"),
    ],
)
def test_bad_values_on_the_command_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_exit_2(capsys, ["tests.test_cli_option_audit:scope_app", *argv])
    assert message in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('backlog = "many"', "backlog must be an integer, not a string 'many'"),
        ("timeout_keep_alive = nan", "timeout_keep_alive must be a number of seconds >= 0"),
        ('ws_ping_interval = "soon"', "ws_ping_interval: could not convert"),
        ('limit_concurrency = "x"', "limit_concurrency: invalid literal for int()"),
        ('uds = "/tmp/x.sock"\nuds_permissions = "999"', "uds_permissions: invalid literal"),
        ('lifespan = "maybe"', "lifespan must be one of auto, on, off, not 'maybe'"),
        ('ws_per_message_deflate = "maybe"', "expected true or false, not 'maybe'"),
        ("access_log = 1", "access_log must be a boolean, not an integer 1"),
        ('bind = "nonsense"', "invalid bind 'nonsense'"),
        ('certfile = "/nonexistent/cert.pem"', "cannot load certfile"),
        ("reload_dir = 5", "reload_dir must be a string or an array, not an integer 5"),
    ],
)
def test_bad_values_in_the_config_file(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each error names the config file, as config_file.py promises (the same setting may
    be given on the command line too), or the file it could not load."""
    path = tmp_path / "server.toml"
    path.write_text(f'app = "tests.test_cli_option_audit:scope_app"\n{text}\n')
    err = one_line_exit_2(capsys, ["--config", str(path)])
    assert message in err
    assert str(path) in err or "/nonexistent/" in err


def test_a_config_file_value_the_command_line_overrides_is_not_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line wins: a bad file value it replaces is no error, and an error of
    the command line's own is not blamed on the file."""
    path = tmp_path / "server.toml"
    path.write_text('app = "tests.test_cli_option_audit:scope_app"\nport = 99999\n')
    assert cli_config("--config", str(path), "--port", "8001").port == 8001
    err = one_line_exit_2(capsys, ["--config", str(path), "--port", "99998"])
    assert "99998" in err and str(path) not in err


def test_a_file_mode_out_of_range_is_shown_as_typed(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tests.test_cli_option_audit:scope_app", "--uds", "/tmp/x.sock"]
    err = one_line_exit_2(capsys, [*argv, "--uds-permissions", "10000"])
    assert "not 10000" in err


def test_a_root_path_without_its_slash_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``--root-path api`` would turn every path into ``api/...``: no route matches."""
    argv = ["tests.test_cli_option_audit:scope_app", "--root-path", "api"]
    assert "root_path must be empty or start with '/'" in one_line_exit_2(capsys, argv)
    assert cli_config("--root-path", "/api").root_path == "/api"


# -- a --host that cannot be an address is a usage error, not a failed bind ---------------------


@pytest.mark.parametrize("host", ["", "127.0.0.1:8000", "http://localhost", "[::1"])
def test_a_malformed_host_is_a_usage_error(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--bind`` refuses a malformed address with exit code 2 and a line saying what is
    wrong; the same mistakes in ``--host`` pass validation, the app is imported and only
    binding fails: exit code 1, "cannot serve on [127.0.0.1:8000]:8000: Name or service not
    known" (after a DNS query for the text). ``--host 127.0.0.1:8000`` is a likely mistake.
    (Checked with parse_args so that the current behaviour does not wait for DNS.)"""
    with pytest.raises(SystemExit) as info:
        parse_args(["tests.test_cli_option_audit:scope_app", "--host", host])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith("trio-asgi: error: ") and "host" in err, err


@pytest.mark.parametrize("host", ["localhost", "0.0.0.0", "::", "::1", "[::1]", "example.com"])
def test_well_formed_hosts_stay_accepted(host: str) -> None:
    """What a fix of the test above must keep accepting (nothing is resolved here)."""
    assert cli_config("--host", host).host == host.strip("[]")


# -- timeouts that 0 would turn into "refuse every client" are usage errors -----------------
#
# The help documents 0 for --timeout-keep-alive ("close after each response"),
# --timeout-graceful-shutdown ("cancel at once") and the ping options ("0 or none: off").
# For these, 0 used to be accepted, and then every client (or every slow-ish one) was refused:
# no request head or body, no response and no WebSocket message arrives in no time.


@pytest.mark.parametrize(
    "flag",
    [
        "--timeout-request-header",
        "--timeout-request-body",
        "--timeout-write",
        "--ws-accept-timeout",
        "--ws-send-timeout",
        "--timeout-tls-handshake",
    ],
)
def test_a_zero_timeout_that_would_refuse_every_client_is_a_usage_error(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="> 0"):
        Config(**{flag.removeprefix("--").replace("-", "_"): 0})
    assert "> 0" in one_line_exit_2(capsys, ["tests.test_cli_option_audit:scope_app", flag, "0"])


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def test_ws_accept_timeout_spares_an_app_that_accepted_in_time(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The app accepts at 5 s of a 10 s --ws-accept-timeout, but the client is slow to read
    the 101 (here: a 64-byte transport buffer it reads from at 20 s). At 10 s the server
    used to log "WebSocket app neither accepted nor rejected /ws within 10s", tries to send
    a 503 after the 101 began (websocket.py: ``assert self._http is not None`` in
    ``_send_http_error``), logs "Internal error serving ...; connection closed", cuts the
    101 short and cancels the app inside its ``websocket.accept``. The same race happens
    without a slow client whenever an accept lands at the deadline (its write is a
    checkpoint)."""
    events: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await trio.sleep(5)
        await send({"type": "websocket.accept"})
        events.append("accepted")
        events.append((await receive())["type"])

    async with TestClient(app, ws_accept_timeout=10, timeout=100) as client:
        stream = await client.connect(buffer_size=64)
        await stream.send_all(HANDSHAKE)
        await trio.sleep(20)  # the client reads late (the 101 write may wait 20 s)
        head = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in head and (chunk := await stream.receive_some()):
                head += chunk
        await stream.aclose()
        await trio.sleep(5)  # for the app to hear the disconnect
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert head.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in head, head
    assert events == ["accepted", "websocket.disconnect"]
