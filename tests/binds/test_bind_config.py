"""Bind parsing, how --bind/--insecure-bind/--uds/--fd/--host/--port combine, the TLS option
rules, and the command-line options (each one parsed into Config)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from trio_asgi import Config, ConfigError
from trio_asgi.binds import Bind, parse_bind
from trio_asgi.cli import main, parse_args


@pytest.mark.parametrize(
    ("text", "bind"),
    [
        ("127.0.0.1:8000", Bind("tcp", host="127.0.0.1", port=8000)),
        ("localhost:0", Bind("tcp", host="localhost", port=0)),
        ("0.0.0.0:65535", Bind("tcp", host="0.0.0.0", port=65535)),
        ("[::1]:443", Bind("tcp", host="::1", port=443)),
        ("[fe80::1%eth0]:80", Bind("tcp", host="fe80::1%eth0", port=80)),
        ("unix:/run/app.sock", Bind("unix", path="/run/app.sock")),
        ("unix:relative.sock", Bind("unix", path="relative.sock")),
        ("fd://3", Bind("fd", fd=3)),
        ("systemd", Bind("systemd")),
    ],
)
def test_bind_forms(text: str, bind: Bind) -> None:
    assert parse_bind(text) == bind
    assert str(bind) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("127.0.0.1", "expected HOST:PORT"),
        (":8000", "expected HOST:PORT"),
        ("127.0.0.1:http", "the port must be a number"),
        ("127.0.0.1:65536", "the port must be a number"),
        ("127.0.0.1:-1", "the port must be a number"),
        ("::1:8000", "put an IPv6 address in brackets"),
        ("[::1]", "expected [IPV6]:PORT"),
        ("[]:80", "expected [IPV6]:PORT"),
        ("unix:", "the socket path is missing"),
        ("fd://", "expected fd://N"),
        ("fd://three", "expected fd://N"),
        ("fd://\uff13", "expected fd://N"),  # a fullwidth digit: isdigit() but not ASCII
        ("https://127.0.0.1:443", "a bind is an address, not a URL"),
    ],
)
def test_malformed_binds(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(why)) as info:
        parse_bind(text)
    assert "forms: HOST:PORT, [IPV6]:PORT, unix:PATH, fd://N or systemd" in str(info.value)


def test_host_and_port_are_the_default_bind() -> None:
    assert Config().binds() == [Bind("tcp", host="127.0.0.1", port=8000)]
    assert Config(host="::1", port=0).binds() == [Bind("tcp", host="::1", port=0)]


def test_bind_uds_and_fd_replace_host_and_port_and_add_up() -> None:
    config = Config(bind=["[::1]:0", "unix:/a.sock"], uds="/b.sock", fd=5, port=9)
    assert config.binds() == [
        Bind("tcp", host="::1", port=0),
        Bind("unix", path="/a.sock"),
        Bind("unix", path="/b.sock"),
        Bind("fd", fd=5),
    ]
    assert config.bind == ("[::1]:0", "unix:/a.sock")  # lists become tuples: Config is frozen
    assert Config(bind="127.0.0.1:1").bind == ("127.0.0.1:1",)  # one string is one bind


def test_with_tls_binds_speak_tls_and_insecure_binds_come_last() -> None:
    config = Config(certfile="cert.pem", uds="/s.sock", insecure_bind=["127.0.0.1:80"])
    assert config.binds() == [
        Bind("unix", path="/s.sock", tls=True),
        Bind("tcp", host="127.0.0.1", port=80),
    ]
    assert [bind.tls for bind in Config(ssl_context=ssl.create_default_context()).binds()] == [True]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bind": ["nonsense"]}, "invalid bind 'nonsense'"),
        ({"insecure_bind": ["x:y"], "certfile": "c"}, "invalid bind 'x:y'"),
        ({"insecure_bind": ["127.0.0.1:80"]}, "insecure_bind needs TLS"),
        ({"uds": ""}, "uds must be a socket path"),
        ({"fd": -1}, "fd must be a file descriptor number"),
        ({"uds_permissions": 0o660}, "uds_permissions applies to unix sockets"),
        ({"uds": "/s", "uds_permissions": 0o70000}, "uds_permissions must be a file mode"),
        ({"keyfile": "k"}, "keyfile needs certfile"),
        ({"keyfile_password": "p"}, "keyfile_password needs certfile"),
        ({"ciphers": "HIGH"}, "ciphers needs certfile"),
        ({"cert_reqs": "required"}, "cert_reqs needs certfile"),
        ({"certfile": "c", "cert_reqs": "optional"}, "cert_reqs optional needs ca_certs"),
        ({"certfile": "c", "ca_certs": "ca"}, "ca_certs has no effect with cert_reqs none"),
        ({"ssl_context": "context"}, "ssl_context must be an ssl.SSLContext"),
        ({"ssl_context": ssl.create_default_context(), "certfile": "c"}, "replaces certfile"),
        ({"timeout_tls_handshake": 0}, "timeout_tls_handshake must be a number of seconds > 0"),
    ],
)
def test_inconsistent_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**changes)  # type: ignore[arg-type]


def test_every_new_option_on_the_command_line() -> None:
    _, config = parse_args(
        [
            "m:app",
            "--bind", "127.0.0.1:8443",
            "--bind", "[::1]:8443",
            "--insecure-bind", "unix:/run/plain.sock",
            "--uds", "/run/app.sock",
            "--uds-permissions", "660",
            "--fd", "3",
            "--certfile", "cert.pem",
            "--keyfile", "key.pem",
            "--keyfile-password", "pw",
            "--ca-certs", "ca.pem",
            "--cert-reqs", "required",
            "--ciphers", "ECDHE+AESGCM",
            "--timeout-tls-handshake", "2.5",
        ]
    )  # fmt: skip
    assert config == Config(
        bind=("127.0.0.1:8443", "[::1]:8443"),
        insecure_bind=("unix:/run/plain.sock",),
        uds="/run/app.sock",
        uds_permissions=0o660,
        fd=3,
        certfile="cert.pem",
        keyfile="key.pem",
        keyfile_password="pw",
        ca_certs="ca.pem",
        cert_reqs="required",
        ciphers="ECDHE+AESGCM",
        timeout_tls_handshake=2.5,
    )
    assert config.keyfile_password == "pw"
    assert parse_args(["m:app", "--uds", "/s", "--uds-permissions", "0o600"])[
        1
    ].uds_permissions == (0o600)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bind", "localhost"], "invalid bind 'localhost': expected HOST:PORT"),
        (["--bind", "127.0.0.1:99999"], "invalid bind '127.0.0.1:99999'"),
        (["--fd", "x"], "argument --fd: invalid n value: 'x'"),
        (["--uds", "/s", "--uds-permissions", "rw"], "invalid mode value: 'rw'"),
        (["--cert-reqs", "maybe"], "argument --cert-reqs: invalid choice"),
        (["--keyfile", "k.pem"], "keyfile needs certfile"),
        (["--certfile", "/nonexistent.pem"], "cannot load certfile '/nonexistent.pem'"),
    ],
)
def test_bad_bind_and_tls_options_give_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["examples.echo:app", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("trio-asgi: error: ") and message in err


def test_help_lists_the_bind_forms_and_tls_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "TLS:" in out and "--bind ADDRESS" in out and "unix:PATH" in out
    assert "--ssl-context" not in out


def test_a_bind_that_fails_at_start_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "not-a-socket"
    blocked.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["examples.echo:app", "--bind", f"unix:{blocked}", "--log-level", "critical"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        f"trio-asgi: error: cannot serve on unix:{blocked}: the path exists and is not a socket\n"
    )
