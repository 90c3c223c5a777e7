"""The WSGI adaptor with plain PEP 3333 apps: environ, wsgi.input, start_response, write(),
close(), errors, WebSocket and lifespan — all through the in-process TestClient."""

from __future__ import annotations

import json
import logging
import sys
import warnings
import wsgiref.validate
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from trio_asgi.testing import TestClient, WebSocketDenied

from .wsgi_helpers import Flag

Environ = dict[str, Any]


def text_app(body: bytes = b"hello", status: str = "200 OK") -> Any:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain")])
        return [body]

    return app


def environ_app(environ: Environ, start_response: Any) -> list[bytes]:
    """Echo the environ (what JSON can carry) and the body."""
    body = environ["wsgi.input"].read()
    shown = {key: value for key, value in environ.items() if isinstance(value, str | bool)}
    shown["wsgi.version"] = list(environ["wsgi.version"])
    shown["body"] = body.decode("latin-1")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(shown).encode()]


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    """A request body sent chunked, one HTTP chunk per piece."""
    for piece in pieces:
        yield piece


# -- environ ---------------------------------------------------------------------------------


async def test_environ_has_every_pep_3333_key() -> None:
    async with TestClient(environ_app, interface="wsgi") as client:
        response = await client.post(
            "/some/path",
            params={"q": "1", "r": "a b"},
            content=b"name=value",
            headers=[("Content-Type", "application/x-www-form-urlencoded"), ("X-Custom", "yes")],
        )
    assert response.status_code == 200
    environ = response.json()
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/some/path"
    assert environ["QUERY_STRING"] == "q=1&r=a+b"
    assert environ["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert environ["CONTENT_LENGTH"] == "10"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_HOST"] == "testserver"
    assert environ["HTTP_X_CUSTOM"] == "yes"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("testserver", "80")
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"].isdigit()
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is False
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert environ["body"] == "name=value"


async def test_get_without_body_has_no_content_headers() -> None:
    async with TestClient(environ_app, interface="wsgi") as client:
        environ = (await client.get("/")).json()
    assert "CONTENT_LENGTH" not in environ and "CONTENT_TYPE" not in environ
    assert environ["QUERY_STRING"] == ""
    assert environ["body"] == ""


async def test_root_path_becomes_script_name() -> None:
    async with TestClient(environ_app, interface="wsgi", root_path="/mount") as client:
        environ = (await client.get("/inner/page")).json()
        root = (await client.get("/")).json()
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/mount", "/inner/page")
    assert (root["SCRIPT_NAME"], root["PATH_INFO"]) == ("/mount", "/")


async def test_path_info_is_bytes_as_latin1() -> None:
    """PEP 3333: PATH_INFO carries the decoded bytes, each byte one latin-1 character, and
    bytes that are not UTF-8 survive (scope["path"] would have replaced them)."""
    async with TestClient(environ_app, interface="wsgi", root_path="/caf\u00e9") as client:
        environ = (await client.get("/na%C3%AFve/%FF%2Fx")).json()
    assert environ["SCRIPT_NAME"] == "/caf\u00c3\u00a9"  # the UTF-8 bytes of "é", as latin-1
    assert environ["PATH_INFO"] == "/na\u00c3\u00afve/\u00ff/x"  # %FF stays the byte 0xFF


async def test_headers_joined_cookies_kept_underscores_dropped() -> None:
    headers = [
        ("Accept", "text/html"),
        ("Accept", "application/json"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("X-User", "alice"),
        ("X_User", "mallory"),  # would spoof HTTP_X_USER
    ]
    async with TestClient(environ_app, interface="wsgi") as client:
        environ = (await client.get("/", headers=headers)).json()
    assert environ["HTTP_ACCEPT"] == "text/html,application/json"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_X_USER"] == "alice"


async def test_wsgiref_validator_finds_nothing_wrong() -> None:
    """The stdlib's PEP 3333 checker wraps the app: it asserts on every environ key, on
    wsgi.input/wsgi.errors, on start_response and on the server calling close()."""

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        stream = environ["wsgi.input"]
        first = stream.readline()
        rest = stream.read(int(environ.get("CONTENT_LENGTH") or 0) - len(first))
        environ["wsgi.errors"].write("validated\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([first, rest])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with TestClient(wsgiref.validate.validator(app), interface="wsgi") as client:
            got = await client.post("/v?x=1", content=b"line one\nline two")
            head = await client.head("/v")
    assert [str(w.message) for w in caught if w.category is wsgiref.validate.WSGIWarning] == []
    assert got.status_code == 200
    assert got.content == b"line one\nline two"
    assert head.status_code == 200 and head.content == b""


# -- wsgi.input ------------------------------------------------------------------------------


async def test_input_file_methods_across_chunk_boundaries() -> None:
    """Lines split over several body chunks come out whole, whichever method reads them."""

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        result = {
            "readline": stream.readline().decode(),
            "readline_limited": stream.readline(3).decode(),
            "read3": stream.read(3).decode(),
            "read0": stream.read(0).decode(),
            "iterated": [line.decode() for line in stream][:2],
        }
        result["readlines"] = [line.decode() for line in stream.readlines()]
        result["after_end"] = stream.read().decode() + stream.readline().decode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(result).encode()]

    body = chunks(b"fir", b"st\nsec", b"ond\nthi", b"rd\nfourth\nfi", b"fth\nsixth")
    async with TestClient(app, interface="wsgi") as client:
        result = (await client.post("/", content=body)).json()
    assert result == {
        "readline": "first\n",
        "readline_limited": "sec",
        "read3": "ond",
        "read0": "",
        "iterated": ["\n", "third\n"],
        "readlines": [],
        "after_end": "",
    }


async def test_input_readlines_and_readinto() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        buffer = bytearray(4)
        count = stream.readinto(buffer)
        lines = stream.readlines()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([count, buffer.decode(), [x.decode() for x in lines]]).encode()]

    async with TestClient(app, interface="wsgi") as client:
        result = (await client.post("/", content=chunks(b"abcd", b"e\nf", b"g\n", b"h"))).json()
    assert result == [4, "abcd", ["e\n", "fg\n", "h"]]


async def test_continue_is_sent_only_when_the_app_reads() -> None:
    def reads(environ: Environ, start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    expect = {"Expect": "100-continue"}
    async with TestClient(reads, interface="wsgi") as client:
        response = await client.post("/", content=b"payload", headers=expect)
    assert [status for status, _ in response.informational] == [100]
    assert response.content == b"payload"

    async with TestClient(text_app(b"no thanks"), interface="wsgi") as client:
        response = await client.post("/", content=b"payload", headers=expect)
    assert response.informational == []
    assert response.content == b"no thanks"


# -- responses -------------------------------------------------------------------------------


async def test_single_item_list_gets_content_length() -> None:
    async with TestClient(text_app(b"hello"), interface="wsgi") as client:
        response = await client.get("/")
    assert response.headers["content-length"] == "5"
    assert "transfer-encoding" not in response.headers
    assert response.content == b"hello"


async def test_empty_body_gets_content_length_zero() -> None:
    def empty(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("201 Created", [("Location", "/thing")])
        return []

    async with TestClient(empty, interface="wsgi") as client:
        response = await client.post("/")
    assert response.status_code == 201
    assert response.headers["content-length"] == "0"
    assert response.headers["location"] == "/thing"


async def test_head_keeps_the_apps_content_length() -> None:
    """Frameworks answer HEAD with the GET's Content-Length and no body: not an error."""

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "1234")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"x" * 1234]

    async with TestClient(app, interface="wsgi") as client:
        response = await client.head("/")
        again = await client.get("/")  # the connection is still good
    assert response.headers["content-length"] == "1234"
    assert response.content == b""
    assert again.content == b"x" * 1234
    assert response.connection_id == again.connection_id


async def test_generator_app_calls_start_response_lazily() -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one "
        yield b""  # empty chunks are allowed and skipped
        yield b"two"

    async with TestClient(app, interface="wsgi") as client:
        response = await client.get("/")
    assert response.content == b"one two"
    assert response.headers["transfer-encoding"] == "chunked"


async def test_write_callable() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"")
        write(b"then ")
        return [b"returned"]

    async with TestClient(app, interface="wsgi") as client:
        response = await client.get("/")
    assert response.content == b"written then returned"


async def test_declared_content_length_stops_the_iteration() -> None:
    """PEP 3333: never send more than Content-Length; stop iterating once it is reached."""
    closed = Flag()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"hello"
            yield b" world"
            raise AssertionError("iterated past Content-Length")

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: Any) -> Body:
        start_response("200 OK", [("Content-Length", "8")])
        return Body()

    async with TestClient(app, interface="wsgi") as client:
        response = await client.get("/")
        again = await client.get("/")
    assert response.content == b"hello wo"
    assert again.connection_id == response.connection_id
    assert closed.is_set()


async def test_body_shorter_than_content_length_is_an_app_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        return [b"short", b""]

    async with TestClient(app, interface="wsgi", raise_app_exceptions=False) as client:
        with pytest.raises(Exception):  # noqa: B017 - the client sees a cut-off body
            await client.get("/")
    assert "ended 5 bytes short of the Content-Length" in caplog.text


async def test_write_past_content_length_raises_in_the_app() -> None:
    seen = Flag()

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Length", "3")])
        try:
            write(b"four")
        except RuntimeError as exc:
            seen.set(str(exc))
        write(b"abc")
        return []

    async with TestClient(app, interface="wsgi") as client:
        response = await client.get("/")
    assert response.content == b"abc"
    assert "only 3 remain" in seen.value


# -- exc_info and errors ---------------------------------------------------------------------


class Boom(Exception):
    pass


def responding(status: Any, headers: Any, body: Any = ()) -> Any:
    """An app that calls start_response with these (possibly wrong) arguments."""

    def app(environ: Environ, start_response: Any) -> Any:
        start_response(status, headers)
        return body

    return app


async def test_exc_info_replaces_headers_not_yet_sent() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Stale", "yes")])
        try:
            raise Boom("while rendering")
        except Boom:
            start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
            )
            return [b"error page"]

    async with TestClient(app, interface="wsgi") as client:
        response = await client.get("/")
    assert response.status_code == 500
    assert response.content == b"error page"
    assert "x-stale" not in response.headers


async def test_exc_info_after_headers_were_sent_reraises() -> None:
    reraised = Flag()

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial output")
        try:
            raise Boom("too late")
        except Boom as original:
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())
            except Boom as again:
                reraised.set(again is original)
                raise
        return []

    async with TestClient(app, interface="wsgi") as client:
        with pytest.raises(Boom, match="too late"):
            await client.get("/")
    assert reraised.value is True


async def test_start_response_twice_without_exc_info_is_an_error() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return []

    async with TestClient(app, interface="wsgi", raise_app_exceptions=False) as client:
        response = await client.get("/")
    assert response.status_code == 500


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (lambda environ, start_response: None, "returned NoneType, not an iterable of bytes"),
        (lambda environ, start_response: [], "returned without calling start_response()"),
        (lambda environ, start_response: [b"x"], "body bytes before calling start_response()"),
        (responding("200 OK", [], ["text"]), "yielded str, not bytes (encode it)"),
        (responding("OK", []), "status must look like '200 OK'"),
        (responding("200 OK", [("X-A", 1)]), "name and value must be str"),
        (responding("200 OK", [("X-A", "\u20ac")]), "is not latin-1 text"),
        (responding("200 OK", {"X-A": "1"}), "must be a list of (name, value)"),
        (responding("200 OK", ["X-A"]), "is not a (name, value) pair"),
    ],
    ids=[
        "none",
        "no-start-response",
        "body-before-start-response",
        "str-chunk",
        "bad-status",
        "int-header",
        "non-latin1",
        "header-dict",
        "header-not-pair",
    ],
)
async def test_app_mistakes_give_500_and_a_clear_log(
    app: Any, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestClient(app, interface="wsgi", raise_app_exceptions=False) as client:
        response = await client.get("/")
        again = await client.get("/")
    assert response.status_code == 500
    assert again.status_code == 500  # the server is fine
    assert message in caplog.text


async def test_a_type_error_inside_the_apps_iterable_is_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not reported as "not an iterable": the app's own error, with its own message."""

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            raise TypeError("the template engine failed")

    def app(environ: Environ, start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    async with TestClient(app, interface="wsgi", raise_app_exceptions=False) as client:
        assert (await client.get("/")).status_code == 500
    assert "the template engine failed" in caplog.text
    assert "not an iterable" not in caplog.text


@pytest.mark.parametrize(
    "header", [("X-A", "1\r\nSet-Cookie: x=1"), ("X A", "1"), ("X-A", "nul\x00")]
)
async def test_invalid_headers_fail_in_start_response_where_the_app_can_handle_it(
    header: tuple[str, str],
) -> None:
    """PEP 3333: checked when start_response() is called, so the app's own error handling
    runs (it used to fail only when the head was sent: the server's generic 500)."""

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        try:
            start_response("200 OK", [header])
        except ValueError:
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
            return [b"handled by the app"]
        return [b"not refused"]

    async with TestClient(app, interface="wsgi") as client:
        response = await client.get("/")
    assert (response.status_code, response.content) == (502, b"handled by the app")


async def test_exception_before_start_response_is_a_500() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        raise Boom("broken view")

    async with TestClient(app, interface="wsgi", raise_app_exceptions=False) as client:
        response = await client.get("/")
    assert response.status_code == 500


async def test_invalid_header_value_is_refused_by_the_server() -> None:
    """Header injection: h11 refuses the value, so the app gets an error, the client a 500."""

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: owned=1")])
        return [b"body"]

    async with TestClient(app, interface="wsgi", raise_app_exceptions=False) as client:
        response = await client.get("/")
    assert response.status_code == 500
    assert "set-cookie" not in response.headers


async def test_wsgi_errors_go_to_the_error_logger(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.writelines(["line\n", "unfinished"])
        start_response("200 OK", [])
        return []

    with caplog.at_level(logging.ERROR, logger="trio_asgi.error"):
        async with TestClient(app, interface="wsgi") as client:
            await client.get("/where")
    messages = [r.getMessage() for r in caplog.records if r.name == "trio_asgi.error"]
    assert messages == [
        "WSGI app (GET /where): first line",
        "WSGI app (GET /where): second line",
        "WSGI app (GET /where): unfinished",
    ]


async def test_wsgi_errors_without_newlines_are_logged_in_bounded_pieces(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        for _ in range(4):
            environ["wsgi.errors"].write("x" * 5000)  # never a newline
        start_response("200 OK", [])
        return []

    with caplog.at_level(logging.ERROR, logger="trio_asgi.error"):
        async with TestClient(app, interface="wsgi") as client:
            await client.get("/")
    pieces = [r.getMessage() for r in caplog.records if r.name == "trio_asgi.error"]
    assert "".join(p.removeprefix("WSGI app (GET /): ") for p in pieces) == "x" * 20_000
    assert len(pieces) == 2 and all(len(p) < 11_000 for p in pieces)


# -- close() ---------------------------------------------------------------------------------


class Tracked:
    """A response iterable that records whether close() was called."""

    def __init__(self, chunks: list[bytes], fail_at: int | None = None) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.closed = Flag()

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise Boom("failed mid-body")
            yield chunk

    def close(self) -> None:
        self.closed.set()


@pytest.mark.parametrize(
    ("fail_at", "status"), [(None, 200), (0, 500), (1, None)], ids=["ok", "first", "mid-body"]
)
async def test_close_is_called_however_the_iteration_ends(
    fail_at: int | None, status: int | None
) -> None:
    body = Tracked([b"a", b"b", b"c"], fail_at=fail_at)

    def app(environ: Environ, start_response: Any) -> Tracked:
        start_response("200 OK", [])
        return body

    async with TestClient(app, interface="wsgi", raise_app_exceptions=False) as client:
        if status is None:  # failed after the head was sent: the connection is cut
            with pytest.raises(Exception):  # noqa: B017
                await client.get("/")
        else:
            assert (await client.get("/")).status_code == status
    assert body.closed.is_set()


# -- WebSocket and lifespan ------------------------------------------------------------------


async def test_websocket_request_gets_a_clean_404() -> None:
    async with TestClient(text_app(), interface="wsgi") as client:
        with pytest.raises(WebSocketDenied) as denied:
            async with client.websocket("/ws"):
                pass
        assert (await client.get("/")).status_code == 200
    assert denied.value.status_code == 404
    assert b"WSGI" in denied.value.body


@pytest.mark.parametrize("lifespan", ["auto", "on"])
async def test_lifespan_is_quiet(lifespan: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="trio_asgi"):
        async with TestClient(text_app(), interface="wsgi", lifespan=lifespan) as client:
            assert (await client.get("/")).status_code == 200
    assert not [r for r in caplog.records if "lifespan" in r.getMessage().lower()]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
