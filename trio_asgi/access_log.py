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
    r"""Control characters escaped, so a request cannot forge extra log lines (a path is
    percent-decoded: ``%0A`` is a newline); ``"`` too (as ``\x22``, like nginx), so a path
    cannot close the quoted request line and forge the fields after it, and ``\`` (doubled),
    so an escape in the log is never one the client typed."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return text.encode("unicode_escape").decode("ascii").replace('"', "\\x22")


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
# Each is one function of the line, called once per rendered line (one more call inside an
# atom is nothing next to the cost of emitting a log record).


def _client(line: AccessLine) -> str:
    return format_address(line.scope["client"])


def _client_host(line: AccessLine) -> str:
    client = line.scope["client"]
    return client[0] if client else MISSING  # type: ignore[no-any-return]


def _client_port(line: AccessLine) -> int | str:
    client = line.scope["client"]
    return client[1] if client and client[1] is not None else MISSING  # type: ignore[no-any-return]


def _path(line: AccessLine) -> str:
    return printable(line.scope["path"])


def _query(line: AccessLine) -> str:
    return printable(line.scope["query_string"].decode("latin-1"))


def _target(line: AccessLine) -> str:
    scope = line.scope
    query = scope["query_string"]
    return printable(scope["path"] + "?" + query.decode("latin-1") if query else scope["path"])


def _request_line(line: AccessLine) -> str:
    scope = line.scope
    return f"{scope.get('method', 'GET')} {_target(line)} HTTP/{scope['http_version']}"


Atom = Callable[[AccessLine], object]

# name -> (getter, what it is); the descriptions are what the README lists.
COMMON_ATOMS: Final[dict[str, tuple[Atom, str]]] = {
    "client": (_client, "client address, host:port ([v6]:port); '-' if unknown"),
    "client_host": (_client_host, "client IP address (or '-')"),
    "client_port": (_client_port, "client port (or '-'; 0 when a proxy did not say)"),
    "method": (lambda line: line.scope.get("method", "GET"), "request method (GET: WebSocket)"),
    "path": (_path, "path, percent-decoded, with root_path"),
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


def _header_atom(kind: str, name: bytes) -> Atom:
    def request_header(line: AccessLine) -> str:
        return _header(line.scope["headers"], name)

    def response_header(line: AccessLine) -> str:
        return _header(line.response_headers, name)

    return request_header if kind == "request_header" else response_header


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    values = [value for key, value in headers if key.lower() == name]
    if not values:
        return MISSING
    return printable(b", ".join(values).decode("latin-1"))


class AccessFormat:
    """A compiled format: a template with positional fields and one getter per field, so a
    line computes exactly what its format names."""

    __slots__ = ("getters", "template")

    def __init__(self, template: str, getters: tuple[Atom, ...]) -> None:
        self.template = template
        self.getters = getters

    def render(self, line: AccessLine) -> str:
        return self.template.format(*[get(line) for get in self.getters])


@functools.lru_cache(maxsize=64)
def compile_format(template: str, kind: str) -> AccessFormat:
    """Compile an access-log format for ``"http"`` or ``"websocket"`` lines; ``ValueError``
    with a one-line reason if it names an unknown atom or cannot render."""
    known = HTTP_ATOMS if kind == "http" else WS_ATOMS
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    pieces: list[str] = []
    getters: list[Atom] = []
    slots: dict[str, int] = {}  # an atom named twice is computed once
    for literal, field, spec, conversion in parsed:
        pieces.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        if not field or field[0].isdigit():
            raise ValueError("positional fields ({} or {0}) are not atoms; name one: {status}")
        if spec and "{" in spec:
            raise ValueError("a format spec cannot contain {fields}")
        if field not in slots:
            slots[field] = len(getters)
            getters.append(_atom(field, kind, known))
        conversion_text = f"!{conversion}" if conversion else ""
        spec_text = f":{spec}" if spec else ""
        pieces.append(f"{{{slots[field]}{conversion_text}{spec_text}}}")
    compiled = AccessFormat("".join(pieces), tuple(getters))
    for sample in _samples(compiled, kind):
        try:
            str(sample)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"cannot render {template!r}: {exc}") from None
    return compiled


def _atom(field: str, kind: str, known: dict[str, tuple[Atom, str]]) -> Atom:
    name, bracket, rest = field.partition("[")
    if bracket:
        key = rest[:-1]
        if (
            name not in HEADER_ATOMS
            or not rest.endswith("]")
            or not key
            or any(c in key for c in "[] ")
        ):
            raise ValueError(f"{{{field}}} is not an atom; use {{request_header[name]}}")
        if name == "response_header" and kind != "http":
            raise ValueError(f"{{{field}}}: WebSocket lines have no response headers")
        return _header_atom(name, key.lower().encode("latin-1"))
    if name not in known:
        hint = "; headers are {request_header[name]}" if name in HEADER_ATOMS else ""
        raise ValueError(f"unknown atom {{{field}}} (known: {', '.join(sorted(known))}){hint}")
    return known[name][0]


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
