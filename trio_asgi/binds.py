"""The addresses a server listens on, parsed from ``--bind`` text (no I/O, no trio).

The forms, one per ``--bind``:

- ``HOST:PORT`` — TCP; a name may resolve to several addresses (``localhost``: v4 and v6).
- ``[IPV6]:PORT`` — TCP on an IPv6 address (the brackets keep the colons apart).
- ``unix:PATH`` — a unix domain socket we create (and remove again on exit).
- ``fd://N`` — a listening socket inherited as file descriptor ``N`` from a supervisor.
- ``systemd`` — every socket systemd passed us (socket activation, ``LISTEN_FDS``).

Parsing happens when a ``Config`` is built, so a malformed bind is a one-line usage error
(exit 2) rather than a failure after the app was imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from .errors import ConfigError

BindKind = Literal["tcp", "unix", "fd", "systemd"]

FORMS: Final = "HOST:PORT, [IPV6]:PORT, unix:PATH, fd://N or systemd"


@dataclass(frozen=True, slots=True)
class Bind:
    """One parsed bind. ``tls`` says whether its connections speak TLS."""

    kind: BindKind
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1
    tls: bool = False

    def __str__(self) -> str:
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{host}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        return "systemd"


def parse_bind(text: str, *, tls: bool = False) -> Bind:
    """Parse one ``--bind`` value; ``ConfigError`` names the accepted forms if it is none."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise _malformed(text, "the socket path is missing")
        if "\0" in path:
            raise _malformed(text, "the socket path contains a NUL byte")
        return Bind("unix", path=path, tls=tls)
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not (number.isascii() and number.isdigit()):
            raise _malformed(text, "expected fd://N with N a file descriptor number")
        return Bind("fd", fd=int(number), tls=tls)
    if text == "systemd":
        return Bind("systemd", tls=tls)
    if "://" in text:
        raise _malformed(
            text,
            "a bind is an address, not a URL (--certfile makes binds TLS; --insecure-bind "
            "adds plain ones)",
        )
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":") or not host:
            raise _malformed(text, "expected [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise _malformed(text, "expected HOST:PORT")
        if ":" in host:
            raise _malformed(text, "put an IPv6 address in brackets: [IPV6]:PORT")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise _malformed(text, "the port must be a number from 0 to 65535")
    return Bind("tcp", host=host, port=int(port_text), tls=tls)


def _malformed(text: str, why: str) -> ConfigError:
    return ConfigError(f"invalid bind {text!r}: {why} (forms: {FORMS})")
