"""--proxy-headers: who the client is, from trusted proxies only (trio_asgi/proxy.py)."""

from __future__ import annotations

from typing import Any

import h11
import pytest

from trio_asgi import Config, ConfigError
from trio_asgi.asgi.scope import ConnectionInfo, http_scope, websocket_scope
from trio_asgi.cli import build_parser, parse_args
from trio_asgi.proxy import (
    ProxyHeaders,
    TrustedProxies,
    parse_forwarded_element,
    parse_node,
)
from trio_asgi.testing import TestClient

Headers = list[tuple[str, str]]


def recorder() -> tuple[list[dict[str, Any]], Any]:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        seen.append(scope)
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    return seen, app


async def scope_for(
    headers: Headers,
    *,
    peer: str = "127.0.0.1",
    trusted: str = "127.0.0.1",
    proxy_headers: bool = True,
    **config: Any,
) -> dict[str, Any]:
    """The scope the app gets for one GET / with ``headers``, from ``peer``."""
    seen, app = recorder()
    async with TestClient(
        app,
        client_host=peer,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=trusted,
        **config,
    ) as client:
        response = await client.get("/", headers=headers)
    assert response.status_code == 200
    [scope] = seen
    return scope


def host_header(scope: dict[str, Any]) -> list[bytes]:
    return [value for name, value in scope["headers"] if name == b"host"]


# -- X-Forwarded-* ----------------------------------------------------------------------------


async def test_trusted_peer_sets_client_scheme_and_host() -> None:
    scope = await scope_for(
        [
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "example.com:8443"),
        ]
    )
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"
    assert host_header(scope) == [b"example.com:8443"]
    # The proxy's headers stay for the app to read.
    assert (b"x-forwarded-for", b"203.0.113.7") in scope["headers"]


async def test_untrusted_peer_is_ignored() -> None:
    scope = await scope_for(
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        peer="192.0.2.9",
    )
    assert scope["client"] == ("192.0.2.9", 50000)
    assert scope["scheme"] == "http"


async def test_off_by_default() -> None:
    assert Config().proxy_headers is False
    scope = await scope_for([("X-Forwarded-For", "203.0.113.7")], proxy_headers=False)
    assert scope["client"] == ("127.0.0.1", 50000)


async def test_untrusted_peer_never_parses_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trust decision is made once per connection; requests from others cost nothing."""

    def fail(self: ProxyHeaders, scope: dict[str, Any]) -> None:
        raise AssertionError("headers parsed for an untrusted peer")

    monkeypatch.setattr(ProxyHeaders, "apply", fail)
    scope = await scope_for([("X-Forwarded-For", "203.0.113.7")], peer="192.0.2.9")
    assert scope["client"] == ("192.0.2.9", 50000)


@pytest.mark.parametrize(
    ("x_forwarded_for", "trusted", "client"),
    [
        # The rightmost untrusted address is the client; what the client wrote is ignored.
        ("6.6.6.6, 203.0.113.7", "127.0.0.1", "203.0.113.7"),
        ("203.0.113.7, 10.0.0.2, 10.0.0.3", "127.0.0.1, 10.0.0.0/8", "203.0.113.7"),
        ("203.0.113.7, 10.0.0.2, 192.0.2.1", "127.0.0.1,10.0.0.0/8", "192.0.2.1"),
        ("1.1.1.1, 203.0.113.7, 10.1.2.3", "127.0.0.0/8, 10.1.0.0/16", "203.0.113.7"),
        # Every hop trusted: the leftmost address is all we know.
        ("10.0.0.1, 10.0.0.2", "127.0.0.1, 10.0.0.0/8", "10.0.0.1"),
        # '*' trusts every hop, so the leftmost, client-written address wins (use with care).
        ("6.6.6.6, 203.0.113.7", "*", "6.6.6.6"),
        # Empty list elements are skipped (RFC 9110 5.6.1); addresses are normalised.
        ("203.0.113.7,, ,10.0.0.2", "127.0.0.1,10.0.0.2", "203.0.113.7"),
        ("2001:DB8::1, 10.0.0.2", "127.0.0.1,10.0.0.2", "2001:db8::1"),
        ("::ffff:10.0.0.9, 10.0.0.2", "127.0.0.1,10.0.0.2", "10.0.0.9"),
    ],
)
async def test_x_forwarded_for_chains(x_forwarded_for: str, trusted: str, client: str) -> None:
    scope = await scope_for([("X-Forwarded-For", x_forwarded_for)], trusted=trusted)
    assert scope["client"] == (client, 0)


async def test_repeated_header_lines_form_one_list() -> None:
    scope = await scope_for(
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "10.0.0.2")],
        trusted="127.0.0.1, 10.0.0.2",
    )
    assert scope["client"] == ("203.0.113.7", 0)


async def test_x_forwarded_for_with_ports() -> None:
    scope = await scope_for([("X-Forwarded-For", "203.0.113.7:4711")])
    assert scope["client"] == ("203.0.113.7", 4711)
    scope = await scope_for([("X-Forwarded-For", "[2001:db8::7]:4711")])
    assert scope["client"] == ("2001:db8::7", 4711)


@pytest.mark.parametrize(
    ("headers", "scheme", "host"),
    [
        # One value per hop (each proxy appended): the client's hop.
        (
            [
                ("X-Forwarded-For", "203.0.113.7, 10.0.0.2"),
                ("X-Forwarded-Proto", "https, http"),
                ("X-Forwarded-Host", "example.com, internal"),
            ],
            "https",
            b"example.com",
        ),
        # A single value (the nearest proxy overwrote it): that value.
        (
            [
                ("X-Forwarded-For", "203.0.113.7, 10.0.0.2"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "example.com"),
            ],
            "https",
            b"example.com",
        ),
        # Lists of another length: the last value, the nearest proxy's.
        (
            [
                ("X-Forwarded-For", "203.0.113.7, 10.0.0.2"),
                ("X-Forwarded-Proto", "http, https, https"),
            ],
            "https",
            b"testserver",
        ),
        # Proto and host without X-Forwarded-For: client unchanged.
        ([("X-Forwarded-Proto", "HTTPS")], "https", b"testserver"),
    ],
)
async def test_proto_and_host_come_from_the_clients_hop(
    headers: Headers, scheme: str, host: bytes
) -> None:
    scope = await scope_for(headers, trusted="127.0.0.1, 10.0.0.2")
    assert scope["scheme"] == scheme
    assert host_header(scope) == [host]


async def test_ipv6_peer_and_trust_list() -> None:
    scope = await scope_for(
        [("X-Forwarded-For", "2001:db8::7, fd00::2")], peer="::1", trusted="::1, fd00::/8"
    )
    assert scope["client"] == ("2001:db8::7", 0)
    scope = await scope_for([("X-Forwarded-For", "2001:db8::7")], peer="::1", trusted="127.0.0.1")
    assert scope["client"] == ("::1", 50000)


async def test_ipv4_mapped_peer_matches_ipv4_entry() -> None:
    scope = await scope_for([("X-Forwarded-For", "203.0.113.7")], peer="::ffff:127.0.0.1")
    assert scope["client"] == ("203.0.113.7", 0)


def test_ipv4_mapped_network_in_the_trust_list_matches_ipv4_peers() -> None:
    """How a dual-stack listener shows IPv4 proxies: peers are matched as IPv4, so such a
    network must be too (it was kept as IPv6 and silently matched no one)."""
    trusted = TrustedProxies("::ffff:10.0.0.0/104")
    assert trusted.trusts_peer(("::ffff:10.0.0.1", 1))
    assert trusted.trusts_peer(("10.0.0.1", 1))
    assert not trusted.trusts_peer(("11.0.0.1", 1))
    assert not TrustedProxies("::/96").trusts_peer(("10.0.0.1", 1))  # not a mapped network


@pytest.mark.parametrize("value", ["unknown", "_hidden", "UNKNOWN"])
async def test_unknown_client_becomes_none(value: str) -> None:
    scope = await scope_for([("X-Forwarded-For", value)])
    assert scope["client"] is None


# -- Forwarded (RFC 7239) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded", "client", "scheme", "host"),
    [
        ("for=203.0.113.7", ("203.0.113.7", 0), "http", b"testserver"),
        ('for="203.0.113.7:4711";proto=https', ("203.0.113.7", 4711), "https", b"testserver"),
        ('For="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", 4711), "http", b"testserver"),
        ('for="[2001:db8::17]"', ("2001:db8::17", 0), "http", b"testserver"),
        ("for=[2001:db8::17]:80", ("2001:db8::17", 80), "http", b"testserver"),  # unquoted
        (
            "for=203.0.113.7;host=example.com;proto=https",
            ("203.0.113.7", 0),
            "https",
            b"example.com",
        ),
        (
            'for=203.0.113.7;host="example.com:8443"',
            ("203.0.113.7", 0),
            "http",
            b"example.com:8443",
        ),
        ("for=203.0.113.7:_port1", ("203.0.113.7", 0), "http", b"testserver"),
        ("for=unknown;proto=https", None, "https", b"testserver"),
        ("for=_hidden", None, "http", b"testserver"),
        ("proto=https;host=example.com", ("127.0.0.1", 50000), "https", b"example.com"),
        ("for=203.0.113.7;by=10.0.0.1;secret=x", ("203.0.113.7", 0), "http", b"testserver"),
        ('for="203.0.113.7";proto="https"', ("203.0.113.7", 0), "https", b"testserver"),
        ("for=203.0.113.7; proto=https", ("203.0.113.7", 0), "https", b"testserver"),
        # RFC 7239 4: a quoted extension value may hold "," and ";" (the header was dropped)
        ('for=203.0.113.7;proto=https;ext="a,b"', ("203.0.113.7", 0), "https", b"testserver"),
        ('for=203.0.113.7;ext="a;\\"b";proto=https', ("203.0.113.7", 0), "https", b"testserver"),
    ],
)
async def test_forwarded(
    forwarded: str, client: tuple[str, int] | None, scheme: str, host: bytes
) -> None:
    scope = await scope_for([("Forwarded", forwarded)])
    assert scope["client"] == client
    assert scope["scheme"] == scheme
    assert host_header(scope) == [host]


@pytest.mark.parametrize(
    ("forwarded", "trusted", "client", "scheme"),
    [
        # Walked from the right; proto comes from the element that named the client.
        (
            "for=6.6.6.6;proto=http, for=203.0.113.7;proto=https, for=10.0.0.2",
            "127.0.0.1, 10.0.0.0/8",
            ("203.0.113.7", 0),
            "https",
        ),
        # Garbage that the client wrote left of its own hop is never parsed.
        ('for="unbalanced, for=203.0.113.7', "127.0.0.1", ("203.0.113.7", 0), "http"),
        ('for="a, b";x=1, for=203.0.113.7', "127.0.0.1", ("203.0.113.7", 0), "http"),
        ("for=(garbage), for=203.0.113.7", "127.0.0.1", ("203.0.113.7", 0), "http"),
        # Everything trusted: the leftmost element.
        (
            "for=10.0.0.1;proto=https, for=10.0.0.2",
            "127.0.0.1,10.0.0.0/8",
            ("10.0.0.1", 0),
            "https",
        ),
        # An element without for= ends the walk at the last address known.
        ("proto=https, for=10.0.0.2", "127.0.0.1,10.0.0.0/8", ("10.0.0.2", 0), "https"),
        # An untrusted hop's claims about the scheme are not believed.
        ("for=203.0.113.7;proto=https, for=192.0.2.1", "127.0.0.1", ("192.0.2.1", 0), "http"),
    ],
)
async def test_forwarded_chains(
    forwarded: str, trusted: str, client: tuple[str, int], scheme: str
) -> None:
    scope = await scope_for([("Forwarded", forwarded)], trusted=trusted)
    assert scope["client"] == client
    assert scope["scheme"] == scheme


async def test_forwarded_over_several_header_lines() -> None:
    scope = await scope_for(
        [("Forwarded", "for=203.0.113.7;proto=https"), ("Forwarded", "for=10.0.0.2")],
        trusted="127.0.0.1, 10.0.0.2",
    )
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"


async def test_x_forwarded_takes_precedence_over_forwarded() -> None:
    """Most proxies set X-Forwarded-For and pass a client's Forwarded through untouched."""
    scope = await scope_for(
        [
            ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
            ("X-Forwarded-For", "203.0.113.7"),
        ]
    )
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "http"
    assert host_header(scope) == [b"testserver"]
    # Never mixed: any X-Forwarded-* header means Forwarded is not read at all.
    scope = await scope_for(
        [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-Proto", "https")],
    )
    assert scope["client"] == ("127.0.0.1", 50000)
    assert scope["scheme"] == "https"


# -- malformed input: ignored, never an error ---------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-For", "not-an-ip")],
        [("X-Forwarded-For", "300.1.1.1")],
        [("X-Forwarded-For", "1.2.3.4:99999")],
        [("X-Forwarded-For", "[::1")],
        [("X-Forwarded-For", "[::1]x")],
        [("X-Forwarded-For", "")],
        [("X-Forwarded-For", ", ,")],
        [("X-Forwarded-For", "1.2.3.4/8")],
        [("X-Forwarded-Proto", "ht tp")],
        [("X-Forwarded-Proto", "gopher")],
        [("X-Forwarded-Host", "evil.example/path")],
        [("X-Forwarded-Host", "user@evil.example")],
        [("X-Forwarded-Host", "")],
        [("Forwarded", "for")],
        [("Forwarded", "for=")],
        [("Forwarded", "=1.2.3.4")],
        [("Forwarded", 'for="1.2.3.4')],
        [("Forwarded", 'for="1.2"3.4"')],
        [("Forwarded", 'for="1.2.3.4\\"')],
        [("Forwarded", "for=1.2.3.4;for=5.6.7.8")],
        [("Forwarded", "for=1.2.3.4;host=a b")],
        [("Forwarded", "for=1.2.3.4;host=evil/x")],
        [("Forwarded", "for=1.2.3.4;proto=a/b")],
        [("Forwarded", "for=not-an-ip")],
        [("Forwarded", 'for="[::1]:80:90"')],
        [("Forwarded", "for=\x85")],
        [("Forwarded", ",,,")],
    ],
)
async def test_malformed_headers_are_ignored(headers: Headers) -> None:
    scope = await scope_for(headers)
    assert scope["client"] == ("127.0.0.1", 50000)
    assert scope["scheme"] == "http"
    assert host_header(scope) == [b"testserver"]


def test_malformed_host_in_a_valid_chain_keeps_the_client() -> None:
    """X-Forwarded-Host and -Proto are checked on their own; a bad one does not undo the
    client address (which came from a well-formed header)."""
    scope = _scope(
        [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-host", b"a b")], trusted="*"
    )
    assert scope["client"] == ("203.0.113.7", 0)
    assert host_header(scope) == [b"x"]


# -- WebSocket, root path, unix sockets ---------------------------------------------------------


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [("https", "wss"), ("http", "ws"), ("wss", "wss"), ("ws", "ws"), ("HTTPS", "wss")],
)
async def test_websocket_scheme_mapping(proto: str, scheme: str) -> None:
    seen, app = recorder()
    async with TestClient(app, proxy_headers=True) as client:
        headers = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", proto)]
        async with client.websocket("/ws", headers=headers) as ws:
            await ws.receive()
    [scope] = seen
    assert scope["scheme"] == scheme
    assert scope["client"] == ("203.0.113.7", 0)


async def test_websocket_forwarded_sets_host() -> None:
    seen, app = recorder()
    async with TestClient(app, proxy_headers=True) as client:
        headers = [("Forwarded", 'for="[2001:db8::1]:5000";proto=https;host=chat.example')]
        async with client.websocket("/ws", headers=headers) as ws:
            await ws.receive()
    [scope] = seen
    assert scope["client"] == ("2001:db8::1", 5000)
    assert scope["scheme"] == "wss"
    assert host_header(scope) == [b"chat.example"]


@pytest.mark.parametrize("proto", ["https", "wss"])
async def test_http_scope_maps_websocket_schemes_back(proto: str) -> None:
    scope = await scope_for([("X-Forwarded-Proto", proto)])
    assert scope["scheme"] == "https"


async def test_root_path_behind_a_proxy_that_strips_the_prefix() -> None:
    """nginx's `location /api/ { proxy_pass http://app/; }` sends /items for /api/items."""
    seen, app = recorder()
    async with TestClient(app, proxy_headers=True, root_path="/api") as client:
        await client.get(
            "/items/1?x=1",
            headers=[
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "example.com"),
            ],
        )
    [scope] = seen
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/api",
        "/api/items/1",
        b"/api/items/1",
    )
    assert scope["client"] == ("203.0.113.7", 0)
    # What an app needs to rebuild its public URL: https://example.com/api/items/1?x=1
    assert (scope["scheme"], host_header(scope)) == ("https", [b"example.com"])


def _scope(
    headers: list[tuple[bytes, bytes]],
    *,
    client: tuple[str, int] | None = ("127.0.0.1", 5000),
    trusted: str = "127.0.0.1",
    websocket: bool = False,
) -> dict[str, Any]:
    proxy = ProxyHeaders(TrustedProxies(trusted))
    info = ConnectionInfo(
        client=client,
        server=("127.0.0.1", 8000),
        proxy=proxy if proxy.trusts_peer(client) else None,
    )
    request = h11.Request(method="GET", target="/", headers=[(b"host", b"x"), *headers])
    if websocket:
        return websocket_scope(request, info, {}, [])
    return http_scope(request, info, {})


@pytest.mark.parametrize(
    ("trusted", "applied"),
    [("unix", True), ("*", True), ("127.0.0.1, unix", True), ("127.0.0.1", False)],
)
def test_unix_socket_peers_are_trusted_with_unix_or_star(trusted: str, applied: bool) -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.7")]
    for peer in (None, ("", 0), ("/run/app.sock", 0)):  # however a unix peer is described
        scope = _scope(headers, client=peer, trusted=trusted)
        assert (scope["client"] == ("203.0.113.7", 0)) is applied, peer


def test_unix_hops_in_a_chain() -> None:
    """nginx writes "unix:" as the address of a unix-socket client."""
    headers = [(b"x-forwarded-for", b"203.0.113.7, unix:")]
    assert _scope(headers, trusted="127.0.0.1, unix")["client"] == ("203.0.113.7", 0)
    assert _scope(headers, trusted="127.0.0.1")["client"] is None


def test_http_1_0_request_without_host_gets_one() -> None:
    proxy = ProxyHeaders(TrustedProxies("127.0.0.1"))
    info = ConnectionInfo(client=("127.0.0.1", 1), server=None, proxy=proxy)
    request = h11.Request(
        method="GET",
        target="/",
        headers=[(b"x-forwarded-host", b"example.com")],
        http_version="1.0",
    )
    assert host_header(http_scope(request, info, {})) == [b"example.com"]


# -- the parsers and the trust list -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", ("ip", "1.2.3.4", 0)),
        ("1.2.3.4:80", ("ip", "1.2.3.4", 80)),
        ("[::1]", ("ip", "::1", 0)),
        ("[::1]:443", ("ip", "::1", 443)),
        ("::1", ("ip", "::1", 0)),
        ("unknown", ("unknown", None, 0)),
        ("_a.b-c", ("unknown", None, 0)),
        ("unix:", ("unix", None, 0)),
        ("unix:/run/nginx.sock", ("unix", None, 0)),
    ],
)
def test_parse_node(text: str, expected: tuple[str, str | None, int]) -> None:
    kind, ip, port = parse_node(text)
    assert (kind, None if ip is None else ip[2], port) == expected


@pytest.mark.parametrize(
    "text", ["", "1.2.3", "1.2.3.4:", "1.2.3.4:x", "[1.2.3.4]", "[::1]:", "_", "example.com"]
)
def test_parse_node_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_node(text)


def test_parse_forwarded_element() -> None:
    assert parse_forwarded_element('For="[::1]:80";PROTO=https;;by=_x') == {
        "for": "[::1]:80",
        "proto": "https",
        "by": "_x",
    }
    assert parse_forwarded_element('for="a\\"b"') == {"for": 'a"b'}


def test_trust_list() -> None:
    trusted = TrustedProxies(" 10.0.0.0/8 , 192.0.2.1, ::1 ,, unix")
    assert trusted.trusts_peer(("10.200.0.1", 1))
    assert trusted.trusts_peer(("192.0.2.1", 1))
    assert not trusted.trusts_peer(("192.0.2.2", 1))
    assert trusted.trusts_peer(("::1", 1))
    assert trusted.trusts_peer(None)
    assert not TrustedProxies("").anyone
    assert TrustedProxies("*").trusts_peer(("8.8.8.8", 1))


@pytest.mark.parametrize("spec", ["localhost", "10.0.0.0/33", "1.2.3.4.5", "10.0.0.1-10.0.0.9"])
def test_bad_trust_list_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        Config(forwarded_allow_ips=spec)


def test_forwarded_allow_ips_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Config().forwarded_allow_ips == "127.0.0.1"
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8,unix")
    assert Config().forwarded_allow_ips == "10.0.0.0/8,unix"
    _, config = parse_args(["m:app", "--proxy-headers"])
    assert config.forwarded_allow_ips == "10.0.0.0/8,unix"
    _, config = parse_args(["m:app", "--forwarded-allow-ips", "*"])  # the flag wins
    assert config.forwarded_allow_ips == "*"
    help_text = " ".join(build_parser().format_help().split())
    assert "(default: $FORWARDED_ALLOW_IPS, else 127.0.0.1)" in help_text


async def test_forwarded_allow_ips_from_the_environment_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.0/24")
    seen, app = recorder()
    async with TestClient(app, client_host="192.0.2.9", proxy_headers=True) as client:
        await client.get("/", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert seen[0]["client"] == ("203.0.113.7", 0)


def test_websocket_scope_without_proxy_headers_is_untouched() -> None:
    scope = _scope([(b"x-forwarded-proto", b"https")], trusted="", websocket=True)
    assert scope["scheme"] == "ws"


async def test_test_client_reports_app_errors_behind_proxy_headers() -> None:
    """TestClient ties an app's exception to the connection it served, even when the scope
    names the forwarded client instead."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise RuntimeError("boom")

    async with TestClient(app, proxy_headers=True) as client:
        with pytest.raises(RuntimeError, match="boom"):
            await client.get("/", headers=[("X-Forwarded-For", "unknown")])


async def test_wsgi_apps_see_the_forwarded_values() -> None:
    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST")
        return [" ".join(str(environ.get(key)) for key in keys).encode()]

    async with TestClient(wsgi_app, interface="wsgi", proxy_headers=True) as client:
        response = await client.get(
            "/",
            headers=[
                ("Forwarded", 'for="[2001:db8::1]:4711";proto=https;host=example.com'),
            ],
        )
    assert response.text == "2001:db8::1 4711 https example.com"
