"""Logger names, default handlers and the access-log lines.

Two loggers, as operators of other ASGI servers expect: ``trio_asgi.error`` for the server's
own messages (to stderr) and ``trio_asgi.access`` for one line per request or WebSocket
session (to stdout).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .asgi.http import HTTPCycle
    from .asgi.websocket import WebSocketSession

error_logger = logging.getLogger("trio_asgi.error")
access_logger = logging.getLogger("trio_asgi.access")

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def configure_logging(level: str, *, access_log: bool = True) -> None:
    """Default handlers for the command line and ``run()``; left alone if already set up."""
    formatter = logging.Formatter("%(levelname)s:  %(message)s")
    for logger, stream in ((error_logger, sys.stderr), (access_logger, sys.stdout)):
        if not logger.handlers:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(formatter)
            logger.addHandler(handler)
        logger.propagate = False
    error_logger.setLevel(LEVELS[level])
    access_logger.setLevel(logging.INFO if access_log else logging.WARNING)


def format_address(address: tuple[str, int | None] | None) -> str:
    if address is None:
        return "-"
    host, port = address
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def log_http_access(cycle: HTTPCycle, duration: float) -> None:
    scope = cycle.scope
    query = scope["query_string"]
    target = scope["path"] + ("?" + query.decode("latin-1") if query else "")
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d %d %.1fms',
        format_address(scope["client"]),
        scope["method"],
        target,
        scope["http_version"],
        cycle.status,
        cycle.bytes_sent,
        duration * 1000,
    )


def log_websocket_open(session: WebSocketSession) -> None:
    scope = session.scope
    access_logger.info('%s - "WebSocket %s" open', format_address(scope["client"]), scope["path"])


def log_websocket_close(session: WebSocketSession, code: int, duration: float) -> None:
    scope = session.scope
    access_logger.info(
        '%s - "WebSocket %s" closed %d after %.1fs',
        format_address(scope["client"]),
        scope["path"],
        code,
        duration,
    )
