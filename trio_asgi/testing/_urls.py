"""Request URLs and query parameters, read the way httpx (and Starlette's TestClient) reads
them, and turned into what goes on the wire: an origin-form target and a Host header."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SECURE_SCHEMES = frozenset({"https", "wss"})
# What RFC 3986 lets stand unescaped in a path (pchar and "/") and a query (also "?"); "%"
# too, so escapes already made stay as they are.
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class Target:
    """Where a request goes: its origin-form target, Host header, and whether it is https/wss."""

    target: str
    host: str
    secure: bool


def _escape(text: str, safe: str) -> str:
    """Percent-encode as UTF-8 what may not stand as it is (non-ASCII, spaces, a lone "%")."""
    return quote(_LONE_PERCENT.sub("%25", text), safe=safe)


def _authority(hostname: str, port: int | None, scheme: str) -> str:
    """The Host header: IDNA-encoded, IPv6 in brackets, the port unless it is the default."""
    host = f"[{hostname}]" if ":" in hostname else hostname.encode("idna").decode("ascii")
    return host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"


def resolve(base_url: str, url: str) -> Target:
    """``url`` resolved against ``base_url`` (RFC 3986 5.2: ``items`` and ``?page=2`` are
    relative to it, a path starting with "/" replaces its path); the fragment is dropped, as
    it is never sent (RFC 9110 4.2.1)."""
    parts = urlsplit(urljoin(base_url, url))
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    target = _escape(parts.path, _PATH_SAFE) or "/"
    if parts.query:
        target += "?" + _escape(parts.query, _QUERY_SAFE)
    return Target(
        target=target,
        host=_authority(parts.hostname, parts.port, parts.scheme),
        secure=parts.scheme in _SECURE_SCHEMES,
    )


def _primitive(value: Any) -> str:
    """A parameter value as httpx writes it: ``True`` is "true", ``None`` an empty value."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def encode_params(params: Mapping[str, Any]) -> str:
    """``{"a": [1, 2], "on": True, "q": None}`` → ``a=1&a=2&on=true&q=`` (as httpx does)."""
    pairs = [
        (key, _primitive(item))
        for key, value in params.items()
        for item in (value if isinstance(value, list | tuple) else [value])
    ]
    return urlencode(pairs)
