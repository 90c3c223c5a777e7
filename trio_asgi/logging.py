"""Logger names, default handlers and the access-log lines.

Two loggers, as operators of other ASGI servers expect: ``trio_asgi.error`` for the server's
own messages (to stderr) and ``trio_asgi.access`` for one line per request or WebSocket
session (to stdout). The lines' formats live in ``access_log.py``, ``--log-config`` in
``log_config.py``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .access_log import (
    DEFAULT_WS_ACCESS_FORMAT,
    AccessLine,
    compile_format,
    format_address,
    printable,
)

if TYPE_CHECKING:
    from .asgi.http import HTTPCycle
    from .asgi.websocket import WebSocketSession
    from .config import Config

error_logger = logging.getLogger("trio_asgi.error")
access_logger = logging.getLogger("trio_asgi.access")

DEFAULT_HANDLER = "trio_asgi.default"

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def configure_logging(
    level: str, *, access_log: bool = True, config_file: str | None = None
) -> None:
    """Default handlers for the command line and ``run()``; left alone if already set up.

    ``config_file`` (``--log-config``) replaces them: see ``log_config.apply_log_config``.
    """
    if config_file is not None:
        from .log_config import apply_log_config

        apply_log_config(config_file, level, access_log=access_log)
        return
    formatter = logging.Formatter("%(levelname)s:  %(message)s")
    for logger, stream in ((error_logger, sys.stderr), (access_logger, sys.stdout)):
        if not logger.handlers:
            handler = logging.StreamHandler(stream)
            handler.set_name(DEFAULT_HANDLER)  # so that --log-config can take it away
            handler.setFormatter(formatter)
            logger.addHandler(handler)
        logger.propagate = False
    error_logger.setLevel(LEVELS[level])
    access_logger.setLevel(logging.INFO if access_log else logging.WARNING)


def log_http_line(
    config: Config,
    scope: dict[str, Any],
    duration: float,
    *,
    status: int,
    size: int,
    response_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """One line in the HTTP format: a request, a refused request or a denied handshake."""
    line_format = compile_format(config.access_log_format, "http")  # cached
    access_logger.info(
        AccessLine(
            line_format,
            scope,
            duration,
            status=status,
            size=size,
            response_headers=response_headers,
        )
    )


def log_http_access(cycle: HTTPCycle, duration: float) -> None:
    log_http_line(
        cycle._conn.config,
        cycle.scope,
        duration,
        status=cycle.status,
        size=cycle.bytes_sent,
        response_headers=cycle._head,
    )


def log_websocket_denied(session: WebSocketSession, duration: float) -> None:
    """A handshake answered with an HTTP status (the app closed before accepting, sent a
    denial response, or failed): logged as the HTTP request it was, in the HTTP format."""
    log_http_line(
        session._conn.config,
        session.scope,
        duration,
        status=session._denial_status,
        size=session._denial_sent,
    )


def log_websocket_open(session: WebSocketSession) -> None:
    if session._conn.config.access_log_ws_format != DEFAULT_WS_ACCESS_FORMAT:
        return  # a custom format means one line per session, written when it ends
    scope = session.scope
    access_logger.info(
        '%s - "WebSocket %s" open', format_address(scope["client"]), printable(scope["path"])
    )


def log_websocket_close(session: WebSocketSession, code: int, duration: float) -> None:
    line_format = compile_format(session._conn.config.access_log_ws_format, "websocket")
    access_logger.info(AccessLine(line_format, session.scope, duration, close_code=code))
