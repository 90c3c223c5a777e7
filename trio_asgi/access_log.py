"""Access-log lines in the format of ``--access-log-format`` / ``--access-log-ws-format``.

A format is Python's ``str.format`` syntax over named *atoms*: ``{status}``, ``{client}``,
``{duration_ms:.1f}``, ``{request_header[user-agent]}`` (README, "Access log format", lists
them all). It is compiled once (and cached) into the template plus the atoms it names, and
checked then by rendering it on sample lines, so a bad format fails at startup rather than
in a log handler.

The access log is on every request's path, so the work is deferred: the server logs an
``AccessLine`` object, which computes only the atoms its format names, and only when a
handler turns the record into text. Nothing at all happens when the access log is off: the
callers check first, before measuring time.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Sequence
from typing import Any, Final

# The lines as they were before formats became configurable; keep them as they are.
DEFAULT_ACCESS_FORMAT: Final = '{client} - "{request_line}" {status} {bytes} {duration_ms:.1f}ms'
DEFAULT_WS_ACCESS_FORMAT: Final = (
    '{client} - "WebSocket {path}" closed {close_code} after {duration_s:.1f}s'
)

MISSING: Final = "-"  # what an atom with no value renders as (no client address, no header)


def format_address(address: tuple[str, int | None] | None) -> str:
    if address is None:
        return MISSING
    host, port = address
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def printable(text: str) -> str:
    """Control characters escaped, so a request cannot forge extra log lines (a path is
    percent-decoded: ``%0A`` is a newline)."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


class AccessLine:
    """One access-log record's message, rendered when (and if) a handler asks for it."""

    __slots__ = ("close_code", "duration", "format", "response_headers", "scope", "size", "status")

    def __init__(
        self,
        format: AccessFormat,
        scope: dict[str, Any],
        duration: float,
        *,
        status: int = 0,
        size: int = 0,
        close_code: int = 0,
        response_headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.format = format
        self.scope = scope
        self.duration = duration
        self.status = status
        self.size = size
        self.close_code = close_code
        self.response_headers = response_headers

    def __str__(self) -> str:
        return self.format.render(self)


# -- atoms -------------------------------------------------------------------------------------


def _client_host(line: AccessLine) -> str:
    client = line.scope["client"]
    return client[0] if client else MISSING


def _client_port(line: AccessLine) -> int | str:
    client = line.scope["client"]
    return client[1] if client and client[1] is not None else MISSING


def _query(line: AccessLine) -> str:
    return printable(line.scope["query_string"].decode("latin-1"))


def _target(line: AccessLine) -> str:
    query = line.scope["query_string"]
    path = line.scope["path"]
    return printable(path + "?" + query.decode("latin-1") if query else path)


def _method(line: AccessLine) -> str:
    return line.scope.get("method", "GET")  # type: ignore[no-any-return]


def _request_line(line: AccessLine) -> str:
    return f"{_method(line)} {_target(line)} HTTP/{line.scope['http_version']}"


Atom = Callable[[AccessLine], object]

# name -> (getter, what it is); the descriptions are what the README lists.
COMMON_ATOMS: Final[dict[str, tuple[Atom, str]]] = {
    "client": (
        lambda line: format_address(line.scope["client"]),
        "client address, host:port ([v6]:port); '-' if unknown",
    ),
    "client_host": (_client_host, "client IP address (or '-')"),
    "client_port": (_client_port, "client port (or '-'; 0 when a proxy did not say)"),
    "method": (_method, "request method (GET for WebSocket)"),
    "path": (lambda line: printable(line.scope["path"]), "path, percent-decoded, with root_path"),
    "query": (_query, "query string, without '?' (empty if none)"),
    "target": (_target, "path?query, as in the request line"),
    "request_line": (_request_line, "METHOD path?query HTTP/version"),
    "http_version": (lambda line: line.scope["http_version"], "1.0 or 1.1"),
    "scheme": (lambda line: line.scope["scheme"], "http, https, ws or wss"),
    "duration_s": (lambda line: line.duration, "seconds, a float (format it: {duration_s:.3f})"),
    "duration_ms": (lambda line: line.duration * 1000, "milliseconds, a float"),
    "duration_us": (lambda line: round(line.duration * 1_000_000), "microseconds, an int"),
}
HTTP_ATOMS: Final[dict[str, tuple[Atom, str]]] = {
    **COMMON_ATOMS,
    "status": (lambda line: line.status, "response status code"),
    "bytes": (lambda line: line.size, "response body bytes sent"),
}
WS_ATOMS: Final[dict[str, tuple[Atom, str]]] = {
    **COMMON_ATOMS,
    "close_code": (lambda line: line.close_code, "WebSocket close code (1006: connection lost)"),
}
# {request_header[name]} and {response_header[name]}: the header's value (repeated headers
# joined with ", "), '-' if absent. Names are case-insensitive.
HEADER_ATOMS: Final = ("request_header", "response_header")


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    values = [value for key, value in headers if key.lower() == name]
    if not values:
        return MISSING
    return printable(b", ".join(values).decode("latin-1"))


class AccessFormat:
    """A compiled format: the template and the atoms it names, nothing else is computed."""

    __slots__ = ("atoms", "request_headers", "response_headers", "template")

    def __init__(
        self,
        template: str,
        atoms: list[tuple[str, Atom]],
        request_headers: list[tuple[str, bytes]],
        response_headers: list[tuple[str, bytes]],
    ) -> None:
        self.template = template
        self.atoms = atoms
        self.request_headers = request_headers
        self.response_headers = response_headers

    def render(self, line: AccessLine) -> str:
        values: dict[str, object] = {name: get(line) for name, get in self.atoms}
        if self.request_headers:
            headers = line.scope["headers"]
            values["request_header"] = {
                key: _header(headers, name) for key, name in self.request_headers
            }
        if self.response_headers:
            values["response_header"] = {
                key: _header(line.response_headers, name) for key, name in self.response_headers
            }
        return self.template.format_map(values)


@functools.lru_cache(maxsize=64)
def compile_format(template: str, kind: str) -> AccessFormat:
    """Compile an access-log format for ``"http"`` or ``"websocket"`` lines; ``ValueError``
    with a one-line reason if it names an unknown atom or cannot render."""
    known = HTTP_ATOMS if kind == "http" else WS_ATOMS
    atoms: dict[str, Atom] = {}
    headers: dict[str, dict[str, bytes]] = {"request_header": {}, "response_header": {}}
    try:
        parsed = [(field, spec) for _, field, spec, _ in string.Formatter().parse(template)]
    except ValueError as exc:
        raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    fields = [field for field, _ in parsed if field is not None]
    if any("{" in spec for _, spec in parsed if spec):
        raise ValueError("a format spec cannot contain {fields}")
    if any(not field or field[0].isdigit() for field in fields):
        raise ValueError("positional fields ({} or {0}) are not atoms; name one, e.g. {status}")
    for field in fields:
        name, bracket, rest = field.partition("[")
        if bracket:
            key = rest[:-1]
            if (
                name not in HEADER_ATOMS
                or not rest.endswith("]")
                or not key
                or any(c in key for c in "[]. ")
            ):
                raise ValueError(
                    f"{{{field}}} is not an atom; headers are {{request_header[name]}}"
                )
            if name == "response_header" and kind != "http":
                raise ValueError(f"{{{field}}}: WebSocket lines have no response headers")
            headers[name][key] = key.lower().encode("latin-1")
            continue
        if name not in known:
            hint = "; headers are {request_header[name]}" if name in HEADER_ATOMS else ""
            raise ValueError(f"unknown atom {{{field}}} (known: {', '.join(sorted(known))}){hint}")
        atoms[name] = known[name][0]
    compiled = AccessFormat(
        template,
        list(atoms.items()),
        list(headers["request_header"].items()),
        list(headers["response_header"].items()),
    )
    for sample in _samples(compiled, kind):
        try:
            str(sample)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"cannot render {template!r}: {exc}") from None
    return compiled


def _samples(compiled: AccessFormat, kind: str) -> list[AccessLine]:
    """A complete line and one where everything that can be missing is."""
    scope: dict[str, Any] = {
        "type": kind,
        "method": "GET",
        "path": "/",
        "query_string": b"a=1",
        "http_version": "1.1",
        "scheme": "http",
        "headers": [(b"user-agent", b"x")],
        "client": ("127.0.0.1", 50000),
    }
    bare = {**scope, "client": None, "headers": [], "query_string": b""}
    return [
        AccessLine(compiled, scope, 0.25, status=200, size=5, close_code=1000),
        AccessLine(compiled, bare, 0.0),
    ]
