"""`python -m trio_asgi --config prod.toml`: app, logging and proxy settings from files."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli_e2e import server

pytestmark = pytest.mark.e2e


async def test_everything_from_a_config_file(tmp_path: Path) -> None:
    access_file = tmp_path / "access.log"
    log_config = tmp_path / "logging.json"
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"bare": {"format": "%(message)s"}},
                "handlers": {
                    "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
                    "access": {
                        "class": "logging.FileHandler",
                        "filename": str(access_file),
                        "formatter": "bare",
                    },
                },
                "loggers": {
                    "trio_asgi.error": {"handlers": ["stderr"], "propagate": False},
                    "trio_asgi.access": {"handlers": ["access"], "propagate": False},
                },
            }
        )
    )
    (tmp_path / "prod.toml").write_text(
        f"""
[tool.trio_asgi]
app = "examples.echo:app"
log-config = "{log_config}"
access_log_format = "{{client_host}} {{scheme}} {{method}} {{path}} {{status}} {{bytes}}"
proxy_headers = true
server_header = false
"""
    )
    async with server("--config", str(tmp_path / "prod.toml")) as running:
        async with httpx.AsyncClient() as http:
            response = await http.get(
                running.url + "/",
                headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
            )
        assert response.status_code == 200
        assert "server" not in response.headers  # from the file
        running.send_signal(signal.SIGINT)
        assert await running.wait() == 0
    assert access_file.read_text() == "203.0.113.9 https GET / 200 14\n"
    assert "Received SIGINT" in running.stderr.decode()  # --log-level info still applies
