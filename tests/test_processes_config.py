"""--workers and --reload on the command line and in Config: flags, combinations, errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import trio_asgi
from trio_asgi import Config, ConfigError, Server
from trio_asgi.cli import main, parse_args
from trio_asgi.worker import decode_spec, encode_spec
from trio_asgi.wsgi import WSGIAdaptor


def test_flags_map_onto_config(tmp_path: Path) -> None:
    assert parse_args(["m:app", "--workers", "3"])[1].workers == 3
    _, config = parse_args(
        [
            "m:app",
            "--reload",
            "--reload-dir", "src",
            "--reload-dir", "templates",
            "--reload-include", "*.html",
            "--reload-include", ".env",
            "--reload-exclude", "tests/*",
        ]
    )  # fmt: skip
    assert config.reload is True
    assert config.reload_dir == ("src", "templates")
    assert config.reload_include == ("*.html", ".env")
    assert config.reload_exclude == ("tests/*",)


def test_defaults() -> None:
    config = Config()
    assert (config.workers, config.reload) == (1, False)
    assert config.reload_dir == config.reload_include == config.reload_exclude == ()


def test_lists_from_python_become_tuples() -> None:
    config = Config(reload=True, reload_dir=["a", "b"])  # type: ignore[arg-type]
    assert config.reload_dir == ("a", "b")
    assert Config(reload=True, reload_dir="src").reload_dir == ("src",)  # type: ignore[arg-type]
    hash(config)  # still hashable


@pytest.mark.parametrize(
    "changes",
    [
        {"workers": 0},
        {"workers": -2},
        {"workers": 1.5},
        {"reload": True, "workers": 2},
        {"reload_dir": ("src",)},
        {"reload": True, "reload_include": [1]},
    ],
)
def test_invalid_settings_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Config(**changes)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["m:app", "--workers", "0"], "workers must be a positive integer, not 0"),
        (["m:app", "--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (
            ["m:app", "--reload", "--workers", "2"],
            "reload cannot be combined with workers > 1",
        ),
        (["m:app", "--reload-dir", "src"], "reload_dir, reload_include and reload_exclude need"),
        (["m:app", "--reload-include", "*.html"], "need reload"),
        (["m:app", "--reload-exclude", "*.txt"], "need reload"),
        (["m:app", "--reload-dir"], "argument --reload-dir: expected one argument"),
        (
            ["m:app", "--reload", "--reload-dir", "/no/such/dir"],
            "reload_dir '/no/such/dir' is not a directory",
        ),
        (  # (reload watches the app's directory when no reload_dir is given)
            ["m:app", "--reload", "--app-dir", "/no/such/dir"],
            "app_dir '/no/such/dir' is not a directory",
        ),
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


def test_reload_without_watchfiles_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles → ImportError
    with pytest.raises(SystemExit) as info:
        main(["m:app", "--reload"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "trio-asgi: error: reload needs the watchfiles package: pip install 'trio-asgi[reload]'\n"
    )


def test_port_in_use_exits_1_with_workers(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["m:app", "--workers", "2", "--port", str(port), "--log-level", "critical"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err
    assert err.count("cannot serve on") == 1 and err.count("\n") == 1, err


def test_run_refuses_workers_and_reload() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(ConfigError, match="use the command line"):
        trio_asgi.run(app, workers=2)
    with pytest.raises(ConfigError, match="use the command line"):
        trio_asgi.run(app, config=Config(reload=True))


def test_config_reaches_workers_intact() -> None:
    """Every setting travels as JSON; a field that cannot would fail here first."""
    # Settings with a syntax of their own get valid values; Python-only ones (objects such
    # as ssl_context) cannot travel and are refused with workers.
    valid: dict[str, Any] = {
        "bind": ("127.0.0.1:1", "unix:/tmp/worker-test.sock"),
        "insecure_bind": ("127.0.0.1:2",),
        "uds": "/tmp/worker-test-2.sock",
        "fd": 3,
        "uds_permissions": 0o660,
        "certfile": "cert.pem",
        "keyfile": "key.pem",
        "keyfile_password": "secret",
        "ca_certs": "ca.pem",
        "cert_reqs": "optional",
        "ciphers": "ECDHE+AESGCM",
        "forwarded_allow_ips": "10.0.0.0/8,unix",
        "log_config": None,
        "limit_concurrency_mode": "503",
        "limit_concurrency": 10,
        "root_path": "/mounted",
    }
    changed: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        default = f.default
        if not f.metadata.get("cli", True):
            continue
        if f.name in valid:
            changed[f.name] = valid[f.name]
        elif f.name == "reload":
            changed[f.name] = True
        elif f.name == "workers":
            continue  # 1: reload needs it
        elif isinstance(default, tuple):
            changed[f.name] = ("a", "b")
        elif isinstance(default, bool):
            changed[f.name] = not default
        elif f.metadata["choices"]:
            changed[f.name] = f.metadata["choices"][-1]
        elif isinstance(default, int | float):
            changed[f.name] = default + 1
        elif default is None:
            changed[f.name] = 7
        elif isinstance(default, str):
            changed[f.name] = default + "x"
    config = Config(**changed)
    spec = encode_spec("m:app", config, [3, 4], [True, False])
    assert decode_spec(spec) == ("m:app", config, [3, 4], [True, False])


def test_wsgi_multiprocess_follows_workers() -> None:
    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    several = Server(wsgi_app, Config(workers=2, interface="wsgi")).state.app
    one = Server(wsgi_app, Config(interface="wsgi")).state.app
    assert isinstance(several, WSGIAdaptor) and several.multiprocess is True
    assert isinstance(one, WSGIAdaptor) and one.multiprocess is False


def test_one_process_loads_no_supervisor_and_no_watchfiles() -> None:
    """Serving in one process imports neither the supervisor nor the reloader."""
    code = textwrap.dedent(
        """
        import sys, trio
        from trio_asgi import Server
        from trio_asgi.cli import parse_args

        async def app(scope, receive, send):
            pass

        async def main():
            target, config = parse_args(["m:app", "--port", "0", "--lifespan", "off"])
            server = Server(app, config)
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                server.request_shutdown()

        trio.run(main)
        loaded = {"trio_asgi.supervisor", "trio_asgi.reload", "watchfiles"} & set(sys.modules)
        print(sorted(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_a_worker_meeting_a_bad_setting_says_so_in_one_line(tmp_path: Path) -> None:
    """E.g. the log config deleted before a reload restarts the workers: no traceback."""
    import socket

    log_config = tmp_path / "gone.json"
    log_config.write_text('{"version": 1}')
    config = Config(workers=2, log_config=str(log_config))
    log_config.unlink()
    supervisor_end, worker_end = socket.socketpair()
    with supervisor_end, worker_end:
        supervisor_end.sendall(encode_spec("examples.echo:app", config, []))
        result = subprocess.run(
            [sys.executable, "-m", "trio_asgi.worker", "--control-fd", str(worker_end.fileno())],
            pass_fds=[worker_end.fileno()],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("trio-asgi: error: ") and "gone.json" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
