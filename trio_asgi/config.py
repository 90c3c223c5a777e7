"""Every server setting, defined once: its default, its command-line flag and the reason for it.

``cli.py`` builds the argument parser from the field metadata here, so a setting cannot exist
on the command line without existing in ``Config`` (and vice versa).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

Interface = Literal["auto", "asgi3", "asgi2", "wsgi"]
ConcurrencyMode = Literal["backlog", "503"]
LifespanMode = Literal["auto", "on", "off"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]

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
) -> Any:
    """A dataclass field that also describes its command-line option (flag = field name).

    Booleans become ``--name/--no-name`` switches, unless ``switch=False`` (then the flag
    takes ``true``/``false``, where Uvicorn spells it that way).
    """
    return field(
        default=default,
        metadata={
            "help": help,
            "group": group,
            "choices": choices,
            "metavar": metavar,
            "parse": parse,
            "switch": switch,
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
        "Interface to bind. Loopback by default so nothing is exposed by accident.",
        group="binding",
    )
    port: int = setting(8000, "Port to bind; 0 picks a free port.", group="binding")
    backlog: int = setting(
        2048,
        "Listen backlog: connections the kernel holds while we are busy accepting.",
        group="binding",
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
        _non_negative(
            self,
            "timeout_keep_alive",
            "timeout_request_header",
            "timeout_request_body",
            "timeout_write",
            "timeout_graceful_shutdown",
            "ws_ping_interval",
            "ws_ping_timeout",
            "ws_accept_timeout",
            "ws_send_timeout",
        )

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed (validated like a new Config)."""
        return dataclasses.replace(self, **changes)


def _string_tuple(name: str, value: Any) -> tuple[str, ...]:
    """Repeatable settings are tuples (hashable, immutable); a list from Python is accepted."""
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


def _non_negative(config: Config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        # `not value >= 0` also rejects NaN.
        if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
            raise ConfigError(f"{name} must be a number of seconds >= 0, not {value!r}")
