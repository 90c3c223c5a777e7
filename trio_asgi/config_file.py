"""``--config FILE.toml``: any setting from a file, so a deployment is one file.

Keys are ``Config`` field names (``proxy_headers``) or the flag names without dashes in front
(``proxy-headers``), plus ``app`` for the ``module:attr`` target. They are read from the
``[tool.trio_asgi]`` table when the file has a ``[tool]`` table (so ``pyproject.toml`` works),
else from the top level. Values have TOML's types: booleans, numbers, strings. Where the
command line takes a word (``none``, ``off`` for a timer or a limit), the same string works.

Everything wrong is a ``ConfigError`` with one line naming the file and the key: unknown
keys (with a suggestion), wrong types, a file that is missing or not TOML.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from typing import Any, Literal

from .config import Config, parse_octal
from .errors import ConfigError

TABLE = "trio_asgi"
APP_KEY = "app"


def load_config_file(path: str) -> tuple[str | None, dict[str, Any]]:
    """``(app target or None, settings for Config(**settings))`` from the TOML file."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # (TOML is UTF-8; tomllib lets this through)
        raise ConfigError(f"config {path}: invalid TOML: not UTF-8 ({exc.reason})") from None
    table: dict[str, Any] = document
    if "tool" in document:
        tool = document["tool"]
        found = tool.get(TABLE) if isinstance(tool, dict) else None
        if not isinstance(found, dict):
            raise ConfigError(f"config {path}: has a [tool] table but no [tool.{TABLE}] in it")
        table = found
    # Settings only Python can give (objects, not text) are unknown to a file as to the CLI.
    fields = {f.name: f for f in dataclasses.fields(Config) if f.metadata.get("cli", True)}
    hints = typing.get_type_hints(Config)
    target: str | None = None
    settings: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        where = f"config {path}: {key}"
        if name == APP_KEY:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string like 'module:attr'")
            target = value
            continue
        if name not in fields:
            raise ConfigError(f"config {path}: unknown setting {key!r}{_suggest(name, fields)}")
        if name in settings:
            raise ConfigError(f"{where} is given twice (as {name} and with dashes)")
        settings[name] = _convert(where, value, hints[name], fields[name].metadata.get("parse"))
    return target, settings


def _suggest(name: str, fields: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, [*fields, APP_KEY], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _convert(where: str, value: Any, hint: Any, parse: Any) -> Any:
    """``value`` checked against the field's type; words parsed as the command line would."""
    if isinstance(value, str) and parse is not None:
        try:
            return parse(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if parse is parse_octal and not isinstance(value, str):
        # `660` in TOML is decimal 660 (0o1224), and `0o660` arrives as 432: the intent
        # cannot be told from the number, so a mode must be written as on the command line.
        raise ConfigError(f'{where} must be a string with the octal mode, like "660"')
    allowed = _types(hint)
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int):
        ok = int in allowed or float in allowed
    else:
        ok = isinstance(value, tuple(t for t in allowed if t not in (bool, int)))
    if not ok:
        expected = " or ".join(sorted({_TYPE_NAMES[t] for t in allowed}))
        got = _TYPE_NAMES.get(type(value), type(value).__name__)
        raise ConfigError(f"{where} must be {expected}, not {got} {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and int not in allowed:
        return float(value)
    return value


_TYPE_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _types(hint: Any) -> set[type]:
    """The plain types a field's annotation admits (``None`` has no TOML spelling)."""
    if typing.get_origin(hint) is Literal:
        return {str}
    if typing.get_origin(hint) is tuple:  # repeatable options: an array, or one string
        return {list, str}
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return set().union(*(_types(arg) for arg in typing.get_args(hint))) - {type(None)}
    return {hint}
