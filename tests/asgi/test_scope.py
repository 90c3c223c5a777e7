"""Scope construction: the keys the ASGI spec lists, and nothing mangled."""

from __future__ import annotations

from typing import Any

import h11
import pytest

from trio_asgi.asgi.scope import (
    ConnectionInfo,
    decode_path,
    http_scope,
    split_target,
    websocket_scope,
)
from trio_asgi.testing import TestClient


def request(target: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> h11.Request:
    return h11.Request(method="GET", target=target, headers=headers or [(b"Host", b"x")])


INFO = ConnectionInfo(client=("10.0.0.1", 1234), server=("127.0.0.1", 8000))


@pytest.mark.parametrize(
    ("target", "raw_path", "query"),
    [
        (b"/", b"/", b""),
        (b"/a/b?x=1&y=%20", b"/a/b", b"x=1&y=%20"),
        (b"/?", b"/", b""),
        (b"http://example.com/p?q", b"/p", b"q"),
        (b"https://example.com", b"/", b""),
        (b"*", b"*", b""),
    ],
)
def test_split_target(target: bytes, raw_path: bytes, query: bytes) -> None:
    assert split_target(target) == (raw_path, query)


def test_path_is_percent_decoded_utf8() -> None:
    assert decode_path(b"/caf%C3%A9/%2F") == "/café//"
    assert decode_path(b"/plain") == "/plain"
    assert decode_path(b"/bad%FF") == "/bad\ufffd"


def test_http_scope_keys() -> None:
    scope = http_scope(
        request(b"/caf%C3%A9?a=1", [(b"Host", b"x"), (b"X-Dup", b"1"), (b"x-dup", b"2")]),
        INFO,
        {"db": "conn"},
    )
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.5"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/café",
        "raw_path": b"/caf%C3%A9",
        "query_string": b"a=1",
        "root_path": "",
        "headers": [(b"host", b"x"), (b"x-dup", b"1"), (b"x-dup", b"2")],
        "client": ("10.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        "state": {"db": "conn"},
        "extensions": {},
    }


def test_absolute_form_target_replaces_host() -> None:
    """RFC 9112 3.2.2: the origin server MUST ignore Host and use the target's authority."""
    headers = [(b"Host", b"wrong.example"), (b"Accept", b"*/*")]
    scope = http_scope(request(b"http://user@right.example:8080/p?q", headers), INFO, {})
    assert scope["headers"] == [(b"host", b"right.example:8080"), (b"accept", b"*/*")]
    assert (scope["path"], scope["query_string"]) == ("/p", b"q")


def test_asterisk_form_is_not_put_under_the_root_path() -> None:
    info = ConnectionInfo(client=None, server=None, root_path="/mount")
    options = h11.Request(method="OPTIONS", target=b"*", headers=[(b"Host", b"x")])
    scope = http_scope(options, info, {})
    assert (scope["path"], scope["raw_path"], scope["root_path"]) == ("*", b"*", "/mount")
    assert http_scope(request(b"/a"), info, {})["path"] == "/mount/a"


def test_common_header_names_are_shared_between_scopes() -> None:
    """An open WebSocket keeps its scope: the usual header names are one object for all."""
    headers = [(b"Host", b"x"), (b"User-Agent", b"ua"), (b"X-Custom", b"1")]
    first = websocket_scope(request(b"/", list(headers)), INFO, {}, [])["headers"]
    second = websocket_scope(request(b"/", list(headers)), INFO, {}, [])["headers"]
    assert first == second == [(b"host", b"x"), (b"user-agent", b"ua"), (b"x-custom", b"1")]
    assert first[0][0] is second[0][0] and first[1][0] is second[1][0]
    assert first[2][0] is not second[2][0]  # (others are the parser's own copies)


def test_state_is_a_shallow_copy() -> None:
    state: dict[str, Any] = {"items": []}
    scope = http_scope(request(b"/"), INFO, state)
    scope["state"]["new"] = 1
    scope["state"]["items"].append(1)
    assert state == {"items": [1]}


def test_root_path_prefixes_path_and_raw_path() -> None:
    info = ConnectionInfo(client=None, server=None, root_path="/api")
    scope = http_scope(request(b"/items"), info, {})
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/api",
        "/api/items",
        b"/api/items",
    )


def test_websocket_scope_keys() -> None:
    scope = websocket_scope(request(b"/ws?t=1"), INFO, {}, ["chat", "v2"])
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/ws" and scope["query_string"] == b"t=1"
    assert scope["subprotocols"] == ["chat", "v2"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope


async def test_scope_seen_by_an_app_over_the_wire() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async with TestClient(app) as client:
        await client.get("/a%20b/c?x=%41", headers=[("X-One", "1"), ("x-one", "2")])
    [scope] = seen
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == b"/a%20b/c"
    assert scope["query_string"] == b"x=%41"
    assert scope["headers"][1:] == [(b"x-one", b"1"), (b"x-one", b"2")]
    assert scope["client"] == ("127.0.0.1", 50000)
    assert scope["server"] == ("testserver", 80)
    assert scope["http_version"] == "1.1"
