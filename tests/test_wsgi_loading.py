"""Choosing WSGI: --interface auto's detection, its warnings and errors, the CLI options,
and the Flask example started with ``python -m trio_asgi``."""

from __future__ import annotations

import functools
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from flask import Flask

from trio_asgi import cli
from trio_asgi.app_loader import adapt, detect_interface, is_double_callable
from trio_asgi.errors import AppLoadError
from trio_asgi.testing import TestClient
from trio_asgi.wsgi import WSGIAdaptor

ROOT = Path(__file__).resolve().parent.parent

# -- app shapes ------------------------------------------------------------------------------


def wsgi_function(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"wsgi"]


def wsgi_with_option(environ: Any, start_response: Any, greeting: str = "hi") -> list[bytes]:
    start_response("200 OK", [])
    return [greeting.encode()]


class WSGIClass:
    """PEP 3333's class example: the class itself is the app."""

    def __init__(self, environ: Any, start_response: Any) -> None:
        self.start_response = start_response

    def __iter__(self) -> Any:
        self.start_response("200 OK", [])
        yield b"class"


class WSGIObject:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return wsgi_function(environ, start_response)


def logged(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


async def asgi3_function(scope: Any, receive: Any, send: Any) -> None:
    pass


class ASGI3Object:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class ASGI2Class:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        pass


def asgi2_function(scope: Any) -> Any:
    return ASGI2Class(scope)


class AwaitableEndpoint:
    """Like Starlette's class-based endpoints: ``await Endpoint(scope, receive, send)``."""

    def __init__(self, scope: Any, receive: Any, send: Any) -> None:
        pass

    def __await__(self) -> Any:
        return iter(())


def star_args(*args: Any) -> Any:
    return None


class Marked:
    _asgi_single_callable = True

    def __call__(self, scope: Any) -> Any:  # sync and one argument, but marked
        return None


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (wsgi_function, "wsgi"),
        (wsgi_with_option, "wsgi"),
        (WSGIClass, "wsgi"),
        (WSGIObject(), "wsgi"),
        (logged(wsgi_function), "wsgi"),
        (functools.partial(wsgi_with_option, greeting="hello"), "wsgi"),
        (Flask("detect"), "wsgi"),
        (asgi3_function, "asgi3"),
        (ASGI3Object(), "asgi3"),
        (logged(asgi3_function), "asgi3"),
        (AwaitableEndpoint, "asgi3"),
        (Marked(), "asgi3"),
        (ASGI2Class, "asgi2"),
        (asgi2_function, "asgi2"),
        (star_args, "asgi2"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_detect_interface(app: Any, expected: str) -> None:
    assert detect_interface(app)[0] == expected
    assert is_double_callable(app) == (expected == "asgi2")


def test_auto_detection_of_wsgi_is_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trio_asgi.error"):
        adapted = adapt(wsgi_function, "auto", wsgi_threads=5)
    assert isinstance(adapted, WSGIAdaptor)
    assert adapted.threads == 5
    assert (
        "tests.test_wsgi_loading.wsgi_function is a WSGI application (it takes (environ, "
        "start_response)): running it in up to 5 threads. Pass --interface to override."
    ) in caplog.messages


async def test_a_guess_is_a_warning_and_a_wrong_guess_says_what_to_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``*args`` could be either; the warning names the way out, and so does the error of
    the first request if the guess (ASGI 2) was wrong."""

    def ambiguous(*args: Any) -> Any:  # no functools.wraps: that would expose the signature
        return wsgi_function(*args)

    with caplog.at_level(logging.WARNING, logger="trio_asgi.error"):
        async with TestClient(ambiguous, lifespan="off") as client:
            with pytest.raises(TypeError) as failed:
                await client.get("/")
    assert caplog.records[0].levelno == logging.WARNING
    assert "Cannot tell from its signature (*args) whether" in caplog.messages[0]
    assert "Pass --interface asgi2 or --interface wsgi." in caplog.messages[0]
    assert any("--interface wsgi" in note for note in failed.value.__notes__)


async def test_a_wsgi_app_that_is_really_asgi_is_named() -> None:
    async def not_wsgi(environ: Any, start_response: Any) -> None:
        pass

    def returns_coroutine(environ: Any, start_response: Any) -> Any:
        return not_wsgi(environ, start_response)

    async with TestClient(returns_coroutine, interface="wsgi") as client:
        with pytest.raises(TypeError, match="looks like an ASGI application"):
            await client.get("/")


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (asgi3_function, "is an async callable, i.e. an ASGI application"),
        (asgi2_function, "cannot be called as app(environ, start_response): its signature is"),
    ],
)
def test_interface_wsgi_refuses_what_cannot_be_wsgi(app: Any, message: str) -> None:
    with pytest.raises(AppLoadError, match=re.escape(message)):
        adapt(app, "wsgi")


def test_interface_wsgi_accepts_unknown_signatures() -> None:
    assert isinstance(adapt(star_args, "wsgi"), WSGIAdaptor)


def test_adaptor_rejects_bad_thread_counts() -> None:
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        WSGIAdaptor(wsgi_function, threads=0)


async def test_one_adaptor_in_two_trio_runs() -> None:
    """The limiter is per trio.run, so an adaptor object can be served again (tests do)."""
    adaptor = WSGIAdaptor(wsgi_function, threads=2)

    async def serve_once() -> bytes:
        async with TestClient(adaptor) as client:
            return (await client.get("/")).content

    assert await serve_once() == b"wsgi"
    assert await trio.to_thread.run_sync(trio.run, serve_once) == b"wsgi"


# -- command line ----------------------------------------------------------------------------


def test_cli_options() -> None:
    target, config = cli.parse_args(["pkg.mod:app", "--interface", "wsgi", "--wsgi-threads", "7"])
    assert target == "pkg.mod:app"
    assert (config.interface, config.wsgi_threads) == ("wsgi", 7)
    _, default = cli.parse_args(["pkg.mod:app"])
    assert (default.interface, default.wsgi_threads) == ("auto", 40)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wsgi-threads", "0"], "wsgi_threads must be a positive integer, not 0"),
        (["--wsgi-threads", "many"], "argument --wsgi-threads: invalid int value: 'many'"),
        (["--interface", "cgi"], "argument --interface: invalid choice: 'cgi'"),
    ],
)
def test_cli_rejects_bad_values(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(["pkg.mod:app", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--interface {auto,asgi3,asgi2,wsgi}" in help_text
    assert "--wsgi-threads N" in help_text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_asgi", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.e2e
def test_cli_refuses_an_asgi_app_as_wsgi() -> None:
    result = run_cli("examples.echo:app", "--interface", "wsgi")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "trio-asgi: error: --interface wsgi, but examples.echo.app is an async callable, "
        "i.e. an ASGI application; use --interface asgi3 (or auto)"
    )


@pytest.mark.e2e
@pytest.mark.parametrize("interface", [["--interface", "wsgi"], []], ids=["wsgi", "auto"])
async def test_flask_example_from_the_command_line(interface: list[str]) -> None:
    """``python -m trio_asgi examples.wsgi_flask:app``: starts without noise, serves, and
    stops with exit code 0 on SIGINT."""
    command = [sys.executable, "-m", "trio_asgi", "examples.wsgi_flask:app", *interface]
    command += ["--port", "0", "--wsgi-threads", "3", "--no-access-log"]
    process = await trio.lowlevel.open_process(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    output = b""
    try:
        with trio.fail_after(30):  # real seconds: a cold interpreter importing Flask
            while b"press CTRL+C to quit" not in output:
                data = await process.stderr.receive_some()
                assert data, f"the server exited early:\n{output.decode()}"
                output += data
        port = int(re.search(rb"http://127\.0\.0\.1:(\d+)", output)[1])  # type: ignore[index]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            hello = await http.get("/", params={"name": "cli"})
            echoed = await http.post("/echo", json={"a": 1})
            streamed = await http.get("/stream", params={"count": 2})
        process.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            code = await process.wait()
            while data := await process.stderr.receive_some():
                output += data
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (hello.text, echoed.json(), streamed.text) == (
        "Hello, cli!\n",
        {"json": {"a": 1}},
        "line 0 of 2\nline 1 of 2\n",
    )
    assert code == 0
    log = output.decode()
    lines = [line for line in log.splitlines() if line.strip()]
    # No noise: nothing above INFO, no traceback, nothing about lifespan.
    assert all(line.startswith("INFO:") for line in lines), log
    assert "lifespan" not in log.lower(), log
    detected = [line for line in lines if "WSGI application" in line]
    if interface:
        assert detected == [], log
    else:
        assert detected == [
            "INFO:  a Flask instance is a WSGI application (it takes (environ, start_response)):"
            " running it in up to 3 threads. Pass --interface to override."
        ]
