"""--access-log-format and --access-log-ws-format: every atom, laziness, bad formats."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import trio

from trio_asgi import Config, ConfigError
from trio_asgi.access_log import (
    DEFAULT_ACCESS_FORMAT,
    HTTP_ATOMS,
    WS_ATOMS,
    AccessFormat,
    AccessLine,
    compile_format,
)
from trio_asgi.cli import main, parse_args
from trio_asgi.testing import TestClient


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.close", "code": int(message["text"])})
        return
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"text/plain"), (b"x-id", b"1"), (b"x-id", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


async def http_line(
    caplog: pytest.LogCaptureFixture, fmt: str, url: str = "/a%20b/c?x=1&y=2", **config: Any
) -> str:
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    caplog.clear()
    async with TestClient(app, access_log_format=fmt, **config) as client:
        await client.post(url, content=b"abc", headers=[("User-Agent", "probe/1.0")])
    [line] = [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]
    return line


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("{client}", "127.0.0.1:50000"),
        ("{client_host}", "127.0.0.1"),
        ("{client_port}", "50000"),
        ("{method}", "POST"),
        ("{path}", "/a b/c"),
        ("{query}", "x=1&y=2"),
        ("{target}", "/a b/c?x=1&y=2"),
        ("{request_line}", "POST /a b/c?x=1&y=2 HTTP/1.1"),
        ("{http_version}", "1.1"),
        ("{scheme}", "http"),
        ("{status}", "201"),
        ("{bytes}", "5"),
        ("{request_header[user-agent]}", "probe/1.0"),
        ("{request_header[User-Agent]}", "probe/1.0"),  # names are case-insensitive
        ("{request_header[content-length]}", "3"),
        ("{request_header[referer]}", "-"),  # absent
        ("{response_header[content-type]}", "text/plain"),
        ("{response_header[x-id]}", "1, 2"),  # repeated headers joined
        ("{response_header[etag]}", "-"),
        ("{status:>5}|{method!r}", "  201|'POST'"),  # format specs and conversions
        ("{{literal}} {status}", "{literal} 201"),
    ],
)
async def test_http_atoms(caplog: pytest.LogCaptureFixture, fmt: str, expected: str) -> None:
    assert await http_line(caplog, fmt) == expected


async def test_duration_atoms(caplog: pytest.LogCaptureFixture) -> None:
    line = await http_line(caplog, "{duration_s} {duration_ms} {duration_us} {duration_ms:.2f}")
    seconds, millis, micros, rounded = line.split()
    assert 0 <= float(seconds) < 10
    assert float(millis) == pytest.approx(float(seconds) * 1000)
    assert int(micros) == round(float(seconds) * 1_000_000)
    assert re.fullmatch(r"\d+\.\d\d", rounded)


def test_every_atom_is_tested() -> None:
    """The parametrized cases above and below name every atom (keep them in step)."""
    tested = {"client", "client_host", "client_port", "method", "path", "query", "target"}
    tested |= {"request_line", "http_version", "scheme", "status", "bytes", "close_code"}
    tested |= {"duration_s", "duration_ms", "duration_us"}
    assert set(HTTP_ATOMS) | set(WS_ATOMS) == tested


async def test_default_format_is_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    line = await http_line(caplog, DEFAULT_ACCESS_FORMAT)
    expected = r'127\.0\.0\.1:50000 - "POST /a b/c\?x=1&y=2 HTTP/1\.1" 201 5 \d+\.\dms'
    assert re.fullmatch(expected, line)
    assert Config().access_log_format == DEFAULT_ACCESS_FORMAT


async def test_scheme_and_client_after_proxy_headers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    async with TestClient(app, proxy_headers=True, access_log_format="{client} {scheme}") as client:
        await client.get(
            "/", headers=[("X-Forwarded-For", "2001:db8::1"), ("X-Forwarded-Proto", "https")]
        )
        await client.get("/", headers=[("X-Forwarded-For", "unknown")])
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]
    assert lines == ["[2001:db8::1]:0 https", "- http"]


async def test_control_characters_are_escaped(caplog: pytest.LogCaptureFixture) -> None:
    line = await http_line(caplog, "{path} {query} {request_line}", url="/a%0Ab%1B?c=%0A")
    assert "\n" not in line and "\x1b" not in line
    assert line == "/a\\nb\\x1b c=%0A POST /a\\nb\\x1b?c=%0A HTTP/1.1"


async def test_quotes_and_backslashes_cannot_forge_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    line = await http_line(caplog, '"{request_line}" {status}', url='/a%22%20200%20x%5Cn"')
    assert line == '"POST /a\\x22 200 x\\\\n\\x22 HTTP/1.1" 201'


async def test_websocket_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    fmt = (
        "{client} {method} {path} {query} {scheme} {http_version} {close_code} "
        "{request_header[x-trace]} {request_line} {duration_us}"
    )
    async with TestClient(app, access_log_ws_format=fmt) as client:
        async with client.websocket("/ws?room=1", headers=[("X-Trace", "t1")]) as ws:
            await ws.send_text("4001")
            await ws.receive()
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]
    # A custom format means one line per session, written when it ends.
    [line] = lines
    head, micros = line.rsplit(" ", 1)
    assert head == "127.0.0.1:50000 GET /ws room=1 ws 1.1 4001 t1 GET /ws?room=1 HTTP/1.1"
    assert int(micros) >= 0


async def test_websocket_default_lines_are_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    async with TestClient(app) as client, client.websocket("/ws") as ws:
        await ws.send_text("4002")
        await ws.receive()
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]
    assert lines[0] == '127.0.0.1:50000 - "WebSocket /ws" open'
    closed = r'127\.0\.0\.1:50000 - "WebSocket /ws" closed 4002 after \d+\.\ds'
    assert re.fullmatch(closed, lines[1])


# -- cost ----------------------------------------------------------------------------------------


async def test_nothing_is_built_when_the_access_log_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("access line built although the access log is off")

    monkeypatch.setattr(AccessLine, "__init__", fail)
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    async with TestClient(app, access_log=False) as client:
        await client.get("/")
    caplog.set_level(logging.WARNING, logger="trio_asgi.access")  # or its logger is quiet
    async with TestClient(app) as client:
        await client.get("/")


async def test_lines_are_rendered_only_when_a_handler_formats_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered: list[str] = []
    real_render = AccessFormat.render

    def counting_render(self: AccessFormat, line: AccessLine) -> str:
        text = real_render(self, line)
        rendered.append(text)
        return text

    monkeypatch.setattr(AccessFormat, "render", counting_render)
    logger = logging.getLogger("trio_asgi.access")
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "handlers", [])
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)  # takes no INFO records: nothing is formatted
    logger.addHandler(handler)
    async with TestClient(app) as client:
        await client.get("/")
    assert rendered == []
    handler.setLevel(logging.INFO)
    handler.setStream(open("/dev/null", "w"))  # noqa: SIM115 (closed with the handler)
    try:
        async with TestClient(app) as client:
            await client.get("/")
    finally:
        handler.close()
    assert len(rendered) == 1


# -- bad formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "fmt", "message"),
    [
        ("access_log_format", "{nope}", "unknown atom {nope}"),
        ("access_log_format", "{close_code}", "unknown atom {close_code}"),
        ("access_log_ws_format", "{status}", "unknown atom {status}"),
        ("access_log_ws_format", "{response_header[x]}", "WebSocket lines have no response"),
        ("access_log_format", "{request_header}", "headers are {request_header[name]}"),
        ("access_log_format", "{request_header[]}", "is not an atom"),
        ("access_log_format", "{client[0]}", "is not an atom"),
        ("access_log_format", "{client.__class__}", "unknown atom"),
        ("access_log_format", "{}", "positional fields"),
        ("access_log_format", "{0}", "positional fields"),
        ("access_log_format", "{status", "expected '}'"),
        ("access_log_format", "status}", "Single '}'"),
        ("access_log_format", "{status:{width}}", "cannot contain {fields}"),
        ("access_log_format", "{client:d}", "cannot render"),
        ("access_log_format", "{client_port:05d}", "cannot render"),  # '-' when unknown
        ("access_log_format", "{status:.1z}", "cannot render"),
    ],
)
def test_bad_formats_are_refused(setting: str, fmt: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config(**{setting: fmt})
    assert str(info.value).startswith(f"{setting}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_format_on_the_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["examples.echo:app", "--access-log-format", "{nope} {status}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("trio-asgi: error: access_log_format: unknown atom {nope}")


def test_flags_map_onto_config() -> None:
    _, config = parse_args(
        [
            "m:app",
            "--access-log-format", "{status}",
            "--access-log-ws-format", "{close_code}",
            "--log-config", __file__,
        ]
    )  # fmt: skip
    assert config.access_log_format == "{status}"
    assert config.access_log_ws_format == "{close_code}"
    assert config.log_config == __file__


def test_formats_are_compiled_once() -> None:
    assert compile_format("{status} {path}", "http") is compile_format("{status} {path}", "http")


def test_access_format_with_the_access_log_off_is_allowed() -> None:
    """Not a contradiction: a config file can set a format and the command line can still
    switch the log off (--no-access-log wins)."""
    _, config = parse_args(["m:app", "--access-log-format", "{status}", "--no-access-log"])
    assert config.access_log is False


# -- requests the server answers itself --------------------------------------------------------

REFUSED = [
    pytest.param(
        b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", '"- - HTTP/1.1" 400 ', id="400"
    ),
    pytest.param(
        b"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        '"- - HTTP/1.1" 431 ',
        id="431",
    ),
    pytest.param(b"CONNECT example.org:443 HTTP/1.1\r\nHost: x\r\n\r\n", '"CONNECT ', id="405"),
    pytest.param(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        '"GET /chat HTTP/1.1" 426 ',
        id="426-websocket-version",
    ),
]


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trio_asgi.access"]


@pytest.mark.parametrize(("request_bytes", "expected"), REFUSED)
async def test_refused_requests_get_a_line(
    caplog: pytest.LogCaptureFixture, request_bytes: bytes, expected: str
) -> None:
    """Operators look for scanners and broken clients in the access log: a request the
    server refuses without running the app gets its line too, in the same format (the
    request line is "- - HTTP/1.1" when the head could not be read)."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    async with TestClient(app) as client:
        stream = await client.connect()
        await stream.send_all(request_bytes)
        response = await stream.receive_until_eof()
    body = response.partition(b"\r\n\r\n")[2]
    [line] = logged(caplog)
    assert expected in line
    assert line.startswith("127.0.0.1:")
    assert f" {len(body)} " in line  # the body bytes of the server's answer


async def test_overload_503_gets_a_line(caplog: pytest.LogCaptureFixture) -> None:
    """--limit-concurrency in 503 mode: refused requests are what an operator most needs to
    see, and a parsed request shows its request line."""
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    entered, release = trio.Event(), trio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        entered.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    config = {"limit_concurrency": 1, "limit_concurrency_mode": "503"}
    async with TestClient(slow, **config) as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.get, "/first")
        await entered.wait()
        refused = await client.connect()
        await refused.send_all(b"GET /second?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 503 " in await refused.receive_until_eof()
        release.set()
    lines = logged(caplog)
    assert any('"GET /second?q=1 HTTP/1.1" 503 ' in line for line in lines), lines
    assert any('"GET /first HTTP/1.1" 204 ' in line for line in lines), lines


async def test_refused_requests_are_quiet_with_the_access_log_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_asgi.access")
    async with TestClient(app, access_log=False) as client:
        stream = await client.connect()
        await stream.send_all(REFUSED[0].values[0])  # type: ignore[index]
        await stream.receive_until_eof()
    assert logged(caplog) == []
