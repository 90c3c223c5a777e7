"""``--proxy-headers``: the client, scheme and host a trusted proxy reports for a request.

Behind a reverse proxy every connection comes from the proxy, so the connection alone says
nothing about the client. Proxies say it in headers, ``Forwarded`` (RFC 7239) or the de facto
``X-Forwarded-For/-Proto/-Host``, but any client can send those headers too. So they are read
only from peers named in ``--forwarded-allow-ips``, and the address list is walked from the
right, the end the nearest proxy appended to: each trusted address is a proxy we may believe
about the hop before it, and the first untrusted one is the client. Whatever a client wrote
itself sits further left and is never looked at.

Whether the peer is trusted is decided once per connection (``trusts_peer``); the headers are
parsed per request, and only on trusted connections.

Choices (README, "Behind a proxy"):

- When a request carries any ``X-Forwarded-*`` header, those are used and ``Forwarded`` is
  ignored, never mixed. Nearly every proxy (nginx, HAProxy, the cloud balancers) sets
  ``X-Forwarded-For`` but passes a client's ``Forwarded`` through untouched, so preferring
  ``Forwarded`` would let clients forge it. A proxy that speaks only ``Forwarded`` must remove
  incoming ``X-Forwarded-*``.
- Scheme and host come from the same hop as the client: the ``Forwarded`` element that named
  the client; with ``X-Forwarded-*``, the entry at the client's position when the lists are
  equally long (each proxy appended), otherwise the last entry (a proxy that overwrote it).
- An ``unknown`` or obfuscated (``_hidden``) hop ends the walk: the proxy says it does not know
  or will not tell who the client is, so ``scope["client"]`` becomes ``None``.
- A header that does not parse where the walk reads it is ignored as a whole; the request is
  served as if the header were absent. Parts left of where the walk stops (client-written)
  are never parsed, so a client cannot make us ignore its proxy's header by sending garbage.
"""

from __future__ import annotations

import ipaddress
import re
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import Any, Final

# An IP address as the walk uses it: (version, value as an int, canonical text).
IP = tuple[int, int, str]
Client = tuple[str, int] | None
# What a walk found: the client (False: leave it as it is), the protocol and the host.
Hop = tuple[Client | bool, str | None, str | None]

# What a hop in a chain can be, besides an IP address.
_UNKNOWN: Final = "unknown"  # RFC 7239 "unknown" or an obfuscated identifier
_UNIX: Final = "unix"  # nginx writes "unix:" as $remote_addr for a unix-socket client

# scope["scheme"] for each forwarded protocol, for http and websocket scopes; other protocol
# names are ignored.
_SCHEMES: Final = {
    "http": ("http", "ws"),
    "https": ("https", "wss"),
    "ws": ("http", "ws"),
    "wss": ("https", "wss"),
}

# Header name -> slot in ProxyHeaders.apply; one dict lookup per request header.
_FORWARDED: Final = 0
_X_FOR: Final = 1
_X_PROTO: Final = 2
_X_HOST: Final = 3
_HOST: Final = 4
_NAMES: Final = {
    b"forwarded": _FORWARDED,
    b"x-forwarded-for": _X_FOR,
    b"x-forwarded-proto": _X_PROTO,
    b"x-forwarded-host": _X_HOST,
    b"host": _HOST,
}

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNQUOTED = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z:\[\]-]+")
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}")
# A Host header value we are willing to hand to the app: a DNS name or IPv4 address, or a
# bracketed IPv6 address, with an optional port. Nothing that could smuggle a path, a
# userinfo or a second value.
_HOST_VALUE = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class TrustedProxies:
    """The ``--forwarded-allow-ips`` list, parsed once: addresses, networks, ``*``, ``unix``."""

    __slots__ = ("_hosts", "_networks", "everyone", "unix")

    def __init__(self, spec: str) -> None:
        """Raises ``ValueError`` naming the first item that is none of the accepted forms."""
        self.everyone = False
        self.unix = False
        self._hosts: set[tuple[int, int]] = set()  # (version, address as an int)
        self._networks: list[tuple[int, int, int]] = []  # (version, network, mask)
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            if item == "*":
                self.everyone = True
            elif item.lower() == "unix":
                self.unix = True
            elif "/" in item:
                try:
                    network = ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP network") from None
                if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
                    mapped = network.network_address.ipv4_mapped
                    if mapped is not None:  # ::ffff:a.b.c.d/N: peers are matched as IPv4
                        network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
                mask = int(network.netmask)
                self._networks.append((network.version, int(network.network_address), mask))
            else:
                ip = parse_ip(item)
                if ip is None:
                    raise ValueError(
                        f"{item!r} is not an IP address, a network (CIDR), 'unix' or '*'"
                    )
                self._hosts.add(ip[:2])

    @property
    def anyone(self) -> bool:
        """Whether any peer at all can be trusted (an empty list trusts no one)."""
        return self.everyone or self.unix or bool(self._hosts) or bool(self._networks)

    def trusts_ip(self, ip: IP) -> bool:
        version, value, _ = ip
        if self.everyone or (version, value) in self._hosts:
            return True
        for network_version, network, mask in self._networks:
            if version == network_version and value & mask == network:
                return True
        return False

    def trusts_peer(self, client: Client) -> bool:
        """Whether the connection's peer may tell us about the client. A peer without an IP
        address (a unix socket: no client address, or a path) is trusted with ``unix``."""
        if self.everyone:
            return True
        if client is None or not client[0]:
            return self.unix
        ip = parse_ip(client[0].partition("%")[0])  # without an IPv6 zone (fe80::1%eth0)
        if ip is None:
            return self.unix
        return self.trusts_ip(ip)


def parse_ip(text: str) -> IP | None:
    """``(version, value, canonical text)`` of an IP address; ``None`` if it is not one.

    ``inet_pton`` parses in C and is strict (no leading zeros, no spaces); ``ipaddress``
    would cost microseconds per hop. ``::ffff:10.0.0.1`` (an IPv4 peer on a dual-stack
    socket) is ``10.0.0.1``; IPv6 is written in its compressed lowercase form.
    """
    if ":" not in text:
        try:
            return 4, int.from_bytes(inet_pton(AF_INET, text), "big"), text
        except OSError:
            return None
    try:
        packed = inet_pton(AF_INET6, text)
    except OSError:
        return None
    value = int.from_bytes(packed, "big")
    if value >> 32 == 0xFFFF:
        value &= 0xFFFFFFFF
        return 4, value, inet_ntop(AF_INET, packed[12:])
    return 6, value, inet_ntop(AF_INET6, packed)


def parse_node(text: str) -> tuple[str, IP | None, int]:
    """A hop of a chain: ``(kind, ip, port)``, kind ``"ip"``, ``"unknown"`` or ``"unix"``.

    Accepts RFC 7239 nodes (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]``, ``[::1]:80``, ``unknown``,
    ``_obfuscated``, obfuscated ports) and what ``X-Forwarded-For`` carries in practice (bare
    IPv6, ``unix:``). The port is 0 when not given. Raises ``ValueError`` otherwise.
    """
    if text[:1] == "[":
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and rest[0] != ":") or ":" not in address:
            raise ValueError(text)
        ip = parse_ip(address)
        port = _node_port(rest[1:]) if rest else 0
    elif text.count(":") > 1:  # a bare IPv6 address
        ip = parse_ip(text)
        port = 0
    else:
        host, colon, port_text = text.partition(":")
        if host[:1].isdigit():
            ip = parse_ip(host)
            port = _node_port(port_text) if colon else 0
        else:
            lowered = host.lower()
            if lowered == "unix":
                return _UNIX, None, 0
            if lowered == "unknown" or _OBFUSCATED.fullmatch(host):
                return _UNKNOWN, None, 0
            raise ValueError(text)
    if ip is None:
        raise ValueError(text)
    return "ip", ip, port


def _node_port(text: str) -> int:
    if _OBFUSCATED.fullmatch(text):
        return 0
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise ValueError(text)
    return int(text)


def _list_items(values: list[bytes]) -> list[str]:
    """The elements of a comma-separated header, over all its lines; empty ones dropped
    (RFC 9110 5.6.1)."""
    if len(values) == 1 and b"," not in values[0]:  # the usual case: one line, one value
        text = values[0].decode("latin-1")
        return [text] if text.strip() else []
    return [item for item in _split(b",".join(values).decode("latin-1"), ",") if item.strip()]


def _split(text: str, separator: str) -> list[str]:
    """``text.split(separator)``, except inside quoted-strings (RFC 9110 5.6.4): a
    ``Forwarded`` value may be one, and an extension's may hold ``,`` or ``;`` (RFC 7239 4).

    An unbalanced quote splits plainly: a client's garbage left of the proxies' elements
    (which balance their quotes) must not swallow them; an open quote can only be its own.
    """
    if '"' not in text:
        return text.split(separator)
    parts = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:index])
            start = index + 1
    if quoted:
        return text.split(separator)
    parts.append(text[start:])
    return parts


def _unquote(value: str) -> str:
    """A token, or a quoted-string without its quotes; ``ValueError`` if it is neither.

    Unquoted values may also hold ``[``, ``]`` and ``:``: RFC 7239 wants IPv6 addresses and
    ports quoted, but proxies that forget are common and the meaning is unambiguous.
    """
    if not value.startswith('"'):
        if not _UNQUOTED.fullmatch(value):
            raise ValueError(value)
        return value
    if len(value) < 2 or not value.endswith('"'):
        raise ValueError(value)
    inner = value[1:-1]
    if "\\" not in inner and '"' not in inner:
        return inner
    chars = []
    escaped = False
    for char in inner:
        if escaped:
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            raise ValueError(value)
        else:
            chars.append(char)
    if escaped:  # the closing quote was escaped
        raise ValueError(value)
    return "".join(chars)


def parse_forwarded_element(element: str) -> dict[str, str]:
    """The parameters of one ``Forwarded`` element, names lowercased; ``ValueError`` when it
    is malformed (syntax, a repeated parameter, an invalid ``host=`` or ``proto=``)."""
    params: dict[str, str] = {}
    for pair in _split(element, ";"):
        pair = pair.strip()
        if not pair:
            continue
        name, equals, value = pair.partition("=")
        if not equals or not _TOKEN.fullmatch(name):
            raise ValueError(pair)
        name = name.lower()
        if name in params:
            raise ValueError(f"repeated {name}")
        params[name] = _unquote(value)
    host = params.get("host")
    if host is not None and not _HOST_VALUE.fullmatch(host):
        raise ValueError(host)
    proto = params.get("proto")
    if proto is not None and not _TOKEN.fullmatch(proto):
        raise ValueError(proto)
    return params


class ProxyHeaders:
    """Applies a trusted peer's proxy headers to a scope (``--proxy-headers``)."""

    __slots__ = ("trusted",)

    def __init__(self, trusted: TrustedProxies) -> None:
        self.trusted = trusted

    def trusts_peer(self, client: Client) -> bool:
        return self.trusted.trusts_peer(client)

    def apply(self, scope: dict[str, Any]) -> None:
        """Rewrite ``client``, ``scheme`` and the ``host`` header of a fresh scope in place.

        The headers stay in the scope as they came, so apps can still read them.
        """
        found: list[list[bytes] | None] = [None, None, None, None]
        host_index = -1
        headers = scope["headers"]
        for index, (name, value) in enumerate(headers):
            slot = _NAMES.get(name)
            if slot is None:
                continue
            if slot == _HOST:
                host_index = index
                continue
            values = found[slot]
            if values is None:
                found[slot] = [value]
            else:
                values.append(value)
        forwarded, x_for, x_proto, x_host = found
        hop: Hop | None
        if x_for is not None or x_proto is not None or x_host is not None:
            hop = self._x_forwarded(x_for, x_proto, x_host)
        elif forwarded is not None:
            hop = self._forwarded(forwarded)
        else:
            return
        if hop is None:
            return
        client, proto, host = hop
        if client is not False:
            scope["client"] = client
        if proto is not None:
            schemes = _SCHEMES.get(proto.lower())
            if schemes is not None:
                scope["scheme"] = schemes[scope["type"] == "websocket"]
        if host is not None:
            if host_index >= 0:
                headers[host_index] = (b"host", host.encode("ascii"))
            else:
                headers.append((b"host", host.encode("ascii")))

    def _walk(self, nodes: list[str]) -> tuple[int, Client | bool] | None:
        """Index of the hop that is the client, walking from the right, and its address;
        ``None`` when a node the walk reaches does not parse."""
        trusted = self.trusted
        for index in range(len(nodes) - 1, -1, -1):
            try:
                kind, ip, port = parse_node(nodes[index].strip())
            except ValueError:
                return None
            if kind == "ip":
                assert ip is not None
                if index and trusted.trusts_ip(ip):
                    continue
                return index, (ip[2], port)
            if kind == _UNIX and index and (trusted.unix or trusted.everyone):
                continue
            return index, None
        return None

    def _x_forwarded(
        self, x_for: list[bytes] | None, x_proto: list[bytes] | None, x_host: list[bytes] | None
    ) -> Hop:
        client: Client | bool = False
        position = -1  # which hop proto and host should describe; -1: the last one
        count = 0
        if x_for is not None:
            nodes = _list_items(x_for)
            walked = self._walk(nodes) if nodes else None
            if walked is not None:
                position, client = walked
                count = len(nodes)
        proto = _pick(x_proto, position, count)
        if proto is not None and not _TOKEN.fullmatch(proto):
            proto = None
        host = _pick(x_host, position, count)
        if host is not None and not _HOST_VALUE.fullmatch(host):
            host = None
        return client, proto, host

    def _forwarded(self, values: list[bytes]) -> Hop | None:
        elements = _list_items(values)
        trusted = self.trusted
        client: Client | bool = False  # the last address the walk passed, if any
        for index in range(len(elements) - 1, -1, -1):
            try:
                params = parse_forwarded_element(elements[index])
                node = params.get("for")
                if node is None:
                    # This hop does not say where it came from: the walk ends here and the
                    # client is the last address we know.
                    return client, params.get("proto"), params.get("host")
                kind, ip, port = parse_node(node)
            except ValueError:
                return None
            if kind == "ip":
                assert ip is not None
                client = (ip[2], port)
                if index and trusted.trusts_ip(ip):
                    continue
            elif kind == _UNIX and index and (trusted.unix or trusted.everyone):
                client = None
                continue
            else:
                client = None
            return client, params.get("proto"), params.get("host")
        return None


def _pick(values: list[bytes] | None, position: int, count: int) -> str | None:
    """The ``X-Forwarded-Proto``/``-Host`` entry for the client's hop (see module doc)."""
    if values is None:
        return None
    items = _list_items(values)
    if not items:
        return None
    if position >= 0 and len(items) == count:
        return items[position].strip()
    return items[-1].strip()
