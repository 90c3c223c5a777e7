"""Build the ``http`` and ``websocket`` scopes from a parsed request head (ASGI spec 2.5)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import h11

from .._types import Address, ServerAddress

if TYPE_CHECKING:
    from ..proxy import ProxyHeaders
    from ..tls import TLSDetails

ASGI_VERSION: Final = "3.0"
SPEC_VERSION: Final = "2.5"

# The lower-cased names of headers that most requests carry. A scope's headers refer to one
# shared bytes object per such name instead of a fresh copy per request: a WebSocket keeps
# its scope as long as it is open, and a browser's handshake repeats a dozen of these (about
# 45 bytes each per idle connection).
_COMMON_NAMES: Final = {
    name: name
    for name in (
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"authorization",
        b"cache-control",
        b"connection",
        b"content-length",
        b"content-type",
        b"cookie",
        b"host",
        b"origin",
        b"pragma",
        b"referer",
        b"sec-websocket-extensions",
        b"sec-websocket-key",
        b"sec-websocket-protocol",
        b"sec-websocket-version",
        b"upgrade",
        b"user-agent",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-real-ip",
    )
}


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What every scope on one connection shares: addresses, scheme, server-wide settings."""

    client: Address | None
    server: ServerAddress | None
    root_path: str = ""
    http_extensions: dict[str, dict[object, object]] = field(default_factory=dict)
    tls: TLSDetails | None = None  # TLS connections only: the ASGI "tls" extension
    # Set only when --proxy-headers is on and this peer is a trusted proxy (decided once per
    # connection): then each scope is corrected from the proxy's headers.
    proxy: ProxyHeaders | None = None

    @property
    def secure(self) -> bool:
        """TLS: the scheme is https/wss (a trusted proxy may still say otherwise)."""
        return self.tls is not None


@dataclass(frozen=True, slots=True)
class SecureTransportInfo(ConnectionInfo):
    """An in-process transport that stands for TLS without being TLS (the test client with
    an https:// base_url). Only code in this process that hands the server a stream picks it;
    no listener does, so no remote peer can. (A class, not a field: every connection would
    carry the field.)"""

    @property
    def secure(self) -> bool:
        return True


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``(raw_path, query_string)`` of a request target in origin or absolute form."""
    if target[:1] != b"/" and b"://" in target:
        # absolute-form (RFC 9112 3.2.2), as sent to proxies, of any scheme (the protocol
        # layer let only these forms through): keep only path and query
        try:
            parts = urlsplit(target)
        except ValueError:  # (a CONNECT target, which is never parsed: logged as it is)
            return target, b""
        return parts.path or b"/", parts.query
    raw_path, _, query = target.partition(b"?")
    return raw_path, query


def _host_from_target(
    target: bytes, headers: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """RFC 9112 3.2.2: with an absolute-form target the server MUST ignore Host and use the
    target's authority instead (userinfo is not part of it)."""
    try:
        authority = urlsplit(target).netloc.rpartition(b"@")[2]
    except ValueError:  # (a CONNECT target, which is never parsed)
        return headers
    if not authority:
        return headers
    return [(name, authority if name == b"host" else value) for name, value in headers]


def decode_path(raw_path: bytes) -> str:
    """Percent-decoded UTF-8 path; h11 only lets ASCII through, so decoding cannot fail."""
    text = raw_path.decode("ascii")
    if "%" in text:
        return unquote(text, encoding="utf-8", errors="replace")
    return text


def _scope(
    kind: str,
    scheme: str,
    request: h11.Request,
    fields: Iterable[tuple[bytes, bytes]],
    info: ConnectionInfo,
    state: dict[str, Any],
    extensions: dict[str, dict[object, object]],
) -> dict[str, Any]:
    """The keys HTTP and WebSocket scopes share (ASGI spec 2.5, "Connection Scope")."""
    target = request.target
    raw_path, query = split_target(target)
    root = info.root_path
    path = root + decode_path(raw_path)
    full_raw_path = root.encode("utf-8") + raw_path if root else raw_path
    if raw_path == b"*":  # OPTIONS *: the server as a whole, not a path under the root
        path, full_raw_path = "*", raw_path
    headers = [(_COMMON_NAMES.get(name, name), value) for name, value in fields]
    if target[:1] != b"/" and raw_path != b"*":
        headers = _host_from_target(target, headers)
    if info.tls is not None:
        extensions["tls"] = info.tls.scope_extension()
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": ASGI_VERSION, "spec_version": SPEC_VERSION},
        "http_version": request.http_version.decode("ascii"),
        "scheme": scheme,
        "path": path,
        "raw_path": full_raw_path,
        "query_string": query,
        "root_path": root,
        "headers": headers,
        "client": info.client,
        "server": info.server,
        "state": state.copy(),
        "extensions": extensions,
    }
    if info.proxy is not None:
        info.proxy.apply(scope)
    return scope


def http_scope(
    request: h11.Request,
    info: ConnectionInfo,
    state: dict[str, Any],
    fields: Iterable[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    """``fields``: the request's header fields, if already listed (``request.headers``
    otherwise)."""
    extensions = {name: dict(value) for name, value in info.http_extensions.items()}
    scheme = "https" if info.secure else "http"
    scope = _scope("http", scheme, request, fields or request.headers, info, state, extensions)
    scope["method"] = request.method.decode("ascii")
    return scope


def websocket_scope(
    request: h11.Request,
    info: ConnectionInfo,
    state: dict[str, Any],
    subprotocols: list[str],
    fields: Iterable[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    """``fields`` as for ``http_scope``."""
    extensions: dict[str, dict[object, object]] = {"websocket.http.response": {}}
    scheme = "wss" if info.secure else "ws"
    scope = _scope("websocket", scheme, request, fields or request.headers, info, state, extensions)
    scope["subprotocols"] = subprotocols
    return scope
