"""--log-config FILE: dictConfig from JSON or TOML, and how it meets --log-level."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from trio_asgi import Config, ConfigError
from trio_asgi.cli import main
from trio_asgi.logging import access_logger, configure_logging, error_logger
from trio_asgi.testing import TestClient


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Any:
    """dictConfig may configure the root logger; the next tests expect it untouched."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


def dict_config(log_file: Path, **loggers: Any) -> dict[str, Any]:
    """Both loggers to one file, with a formatter of our own."""
    handler = {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"}
    to_file = {"handlers": ["file"], "propagate": False}
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
        "handlers": {"file": handler},
        "loggers": {
            "trio_asgi.error": {**to_file, **loggers.get("error", {})},
            "trio_asgi.access": {**to_file, **loggers.get("access", {})},
        },
    }


TOML = """
version = 1

[formatters.plain]
format = "%(name)s %(levelname)s %(message)s"

[handlers.file]
class = "logging.FileHandler"
filename = "{log_file}"
formatter = "plain"

[loggers."trio_asgi.error"]
handlers = ["file"]
propagate = false

[loggers."trio_asgi.access"]
handlers = ["file"]
propagate = false
"""


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"hi"})


def close_handlers() -> None:
    for logger in (error_logger, access_logger):
        for handler in logger.handlers:
            handler.close()


@pytest.mark.parametrize("kind", ["json", "toml"])
async def test_file_configures_both_loggers(tmp_path: Path, kind: str) -> None:
    log_file = tmp_path / "server.log"
    config_file = tmp_path / f"logging.{kind}"
    if kind == "json":
        config_file.write_text(json.dumps(dict_config(log_file)))
    else:
        config_file.write_text(TOML.format(log_file=log_file))
    configure_logging("info")  # the defaults a previous run() may have installed...
    configure_logging("warning", config_file=str(config_file))
    # ...are gone: only the file's handlers remain.
    assert [type(h) for h in error_logger.handlers] == [logging.FileHandler]
    assert [type(h) for h in access_logger.handlers] == [logging.FileHandler]
    # --log-level applies to trio_asgi.error (the file gives it no level)...
    assert error_logger.level == logging.WARNING
    # ...and the access logger logs at INFO although the root logger would say WARNING.
    async with TestClient(hello) as client:
        await client.get("/x")
    error_logger.warning("a warning")
    error_logger.info("not shown")
    close_handlers()
    lines = log_file.read_text().splitlines()
    assert lines[0].startswith('trio_asgi.access INFO 127.0.0.1:50000 - "GET /x HTTP/1.1" 200 2 ')
    assert lines[1:] == ["trio_asgi.error WARNING a warning"]


def test_levels_in_the_file_win(tmp_path: Path) -> None:
    config_file = tmp_path / "logging.json"
    data = dict_config(tmp_path / "x.log", error={"level": "DEBUG"}, access={"level": "ERROR"})
    config_file.write_text(json.dumps(data))
    configure_logging("critical", config_file=str(config_file))
    close_handlers()
    assert error_logger.level == logging.DEBUG
    assert access_logger.level == logging.ERROR


def test_no_access_log_still_applies(tmp_path: Path) -> None:
    config_file = tmp_path / "logging.json"
    config_file.write_text(json.dumps(dict_config(tmp_path / "x.log")))
    configure_logging("info", access_log=False, config_file=str(config_file))
    close_handlers()
    assert not access_logger.isEnabledFor(logging.INFO)


def test_existing_loggers_stay_enabled_and_version_defaults(tmp_path: Path) -> None:
    app_logger = logging.getLogger("some_app.module")
    config_file = tmp_path / "logging.toml"
    config_file.write_text('[root]\nlevel = "INFO"\n')  # no version, nothing disabled
    configure_logging("info", config_file=str(config_file))
    assert not app_logger.disabled
    assert not error_logger.disabled
    # No handler of its own: records propagate to the root, where the file put handlers.
    assert error_logger.propagate and access_logger.propagate


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("logging.json", "{not json", "invalid JSON"),
        ("logging.toml", "version = ", "invalid TOML"),
        ("logging.json", "[1, 2]", "expected a dictConfig object"),
        ("logging.yaml", "version: 1", "use a .json or .toml file"),
        ("logging.json", '{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}', "h"),
        ("logging.json", '{"version": 2}', "Unsupported version"),
        ("logging.json", '{"version": 1} \xe9'.encode("latin-1"), "not UTF-8"),
        ("logging.toml", "# r\xe9glages\nversion = 1".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_files_exit_2_with_one_line(
    tmp_path: Path,
    name: str,
    content: str | bytes,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ConfigError, match="log_config"):
        configure_logging("info", config_file=str(path))
    with pytest.raises(SystemExit) as info:
        main(["examples.echo:app", "--log-config", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"trio-asgi: error: log_config {path}: ")
    assert message in err


def test_missing_file_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="log_config: no such file"):
        Config(log_config=str(missing))
    with pytest.raises(SystemExit) as info:
        main(["examples.echo:app", "--log-config", str(missing)])
    assert info.value.code == 2
    assert capsys.readouterr().err == f"trio-asgi: error: log_config: no such file: {missing}\n"
