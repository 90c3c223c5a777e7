"""``--log-config FILE``: the operator's own ``logging.config.dictConfig``, from JSON or TOML.

The file replaces the default handlers of ``configure_logging`` entirely. Two things are done
for the operator, because both are surprising otherwise:

- ``disable_existing_loggers`` defaults to false (``dictConfig`` would silence every logger
  created before it ran, ours included), and ``version`` defaults to 1.
- ``--log-level`` still sets the level of ``trio_asgi.error``, and ``--access-log`` that of
  ``trio_asgi.access``, unless the file gives that logger a level itself. Without this an
  unconfigured access logger would inherit the root's WARNING and log nothing.
"""

from __future__ import annotations

import json
import logging
import logging.config
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .logging import DEFAULT_HANDLER, LEVELS, access_logger, error_logger


def load_log_config(path: str) -> dict[str, Any]:
    """The dictConfig dictionary in ``path`` (``.json`` or ``.toml``); ``ConfigError`` with a
    one-line reason if it cannot be read."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigError(f"log_config {path}: use a .json or .toml file")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"log_config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"log_config {path}: not UTF-8 ({exc.reason})") from None
    try:
        data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if suffix == ".toml" else "JSON"
        raise ConfigError(f"log_config {path}: invalid {kind}: {_one_line(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"log_config {path}: expected a dictConfig object at the top")
    return data


def apply_log_config(path: str, level: str, *, access_log: bool = True) -> None:
    """Configure logging from ``path``, then the two levels the file left to us."""
    data = load_log_config(path)
    data.setdefault("version", 1)
    data.setdefault("disable_existing_loggers", False)
    for logger in (error_logger, access_logger):  # what configure_logging may have set
        for handler in [h for h in logger.handlers if h.name == DEFAULT_HANDLER]:
            logger.removeHandler(handler)
        if not logger.handlers:
            logger.propagate = True
    try:
        logging.config.dictConfig(data)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ConfigError(f"log_config {path}: {_one_line(exc)}") from None
    loggers = data.get("loggers")
    configured = loggers if isinstance(loggers, dict) else {}
    if "level" not in (configured.get(error_logger.name) or {}):
        error_logger.setLevel(LEVELS[level])
    if "level" not in (configured.get(access_logger.name) or {}):
        access_logger.setLevel(logging.INFO if access_log else logging.WARNING)


def _one_line(exc: BaseException) -> str:
    """dictConfig wraps the real reason in ``__cause__``; say both, on one line."""
    text = str(exc)
    cause = exc.__cause__
    if cause is not None and str(cause) not in text:
        text = f"{text}: {cause}"
    return " ".join(text.split())
