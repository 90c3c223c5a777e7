"""Config validation and the command line generated from it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from trio_asgi import Config, ConfigError
from trio_asgi.cli import build_parser, main, parse_args


@pytest.mark.parametrize(
    "changes",
    [
        {"port": 70000},
        {"port": -1},
        {"backlog": 0},
        {"interface": "wsgi2"},
        {"lifespan": "maybe"},
        {"log_level": "loud"},
        {"timeout_keep_alive": -1},
        {"timeout_graceful_shutdown": float("nan")},
        {"ws_max_size": 0},
        {"ws_max_queue": True},
    ],
)
def test_invalid_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Config(**changes)  # type: ignore[arg-type]


def test_every_setting_has_a_flag_and_help() -> None:
    help_text = build_parser().format_help()
    for f in dataclasses.fields(Config):
        assert f.metadata["help"]
        flag = "--" + f.name.replace("_", "-")
        if not f.metadata["cli"]:  # objects only Python can pass (ssl_context)
            assert flag not in help_text, flag
            continue
        assert flag in help_text, flag


def test_flags_map_onto_config() -> None:
    target, config = parse_args(
        [
            "pkg.mod:app",
            "--host", "0.0.0.0",
            "--port", "9000",
            "--backlog", "10",
            "--interface", "asgi2",
            "--app-loop", "asyncio",
            "--lifespan", "off",
            "--factory",
            "--app-dir", "src",
            "--root-path", "/api",
            "--log-level", "debug",
            "--no-access-log",
            "--no-server-header",
            "--no-date-header",
            "--timeout-keep-alive", "7.5",
            "--timeout-request-header", "3",
            "--h11-max-incomplete-event-size", "4096",
            "--ws-max-size", "1000",
            "--ws-max-queue", "2",
            "--timeout-graceful-shutdown", "1",
            "--timeout-write", "9",
            "--ws-per-message-deflate", "false",
            "--ws-ping-interval", "none",
            "--ws-ping-timeout", "0",
            "--ws-accept-timeout", "4",
            "--ws-send-timeout", "6",
        ]
    )  # fmt: skip
    assert target == "pkg.mod:app"
    assert config == Config(
        host="0.0.0.0",
        port=9000,
        backlog=10,
        interface="asgi2",
        app_loop="asyncio",
        lifespan="off",
        factory=True,
        app_dir="src",
        root_path="/api",
        log_level="debug",
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=7.5,
        timeout_request_header=3,
        h11_max_incomplete_event_size=4096,
        ws_max_size=1000,
        ws_max_queue=2,
        timeout_graceful_shutdown=1,
        timeout_write=9,
        ws_per_message_deflate=False,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        ws_accept_timeout=4,
        ws_send_timeout=6,
    )


def test_a_bracketed_ipv6_host_is_the_address() -> None:
    """``--host [::1]``, as URLs write it, used to fail to bind "[[::1]]:0"."""
    _, config = parse_args(["m:app", "--host", "[::1]"])
    assert config.host == "::1"
    assert Config(host="[::1]") == Config(host="::1")


def test_defaults_when_no_flags() -> None:
    assert parse_args(["m:app"]) == ("m:app", Config())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["m:app", "--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
        (["m:app", "--port", "99999"], "port must be between 0 and 65535"),
        (["m:app", "--lifespan", "sometimes"], "argument --lifespan: invalid choice"),
        (["m:app", "--app-loop", "curio"], "argument --app-loop: invalid choice: 'curio'"),
        (
            ["examples.wsgi_flask:app", "--app-loop", "asyncio"],
            "--app-loop asyncio is for ASGI applications",
        ),
        (["m:app", "--ws-per-message-deflate", "maybe"], "invalid true|false value: 'maybe'"),
        (["m:app", "--ws-ping-interval", "soon"], "invalid seconds value: 'soon'"),
        (["m:app", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        ([], "the following arguments are required: APP"),
        (["missing_module_xyz:app"], "could not import module 'missing_module_xyz'"),
        (["tests.test_config:nothing_here"], "has no attribute 'nothing_here'"),
    ],
)
def test_bad_command_lines_give_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("trio-asgi: error: ")
    assert message in err
    assert "Traceback" not in err


def test_port_in_use_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["examples.echo:app", "--port", str(port), "--log-level", "critical"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--timeout-graceful-shutdown" in capsys.readouterr().out


def test_app_dir_is_put_on_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trio_asgi.app_loader import load_app

    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "elsewhere_app.py").write_text("async def app(s, r, w): pass\n")
    assert callable(load_app("elsewhere_app:app", app_dir=str(tmp_path)))
    assert sys.path[0] == str(tmp_path)
