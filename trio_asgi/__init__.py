"""trio_asgi: a trio-based, WebSocket-first ASGI server."""

from __future__ import annotations

import functools
from typing import Any

import trio

from ._version import __version__
from .config import Config
from .errors import ClientDisconnected, ConfigError, StartupFailed
from .logging import configure_logging
from .server import Server, serve

__all__ = [
    "ClientDisconnected",
    "Config",
    "ConfigError",
    "Server",
    "StartupFailed",
    "__version__",
    "run",
    "serve",
]


def run(app: Any, config: Config | None = None, **options: Any) -> None:
    """Serve ``app`` in a new trio run until SIGINT/SIGTERM; the blocking form of ``serve``.

    Options are ``Config`` fields, e.g. ``run(app, port=0, access_log=False)``. Raises
    ``StartupFailed`` if the lifespan startup fails, and ``ConfigError`` for ``workers``
    or ``reload``, which need the command line.
    """
    if config is None:
        config = Config(**options)
    elif options:
        config = config.replace(**options)
    if config.workers > 1 or config.reload:
        raise ConfigError(
            "workers and reload import the app by name in each process: use the command "
            "line (trio-asgi module:app --workers N)"
        )
    configure_logging(config.log_level, access_log=config.access_log, config_file=config.log_config)
    server = Server(app, config)
    trio.run(functools.partial(server.serve, handle_signals=True))
