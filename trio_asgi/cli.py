"""``python -m trio_asgi APP [options]``: the parser is generated from ``Config``'s fields.

Exit codes: 0 after a clean shutdown, 1 when the server could not run (e.g. the port is
taken), 2 for a bad command line or an application that cannot be loaded, 3 when the
application's lifespan startup failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from typing import Any, NoReturn

import trio

from ._version import __version__
from .app_loader import load_app
from .config import Config
from .config_file import load_config_file
from .errors import AppLoadError, BindError, ConfigError, StartupFailed
from .logging import configure_logging, error_logger
from .server import Server

PROG = "trio-asgi"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STARTUP_FAILED = 3

_GROUP_TITLES = {
    "binding": "where to listen",
    "tls": "TLS",
    "application": "application",
    "logging": "logging",
    "proxy": "behind a proxy",
    "http": "HTTP",
    "websocket": "WebSocket",
    "limits": "limits",
    "shutdown": "shutdown",
    "processes": "processes (workers and reload)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One clear line and exit code 2 (argparse would print the whole usage first)."""
        fail(message, EXIT_USAGE)


def fail(message: str, code: int) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Serve an ASGI application on trio.",
        epilog="Example: trio-asgi examples.echo:app --port 8000",
    )
    parser.add_argument(
        "app",
        metavar="APP",
        nargs="?",
        default=None,
        help='the application, as "module:attribute" (or "app" in the --config file)',
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of settings (its [tool.trio_asgi] table, else the top level; keys "
        "are option names); options given here override it. README: 'Configuration file'.",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Config):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        group_name = meta["group"]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(
                _GROUP_TITLES.get(group_name, group_name)
            )
        group = groups[group_name]
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        default = f.default
        shown = meta.get("shown") or _show(default, meta["switch"])
        help_text = f"{meta['help']} (default: {shown})"
        if isinstance(default, bool) and meta["switch"]:
            group.add_argument(
                _flag(f.name), action=argparse.BooleanOptionalAction, help=help_text, **kwargs
            )
            continue
        if isinstance(default, tuple):  # repeatable: each use adds one value
            kwargs["action"] = "append"
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        else:
            metavar = meta["metavar"] or f.name.upper()
            kwargs["type"] = _named(meta["parse"], metavar) if meta["parse"] else _type_of(default)
            kwargs["metavar"] = metavar
        group.add_argument(_flag(f.name), help=help_text, **kwargs)
    return parser


def _named(parse: Any, metavar: str) -> Any:
    """Wrap a parser so argparse's error names what was expected (it quotes __name__):
    "invalid seconds value: 'soon'"."""

    def value(text: str) -> Any:
        return parse(text)

    value.__name__ = metavar.lower()
    return value


def _type_of(default: Any) -> Any:
    """The type of one value: a repeatable setting's items are strings."""
    return str if isinstance(default, tuple) else type(default)


def _show(value: Any, switch: bool = True) -> str:
    if isinstance(value, bool):
        if not switch:
            return "true" if value else "false"
        return "on" if value else "off"
    if value == "":
        return '""'
    if value is None or value == ():
        return "none"
    return str(value)


def parse_args(argv: list[str] | None = None) -> tuple[str, Config]:
    """The APP target and a validated Config, or exit 2 with one line."""
    namespace = vars(build_parser().parse_args(argv))
    target = namespace.pop("app")
    config_file = namespace.pop("config")
    settings: dict[str, Any] = {}
    try:
        if config_file is not None:
            file_target, settings = load_config_file(config_file)
            target = target or file_target
        if target is None:
            fail("the following arguments are required: APP (or 'app' in --config)", EXIT_USAGE)
        config = Config(**{**settings, **namespace})  # the command line wins
    except ConfigError as exc:
        if config_file is not None and _valid_alone(namespace):
            fail(f"config {config_file}: {exc}", EXIT_USAGE)
        fail(str(exc), EXIT_USAGE)
    return target, config


def _valid_alone(given: dict[str, Any]) -> bool:
    """Whether the command line's own settings pass without the config file's: then the
    error comes from the file and can name it. (On the way to an error only: it validates
    again.)"""
    try:
        Config(**given)
    except ConfigError:
        return False
    return True


def main(argv: list[str] | None = None) -> NoReturn:
    target, config = parse_args(argv)
    try:
        configure_logging(
            config.log_level, access_log=config.access_log, config_file=config.log_config
        )
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if config.workers > 1 or config.reload:
        # Imported only when asked for: one process never loads the supervisor (or watchfiles).
        from .supervisor import run_supervisor

        raise SystemExit(run_supervisor(target, config))
    try:
        app = load_app(target, factory=config.factory, app_dir=config.app_dir)
        server = Server(app, config)  # checks --interface against the app, loads TLS files
    except (AppLoadError, ConfigError) as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        trio.run(functools.partial(server.serve, handle_signals=True))
    except StartupFailed as exc:
        fail(f"application startup failed: {exc}", EXIT_STARTUP_FAILED)
    except BindError as exc:
        fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        fail(f"cannot serve on {config.host}:{config.port}: {exc.strerror or exc}", EXIT_FAILED)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        raise SystemExit(EXIT_FAILED) from None
    if server.forced:
        error_logger.warning("Stopped without a graceful shutdown")
        raise SystemExit(EXIT_FAILED)
    raise SystemExit(EXIT_OK)
