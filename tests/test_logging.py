"""Default logging setup used by the CLI and run()."""

from __future__ import annotations

import logging

from trio_asgi.logging import access_logger, configure_logging, error_logger, format_address


def test_log_level_and_access_switch() -> None:
    configure_logging("warning", access_log=False)
    assert error_logger.level == logging.WARNING
    assert not access_logger.isEnabledFor(logging.INFO)
    configure_logging("debug", access_log=True)
    assert error_logger.level == logging.DEBUG
    assert access_logger.isEnabledFor(logging.INFO)
    assert len(error_logger.handlers) == 1  # configuring twice does not duplicate handlers


def test_format_address() -> None:
    assert format_address(("127.0.0.1", 80)) == "127.0.0.1:80"
    assert format_address(("::1", 80)) == "[::1]:80"
    assert format_address(("/tmp/sock", None)) == "/tmp/sock"
    assert format_address(None) == "-"
