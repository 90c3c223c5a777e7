"""trio_asgi.testing's request URLs: resolved against base_url and sent like httpx does
(origin-form target, no fragment, percent-encoded UTF-8, Host from the URL, https scheme)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from trio_asgi.testing import TestClient


async def scope_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers HTTP with the interesting parts of its scope, as JSON; WebSocket likewise."""
    info = {
        "path": scope.get("path"),
        "raw_path": scope.get("raw_path", b"").decode("latin-1"),
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "scheme": scope.get("scheme"),
        "server": scope.get("server"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        if "headers" in scope
        else [],
    }
    if scope["type"] == "http":
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(info).encode()})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(info)})
        while (await receive())["type"] != "websocket.disconnect":
            pass


async def seen(client: TestClient, url: str, **kwargs: Any) -> dict[str, Any]:
    response = await client.get(url, **kwargs)
    assert response.status_code == 200
    info: dict[str, Any] = response.json()
    return info


async def seen_ws(client: TestClient, url: str, **kwargs: Any) -> dict[str, Any]:
    async with client.websocket(url, **kwargs) as ws:
        info: dict[str, Any] = await ws.receive_json()
    return info


async def test_url_fragment_is_not_sent() -> None:
    """A fragment is not part of the request-target (RFC 9110 4.2.1, RFC 3986 3.5)."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            page = await seen(client, "/page#section")
            query = await seen(client, "/page?x=1#section")
            socket = await seen_ws(client, "/ws?y=2#section")
    assert (page["path"], page["query_string"]) == ("/page", "")
    assert (query["path"], query["query_string"]) == ("/page", "x=1")
    assert (socket["path"], socket["query_string"]) == ("/ws", "y=2")


async def test_non_ascii_and_spaces_are_percent_encoded_as_utf8() -> None:
    """``/café`` goes as ``/caf%C3%A9`` (as with httpx and Starlette's TestClient); escapes
    already made stay as they are."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            cafe = await seen(client, "/café")
            query = await seen(client, "/a b?q=é ü&x=%2F")
            socket = await seen_ws(client, "/salle/été")
    assert (cafe["path"], cafe["raw_path"]) == ("/café", "/caf%C3%A9")
    assert (query["raw_path"], query["query_string"]) == ("/a%20b", "q=%C3%A9%20%C3%BC&x=%2F")
    assert socket["raw_path"] == "/salle/%C3%A9t%C3%A9"


async def test_relative_urls_resolve_against_base_url() -> None:
    """RFC 9112 3.2.1: the target is an absolute path. ``items`` and ``?page=2`` are resolved
    against base_url (RFC 3986 5.2), as httpx and Starlette's TestClient do."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            relative = await seen(client, "items")
            query_only = await seen(client, "?page=2")
        async with TestClient(scope_echo, base_url="http://testserver/api/") as client:
            under_api = await seen(client, "items")
            absolute_path = await seen(client, "/health")
    assert relative["path"] == "/items"
    assert (query_only["path"], query_only["query_string"]) == ("/", "page=2")
    assert under_api["path"] == "/api/items"
    assert absolute_path["path"] == "/health"


async def test_absolute_url_sets_the_host_header() -> None:
    """Apps that route on Host (Starlette's Host router, TrustedHostMiddleware) are tested
    with absolute URLs; the port is sent unless it is the scheme's default."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            plain = await seen(client, "http://example.org/x")
            default_port = await seen(client, "http://Example.org:80/x")
            other_port = await seen(client, "http://example.org:8080/x")
            given = await seen(client, "http://example.org/x", headers={"Host": "given"})
            socket = await seen_ws(client, "ws://chat.example.org/ws")
    assert ["host", "example.org"] in plain["headers"] and plain["path"] == "/x"
    assert ["host", "example.org"] in default_port["headers"]
    assert ["host", "example.org:8080"] in other_port["headers"]
    assert [name for name, _ in given["headers"]].count("host") == 1
    assert ["host", "given"] in given["headers"]
    assert ["host", "chat.example.org"] in socket["headers"]


async def test_websocket_host_header_replaces_the_urls() -> None:
    """Like an HTTP request's, instead of a second Host header that h11 refuses."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            socket = await seen_ws(client, "/ws", headers={"Host": "tenant.example"})
    hosts = [value for name, value in socket["headers"] if name == "host"]
    assert hosts == ["tenant.example"]


async def test_https_base_url_gives_https_scope() -> None:
    """As with Starlette's TestClient: scheme https/wss, port 443, no tls extension (no TLS
    is spoken in memory)."""
    with trio.fail_after(10):
        async with TestClient(scope_echo, base_url="https://testserver") as client:
            http = await seen(client, "/")
            absolute = await seen(client, "https://testserver/")
            socket = await seen_ws(client, "/ws")
            absolute_socket = await seen_ws(client, "wss://testserver/ws")
    assert (http["scheme"], http["server"]) == ("https", ["testserver", 443])
    assert (socket["scheme"], absolute["scheme"], absolute_socket["scheme"]) == (
        "wss",
        "https",
        "wss",
    )


async def test_a_url_of_the_other_scheme_is_refused() -> None:
    """The scheme the app sees is the base_url's, for the whole client: a URL that asks for
    the other one is an error, not a request that silently keeps the base_url's."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            with pytest.raises(ValueError, match="base_url"):
                await client.get("https://testserver/")
            with pytest.raises(ValueError, match="base_url"):
                async with client.websocket("wss://testserver/ws"):
                    pass
            with pytest.raises(ValueError, match="not an http"):
                await client.get("ftp://testserver/")


async def test_params_are_encoded_like_httpx() -> None:
    """``True``/``False`` as "true"/"false", ``None`` as an empty value, lists repeated;
    appended to a query the URL already has."""
    with trio.fail_after(10):
        async with TestClient(scope_echo) as client:
            info = await seen(
                client,
                "/search?q=x",
                params={"on": True, "off": False, "empty": None, "n": [1, 2], "s": "a b"},
            )
    assert info["query_string"] == "q=x&on=true&off=false&empty=&n=1&n=2&s=a+b"
