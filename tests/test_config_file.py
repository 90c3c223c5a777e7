"""--config FILE.toml: settings from a file, the command line on top; conflicting settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_asgi import Config, ConfigError
from trio_asgi import config as config_module
from trio_asgi.cli import main, parse_args
from trio_asgi.config_file import load_config_file


def write(tmp_path: Path, text: str, name: str = "server.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_top_level_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        app = "examples.echo:app"
        port = 9000
        proxy-headers = true               # flag names work too
        forwarded_allow_ips = "10.0.0.0/8, unix"
        timeout_keep_alive = 2             # an integer where seconds are a float
        ws_ping_interval = "none"          # the words the command line takes
        limit_concurrency = "off"
        ws-per-message-deflate = "false"
        access_log_format = "{client} {status}"
        """.replace("\n        ", "\n"),
    )
    target, config = parse_args(["--config", path])
    assert target == "examples.echo:app"
    assert config == Config(
        port=9000,
        proxy_headers=True,
        forwarded_allow_ips="10.0.0.0/8, unix",
        timeout_keep_alive=2.0,
        ws_ping_interval=None,
        limit_concurrency=None,
        ws_per_message_deflate=False,
        access_log_format="{client} {status}",
    )
    assert isinstance(config.timeout_keep_alive, float)


def test_a_socket_mode_is_written_as_on_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'bind = "unix:/tmp/x.sock"\nuds_permissions = "660"\n')
    assert load_config_file(path)[1]["uds_permissions"] == 0o660


def test_tool_table_of_pyproject(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[project]\nname = "mine"\n\n[tool.black]\nline-length = 99\n\n'
        '[tool.trio_asgi]\napp = "pkg:app"\nhost = "0.0.0.0"\n',
        name="pyproject.toml",
    )
    assert load_config_file(path) == ("pkg:app", {"host": "0.0.0.0"})


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'app = "a:app"\nport = 9000\naccess_log = true\nlog_level = "debug"\n')
    target, config = parse_args(["b:app", "--config", path, "--port", "9001", "--no-access-log"])
    assert target == "b:app"
    assert (config.port, config.access_log, config.log_level) == (9001, False, "debug")


def test_file_beats_the_environment_and_the_flag_beats_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")
    path = write(tmp_path, 'forwarded_allow_ips = "10.0.0.2"\n')
    assert parse_args(["m:app", "--config", path])[1].forwarded_allow_ips == "10.0.0.2"
    _, config = parse_args(["m:app", "--config", path, "--forwarded-allow-ips", "10.0.0.3"])
    assert config.forwarded_allow_ips == "10.0.0.3"


def test_empty_file_is_fine(tmp_path: Path) -> None:
    assert parse_args(["m:app", "--config", write(tmp_path, "")]) == ("m:app", Config())


def test_repeatable_settings_take_an_array_or_one_string(tmp_path: Path) -> None:
    path = write(tmp_path, 'bind = ["127.0.0.1:9000", "unix:/run/app.sock"]')
    _, config = parse_args(["m:app", "--config", path])
    assert config.bind == ("127.0.0.1:9000", "unix:/run/app.sock")
    path = write(tmp_path, 'bind = "[::1]:80"', name="one.toml")
    _, config = parse_args(["m:app", "--config", path])
    assert config.bind == ("[::1]:80",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 80", "unknown setting 'prot' (did you mean 'port'?)"),
        ("[server]\nport = 80", "unknown setting 'server'"),
        ('port = "80"', "port must be an integer, not a string '80'"),
        ("port = 80.5", "port must be an integer, not a number 80.5"),
        ("port = true", "port must be an integer, not a boolean True"),
        ("proxy_headers = 1", "proxy_headers must be a boolean, not an integer 1"),
        ('proxy_headers = "yes"', "proxy_headers must be a boolean, not a string 'yes'"),
        ("timeout_keep_alive = false", "timeout_keep_alive must be a number, not a boolean"),
        ('host = ["a", "b"]', "host must be a string, not an array"),
        ("forwarded_allow_ips = [1]", "forwarded_allow_ips must be a string, not an array"),
        ('ws_ping_interval = "soon"', "ws_ping_interval: could not convert string to float"),
        ("app = 1", "app must be a string like 'module:attr'"),
        ("port = 1\nport = 2", "invalid TOML"),
        ("port = 1\nport-x = 2", "unknown setting 'port-x'"),
        ("port = 1\n'port' = 2", "invalid TOML"),
        ("port = 1\nport_ = 2", "unknown setting 'port_'"),
        ('backlog = 1\n"backlog" = 2', "invalid TOML"),
        ("ws_max_size = 1\nws-max-size = 2", "ws-max-size is given twice"),
        ("[tool.black]\nline-length = 1", "has a [tool] table but no [tool.trio_asgi] in it"),
        ("tool = 1", "has a [tool] table but no [tool.trio_asgi]"),
        ("port = 99999", "port must be between 0 and 65535"),  # Config's own validation
        ('interface = "wsgi2"', "interface must be one of"),
        ('ssl_context = "x"', "unknown setting 'ssl_context'"),  # only Python can give one
        ("bind = [1]", "bind must be a list of strings"),
        ("bind = 1", "bind must be a string or an array, not an integer 1"),
        # decimal 660 would be 0o1224, and 0o660 arrives as 432: a mode is written as text
        (
            "uds_permissions = 660",
            'uds_permissions must be a string with the octal mode, like "660"',
        ),
        ("uds_permissions = 0o660", "uds_permissions must be a string with the octal mode"),
    ],
)
def test_bad_files_exit_2_with_one_line(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SystemExit) as info:
        main(["m:app", "--config", path])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("trio-asgi: error: ")
    assert message in err
    assert "Traceback" not in err


def test_a_file_that_is_not_utf8_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TOML is UTF-8; a file saved as Latin-1 used to end in a UnicodeDecodeError traceback."""
    path = tmp_path / "server.toml"
    path.write_bytes("# r\xe9glages de prod\nport = 9000\n".encode("latin-1"))
    with pytest.raises(SystemExit) as info:
        main(["m:app", "--config", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid TOML: not UTF-8" in err, err


def test_missing_file_and_missing_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--config", str(tmp_path / "nope.toml")])
    assert info.value.code == 2
    assert "config " in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--config", write(tmp_path, "port = 1")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "trio-asgi: error: the following arguments are required: APP (or 'app' in --config)\n"
    )


# -- settings that do not combine ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--limit-concurrency-mode", "503"],
            "limit_concurrency_mode '503' needs limit_concurrency",
        ),
        (["--proxy-headers", "--forwarded-allow-ips", ""], "proxy_headers needs at least one"),
        (["--proxy-headers", "--forwarded-allow-ips", " , "], "proxy_headers needs at least one"),
    ],
)
def test_contradictory_settings_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["examples.echo:app", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"trio-asgi: error: {message}")


def test_combinations_that_are_fine() -> None:
    Config(limit_concurrency_mode="503", limit_concurrency=10)
    Config(forwarded_allow_ips="")  # trusts no one, but proxy headers are off
    Config(proxy_headers=True, forwarded_allow_ips="unix")


def test_conflict_rules_can_be_added(monkeypatch: pytest.MonkeyPatch) -> None:
    """How another option joins the check (e.g. --reload with --workers)."""
    rules = [*config_module.CONFLICTS, (lambda c: c.port == 1, "port 1 is not for us")]
    monkeypatch.setattr(config_module, "CONFLICTS", rules)
    with pytest.raises(ConfigError, match="port 1 is not for us"):
        Config(port=1)
    Config(port=2)
