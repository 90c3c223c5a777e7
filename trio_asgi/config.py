"""Every server setting, defined once: its default, its command-line flag and the reason for it.

``cli.py`` builds the argument parser from the field metadata here, so a setting cannot exist
on the command line without existing in ``Config`` (and vice versa).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .access_log import DEFAULT_ACCESS_FORMAT, DEFAULT_WS_ACCESS_FORMAT, compile_format
from .binds import Bind, parse_bind
from .errors import ConfigError
from .proxy import TrustedProxies

Interface = Literal["auto", "asgi3", "asgi2", "wsgi"]
AppLoop = Literal["auto", "trio", "asyncio"]
ConcurrencyMode = Literal["backlog", "503"]
LifespanMode = Literal["auto", "on", "off"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
CertReqs = Literal["none", "optional", "required"]

KiB = 1024
MiB = 1024 * KiB


def setting(
    default: Any,
    help: str,
    *,
    group: str,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    switch: bool = True,
    cli: bool = True,
    repr: bool = True,
    shown: str | None = None,
) -> Any:
    """A dataclass field that also describes its command-line option (flag = field name).

    Booleans become ``--name/--no-name`` switches, unless ``switch=False`` (then the flag
    takes ``true``/``false``, where Uvicorn spells it that way). Tuples become repeatable
    options. ``cli=False`` marks the few settings only Python can give (objects, not text).
    ``shown`` is the default as ``--help`` should describe it, when the value itself would
    mislead.
    """
    return field(
        default=default,
        repr=repr,
        metadata={
            "cli": cli,
            "help": help,
            "group": group,
            "choices": choices,
            "metavar": metavar,
            "parse": parse,
            "switch": switch,
            "shown": shown,
        },
    )


def parse_optional_seconds(text: str) -> float | None:
    """Seconds as a number; ``none``/``off``/``0`` switch the timer off."""
    if text.strip().lower() in ("none", "off"):
        return None
    value = float(text)
    return None if value == 0 else value


def parse_optional_count(text: str) -> int | None:
    """A positive whole number, or ``none`` for no limit."""
    if text.strip().lower() in ("none", "off"):
        return None
    return int(text)


def parse_octal(text: str) -> int:
    """File permissions in octal, as chmod takes them (``660``, ``0o660``)."""
    return int(text.removeprefix("0o"), 8)


def parse_bool(text: str) -> bool:
    """``true``/``false`` (and the usual spellings), for options that take a value."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Server settings. Construct it directly from Python, or let the CLI build it."""

    # -- where to listen ------------------------------------------------------------------
    host: str = setting(
        "127.0.0.1",
        "Interface to bind (unless --bind, --uds or --fd is given). Loopback by default so "
        "nothing is exposed by accident.",
        group="binding",
    )
    port: int = setting(8000, "Port to bind with --host; 0 picks a free port.", group="binding")
    backlog: int = setting(
        2048,
        "Listen backlog: connections the kernel holds while we are busy accepting.",
        group="binding",
    )
    # -- binds and TLS (README: "Binding", "TLS") --------------------------------------------
    bind: tuple[str, ...] = setting(
        (),
        "Address to listen on; repeat it for several: HOST:PORT, [IPV6]:PORT, unix:PATH, "
        "fd://N (an inherited socket) or systemd (socket activation). Replaces --host and "
        "--port. With --certfile these binds speak TLS.",
        group="binding",
        metavar="ADDRESS",
    )
    insecure_bind: tuple[str, ...] = setting(
        (),
        "Plain-HTTP address to listen on next to the TLS ones (forms as --bind; repeatable). "
        "Needs --certfile: without TLS every bind is plain anyway.",
        group="binding",
        metavar="ADDRESS",
    )
    uds: str | None = setting(
        None,
        "Unix socket to listen on: a shortcut for --bind unix:PATH.",
        group="binding",
        metavar="PATH",
        parse=str,
    )
    fd: int | None = setting(
        None,
        "Inherited listening socket: a shortcut for --bind fd://N.",
        group="binding",
        metavar="N",
        parse=int,
    )
    uds_permissions: int | None = setting(
        None,
        "Permissions of the unix sockets we create, in octal (e.g. 660); by default the "
        "umask decides.",
        group="binding",
        metavar="MODE",
        parse=parse_octal,
    )
    certfile: str | None = setting(
        None,
        "PEM certificate (chain) to serve TLS with; turns TLS on for --bind/--host/--port.",
        group="tls",
        metavar="PATH",
        parse=str,
    )
    keyfile: str | None = setting(
        None,
        "PEM private key, if it is not in the certfile.",
        group="tls",
        metavar="PATH",
        parse=str,
    )
    keyfile_password: str | None = setting(
        None,
        "Password of an encrypted private key (visible to other local users in the process "
        "list: prefer an unencrypted key readable only by the server's user).",
        group="tls",
        metavar="PASSWORD",
        parse=str,
        repr=False,
    )
    ca_certs: str | None = setting(
        None,
        "PEM file of the CAs that client certificates must chain to (mutual TLS).",
        group="tls",
        metavar="PATH",
        parse=str,
    )
    cert_reqs: CertReqs = setting(
        "none",
        "Client certificates (mutual TLS, needs --ca-certs): 'none' does not ask for one, "
        "'optional' verifies one if sent, 'required' refuses clients without a valid one.",
        group="tls",
        choices=("none", "optional", "required"),
    )
    ciphers: str | None = setting(
        None,
        "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are not configurable in Python); "
        "by default Python's secure list.",
        group="tls",
        metavar="CIPHERS",
        parse=str,
    )
    timeout_tls_handshake: float = setting(
        10.0,
        "Seconds a new client has to complete the TLS handshake before it is dropped.",
        group="tls",
        metavar="SECONDS",
    )
    ssl_context: ssl.SSLContext | None = setting(
        None,
        "A ready server-side SSLContext (from Python only), instead of --certfile and the "
        "other TLS options; used as it is (ALPN, versions and ciphers are its own).",
        group="tls",
        cli=False,
        repr=False,
    )

    # -- which application, and how to call it ---------------------------------------------
    interface: Interface = setting(
        "auto",
        "Calling convention of the app. 'auto' decides from the app: async is ASGI 3; "
        "synchronous and taking (scope) is ASGI 2, taking (environ, start_response) is WSGI "
        "(README: 'WSGI apps').",
        group="application",
        choices=("auto", "asgi3", "asgi2", "wsgi"),
    )
    app_loop: AppLoop = setting(
        "auto",
        "Event loop the ASGI app runs on. 'asyncio' runs an asyncio-only app (Django, "
        "Channels, Quart, Sanic) in one asyncio loop inside the trio server, through "
        "trio-asyncio (pip install 'trio-asgi[asyncio]'); 'auto' picks it for the apps it "
        "recognises as asyncio-bound and says so (README: 'Frameworks').",
        group="application",
        choices=("auto", "trio", "asyncio"),
    )
    wsgi_threads: int = setting(
        40,
        "Requests a WSGI app handles at once, each in a worker thread; further requests "
        "wait for a free thread (the event loop never waits on the app).",
        group="application",
        metavar="N",
    )
    lifespan: LifespanMode = setting(
        "auto",
        "Run the lifespan protocol: 'auto' skips it when the app does not support it.",
        group="application",
        choices=("auto", "on", "off"),
    )
    factory: bool = setting(
        False,
        "Treat APP as a callable that returns the application.",
        group="application",
    )
    app_dir: str = setting(
        ".",
        "Directory put first on sys.path before importing APP.",
        group="application",
        metavar="DIR",
    )
    root_path: str = setting(
        "",
        "Path prefix the app is mounted at behind a proxy (scope['root_path']).",
        group="application",
        metavar="PATH",
    )

    # -- logging ------------------------------------------------------------------------------
    log_level: LogLevel = setting(
        "info",
        "Level of the trio_asgi.error logger.",
        group="logging",
        choices=("critical", "error", "warning", "info", "debug"),
    )
    access_log: bool = setting(
        True, "One line per request and per WebSocket session.", group="logging"
    )
    # -- logging: trio_asgi/log_config.py, trio_asgi/access_log.py (README: "Logging") -----
    log_config: str | None = setting(
        None,
        "logging.config.dictConfig file (.json or .toml) replacing the default handlers; "
        "--log-level and --access-log still set the two loggers' levels unless it does.",
        group="logging",
        metavar="FILE",
        parse=str,
    )
    access_log_format: str = setting(
        DEFAULT_ACCESS_FORMAT,
        "Access-log line for an HTTP request: text with {atom} fields and Python format "
        "specs (README: 'Access log format' lists the atoms).",
        group="logging",
        metavar="FORMAT",
    )
    access_log_ws_format: str = setting(
        DEFAULT_WS_ACCESS_FORMAT,
        "Access-log line written when a WebSocket session ends. Setting it also drops the "
        "'open' line, for one line per session.",
        group="logging",
        metavar="FORMAT",
    )

    # -- behind a proxy: trio_asgi/proxy.py (README: "Behind a proxy") ----------------------
    proxy_headers: bool = setting(
        False,
        "Take the client address, scheme and host from Forwarded / X-Forwarded-* headers, "
        "only from peers listed in --forwarded-allow-ips.",
        group="proxy",
    )
    forwarded_allow_ips: str | None = setting(
        None,
        "Comma-separated IP addresses and networks (CIDR) of the proxies to trust; '*' for "
        "every peer, 'unix' for unix-socket peers.",
        group="proxy",
        metavar="IPS",
        parse=str,
        shown="$FORWARDED_ALLOW_IPS, else 127.0.0.1",
    )

    # -- HTTP ---------------------------------------------------------------------------------
    server_header: bool = setting(True, "Add 'Server: trio-asgi' to responses.", group="http")
    date_header: bool = setting(True, "Add a 'Date' header to responses.", group="http")
    timeout_keep_alive: float = setting(
        5.0,
        "Seconds an idle keep-alive connection is kept open waiting for the next request "
        "(0: close after each response).",
        group="http",
        metavar="SECONDS",
    )
    timeout_request_header: float = setting(
        10.0,
        "Seconds a client has to send a whole request head once it started (and a new "
        "connection to start); slower clients get 408 and are dropped (slowloris).",
        group="http",
        metavar="SECONDS",
    )
    timeout_request_body: float = setting(
        30.0,
        "Seconds to wait for each piece of a request body while the app is reading it; a "
        "client that stalls longer gets 408 (or a disconnect, if the response started).",
        group="http",
        metavar="SECONDS",
    )
    timeout_write: float = setting(
        30.0,
        "Seconds a client may take to accept each 256 KiB of a response before it is "
        "considered stalled and disconnected.",
        group="http",
        metavar="SECONDS",
    )
    http_early_hints: bool = setting(
        False,
        "Offer the http.response.early_hint extension (103 Early Hints). Off by default: "
        "some clients mishandle 1xx responses.",
        group="http",
    )
    h11_max_incomplete_event_size: int = setting(
        16 * KiB,
        "Largest request head (request line and headers) in bytes; larger gets 431.",
        group="http",
        metavar="BYTES",
    )

    # -- WebSocket ---------------------------------------------------------------------------
    ws_max_size: int = setting(
        16 * MiB,
        "Largest WebSocket message in bytes (after reassembly); larger closes with 1009.",
        group="websocket",
        metavar="BYTES",
    )
    ws_max_queue: int = setting(
        32,
        "Received WebSocket messages buffered for a slow app before the server stops "
        "reading from the socket (TCP backpressure).",
        group="websocket",
        metavar="N",
    )

    ws_per_message_deflate: bool = setting(
        True,
        "Negotiate permessage-deflate compression when a client offers it.",
        group="websocket",
        metavar="true|false",
        parse=parse_bool,
        switch=False,
    )
    ws_ping_interval: float | None = setting(
        20.0,
        "Seconds between keepalive pings to each WebSocket client (0 or none: no pings).",
        group="websocket",
        metavar="SECONDS",
        parse=parse_optional_seconds,
    )
    ws_ping_timeout: float | None = setting(
        20.0,
        "Seconds to wait for the pong to a keepalive ping before closing with 1011 "
        "(0 or none: do not wait).",
        group="websocket",
        metavar="SECONDS",
        parse=parse_optional_seconds,
    )
    ws_accept_timeout: float = setting(
        30.0,
        "Seconds the app has to accept or reject a WebSocket handshake before the "
        "connection is closed.",
        group="websocket",
        metavar="SECONDS",
    )
    ws_send_timeout: float = setting(
        20.0,
        "Seconds a WebSocket client may take to accept each 256 KiB we send before it is "
        "considered stalled and disconnected.",
        group="websocket",
        metavar="SECONDS",
    )

    # -- limits -------------------------------------------------------------------------------
    limit_concurrency: int | None = setting(
        None,
        "Most connections served at once (none: no limit). See --limit-concurrency-mode.",
        group="limits",
        metavar="N",
        parse=parse_optional_count,
    )
    limit_concurrency_mode: ConcurrencyMode = setting(
        "backlog",
        "At the limit, 'backlog' stops accepting (new clients wait in the kernel's backlog); "
        "'503' accepts them and answers 503 Service Unavailable.",
        group="limits",
        choices=("backlog", "503"),
    )
    limit_max_requests: int | None = setting(
        None,
        "Requests (and WebSocket sessions) to serve before the process shuts down "
        "gracefully, for a supervisor to restart it (none: no limit).",
        group="limits",
        metavar="N",
        parse=parse_optional_count,
    )
    limit_max_requests_per_connection: int | None = setting(
        None,
        "Requests served on one keep-alive connection before it is closed (none: no limit).",
        group="limits",
        metavar="N",
        parse=parse_optional_count,
    )

    # -- shutdown -----------------------------------------------------------------------------
    timeout_graceful_shutdown: float = setting(
        10.0,
        "Seconds in-flight requests get to finish after a shutdown signal before they are "
        "cancelled (0: cancel at once).",
        group="shutdown",
        metavar="SECONDS",
    )
    timeout_lifespan_shutdown: float = setting(
        30.0,
        "Seconds the app's lifespan shutdown gets before it is cancelled and reported as "
        "failed, so that a stop always ends (30: the usual grace of process managers).",
        group="shutdown",
        metavar="SECONDS",
    )

    # -- processes: --workers and --reload (trio_asgi/supervisor.py) ---------------------------
    workers: int = setting(
        1,
        "Worker processes serving the same sockets, bound once by a supervisor that restarts "
        "crashed workers and replaces them one by one on SIGHUP (1: serve in this process, "
        "no supervisor). README: 'Workers and reload'.",
        group="processes",
        metavar="N",
    )
    reload: bool = setting(
        False,
        "Development: restart the server when source files change (needs "
        "'pip install trio-asgi[reload]').",
        group="processes",
    )
    reload_dir: tuple[str, ...] = setting(
        (),
        "Directory to watch with --reload; repeatable (none given: the --app-dir).",
        group="processes",
        metavar="DIR",
    )
    reload_include: tuple[str, ...] = setting(
        (),
        "Glob of files whose changes trigger a reload, besides *.py; repeatable.",
        group="processes",
        metavar="GLOB",
    )
    reload_exclude: tuple[str, ...] = setting(
        (),
        "Glob of files or directories whose changes do not trigger a reload; repeatable. "
        "Hidden files and directories, __pycache__, *.py[cod] and *~ are always ignored "
        "(unless named by --reload-include).",
        group="processes",
        metavar="GLOB",
    )

    def __post_init__(self) -> None:
        host = self.host
        if isinstance(host, str) and host.startswith("[") and host.endswith("]"):
            # An IPv6 address as URLs and --bind write it: the brackets are not part of it.
            object.__setattr__(self, "host", host[1:-1])
        _check_host(self.host)
        root = self.root_path
        if not isinstance(root, str) or (root and not root.startswith("/")):
            # ("api" would make every path "api/...": no path the app knows.)
            raise ConfigError(f"root_path must be empty or start with '/' (/api), not {root!r}")
        if self.forwarded_allow_ips is None:  # Uvicorn's variable, read as Uvicorn reads it
            trusted = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
            object.__setattr__(self, "forwarded_allow_ips", trusted)
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if isinstance(f.default, tuple):
                value = _string_tuple(f.name, value)
                object.__setattr__(self, f.name, value)  # frozen, but lists become tuples
            if choices is not None and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, not {value!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, not {self.port}")
        _positive(self, "backlog", "h11_max_incomplete_event_size", "ws_max_size", "ws_max_queue")
        _positive(self, "wsgi_threads")
        _positive(
            self,
            "limit_concurrency",
            "limit_max_requests",
            "limit_max_requests_per_connection",
            optional=True,
        )
        _positive(self, "workers")
        if self.reload and self.workers > 1:
            raise ConfigError(
                "reload cannot be combined with workers > 1: reload runs one worker and "
                "restarts it when files change"
            )
        if not self.reload and (self.reload_dir or self.reload_include or self.reload_exclude):
            raise ConfigError("reload_dir, reload_include and reload_exclude need reload")
        # 0 means something for these (close at once, cancel at once, off)...
        _seconds(
            self, "timeout_keep_alive", "timeout_graceful_shutdown", "timeout_lifespan_shutdown"
        )
        _seconds(self, "ws_ping_interval", "ws_ping_timeout", optional=True)  # (None: off)
        # ...and would refuse every client for these (nothing arrives or leaves in no time).
        _seconds(
            self,
            "timeout_request_header",
            "timeout_request_body",
            "timeout_write",
            "ws_accept_timeout",
            "ws_send_timeout",
            "timeout_tls_handshake",
            zero=False,
        )
        _check_binds_and_tls(self)
        _check_logging_and_proxy(self)
        for conflicts, message in CONFLICTS:
            if conflicts(self):
                raise ConfigError(message)

    @functools.cached_property
    def trusted_proxies(self) -> TrustedProxies:
        """``forwarded_allow_ips`` parsed, once: validation, the ``proxy_headers`` check and
        the server all use this object (a bad spec raises ``ValueError`` during validation)."""
        return TrustedProxies(self.forwarded_allow_ips or "")

    @property
    def uses_tls(self) -> bool:
        """TLS is configured: the ``--bind``/``--host``/``--port`` listeners speak it."""
        return self.certfile is not None or self.ssl_context is not None

    def binds(self) -> list[Bind]:
        """Every address to listen on: ``--bind``, ``--uds`` and ``--fd`` (or else
        ``--host:--port``), TLS when configured, then the ``--insecure-bind`` ones."""
        tls = self.uses_tls
        binds = [parse_bind(text, tls=tls) for text in self.bind]
        if self.uds is not None:
            binds.append(Bind("unix", path=self.uds, tls=tls))
        if self.fd is not None:
            binds.append(Bind("fd", fd=self.fd, tls=tls))
        if not binds:
            binds.append(Bind("tcp", host=self.host, port=self.port, tls=tls))
        binds.extend(parse_bind(text) for text in self.insecure_bind)
        return binds

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed (validated like a new Config)."""
        return dataclasses.replace(self, **changes)


def _string_tuple(name: str, value: Any) -> tuple[str, ...]:
    """Repeatable settings are tuples (hashable, immutable); a list from Python is accepted,
    and a single string means one value (``bind="host:port"``), not its characters."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ConfigError(f"{name} must be a list of strings, not {value!r}")


def _positive(config: Config, *names: str, optional: bool = False) -> None:
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, not {value!r}")


def _check_host(host: object) -> None:
    """A name or an address, refused here with the reason rather than by a failed bind
    (after a DNS query for the text) once the app was imported."""
    if not isinstance(host, str) or not host:
        raise ConfigError(f"host must be a host name or an IP address, not {host!r}")
    why = None
    if "://" in host:
        why = "a host is an address, not a URL"
    elif any(char in host for char in "/[] ") or not host.isprintable():
        why = "expected a host name or an IP address"
    elif ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            why = "a host has no port (use --port, or --bind HOST:PORT)"
    if why is not None:
        raise ConfigError(f"invalid host {host!r}: {why}")


def _seconds(config: Config, *names: str, zero: bool = True, optional: bool = False) -> None:
    """Each a number of seconds, >= 0, or > 0 unless ``zero``; None too if ``optional``."""
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        # (`not value >= 0` also rejects NaN.)
        if not number or not (value >= 0 if zero else value > 0):
            bound = ">= 0" if zero else "> 0"
            raise ConfigError(f"{name} must be a number of seconds {bound}, not {value!r}")


_TLS_FILE_OPTIONS = ("keyfile", "keyfile_password", "ca_certs", "ciphers")


def _check_binds_and_tls(config: Config) -> None:
    """Cross-field rules of the bind and TLS settings, each one a likely mistake."""
    if config.uds is not None and not config.uds:
        raise ConfigError("uds must be a socket path, not an empty string")
    if config.fd is not None and (isinstance(config.fd, bool) or config.fd < 0):
        raise ConfigError(f"fd must be a file descriptor number, not {config.fd!r}")
    binds = config.binds()  # raises ConfigError for a malformed bind
    if config.uds_permissions is not None:
        mode = config.uds_permissions
        if not 0 <= mode <= 0o7777:
            shown = f"{mode:o}" if mode >= 0 else repr(mode)  # (in octal, as it was typed)
            raise ConfigError(f"uds_permissions must be a file mode up to 7777, not {shown}")
        if not any(bind.kind == "unix" for bind in binds):
            raise ConfigError("uds_permissions applies to unix sockets: add --bind unix:PATH")
    if config.ssl_context is not None:
        if not isinstance(config.ssl_context, ssl.SSLContext):
            raise ConfigError(f"ssl_context must be an ssl.SSLContext, not {config.ssl_context!r}")
        given = [name for name in ("certfile", *_TLS_FILE_OPTIONS) if getattr(config, name)]
        if config.cert_reqs != "none":
            given.append("cert_reqs")
        if given:
            raise ConfigError(
                f"ssl_context replaces {', '.join(given)}: configure the context instead"
            )
    elif config.certfile is None:
        for name in _TLS_FILE_OPTIONS:
            if getattr(config, name) is not None:
                raise ConfigError(f"{name} needs certfile (TLS is off without it)")
        if config.cert_reqs != "none":
            raise ConfigError("cert_reqs needs certfile (TLS is off without it)")
    if config.certfile is not None:
        if config.cert_reqs != "none" and config.ca_certs is None:
            raise ConfigError(f"cert_reqs {config.cert_reqs} needs ca_certs to verify clients with")
        if config.ca_certs is not None and config.cert_reqs == "none":
            raise ConfigError(
                "ca_certs has no effect with cert_reqs none: use cert_reqs optional or required"
            )
    if config.insecure_bind and not config.uses_tls:
        raise ConfigError("insecure_bind needs TLS (certfile); without it use bind")


def _check_logging_and_proxy(config: Config) -> None:
    for name, kind in (("access_log_format", "http"), ("access_log_ws_format", "websocket")):
        value = getattr(config, name)
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, not {value!r}")
        try:
            compile_format(value, kind)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    if not isinstance(config.forwarded_allow_ips, str):
        raise ConfigError(
            f"forwarded_allow_ips must be a string, not {config.forwarded_allow_ips!r}"
        )
    try:
        _ = config.trusted_proxies  # parsed here, and cached for the server
    except ValueError as exc:
        raise ConfigError(f"forwarded_allow_ips: {exc}") from None
    if config.log_config is not None and not os.path.isfile(config.log_config):
        raise ConfigError(f"log_config: no such file: {config.log_config}")


# Settings that contradict each other: (test, message), checked after every single setting
# was validated. A setting that only has no effect is not listed (a config file may set it
# for the day another option is switched on); these are combinations that cannot have meant
# what they say.
CONFLICTS: list[tuple[Callable[[Config], bool], str]] = [
    (
        lambda c: c.limit_concurrency_mode == "503" and c.limit_concurrency is None,
        "limit_concurrency_mode '503' needs limit_concurrency: without a limit nothing "
        "is ever answered with 503",
    ),
    (
        lambda c: c.proxy_headers and not c.trusted_proxies.anyone,
        "proxy_headers needs at least one trusted proxy in forwarded_allow_ips",
    ),
]
