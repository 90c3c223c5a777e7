"""Find the application (``module:attribute``, no eval) and adapt its calling convention.

ASGI 2 apps are wrapped into ASGI 3 once, at load time, so the hot path only knows one shape.
"""

from __future__ import annotations

import asyncio.coroutines
import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any, cast

from ._types import ASGIApp, Receive, Scope, Send
from .config import Interface
from .errors import AppLoadError


def import_from_string(target: str, *, app_dir: str = ".") -> Any:
    """``"package.module:attr.sub"`` → that object; ``AppLoadError`` with a one-line reason."""
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppLoadError(f'APP must look like "module:attribute", got {target!r}')
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (
            exc.name
            and module_name.startswith(exc.name)
            and (exc.name == module_name or module_name.startswith(exc.name + "."))
        ):
            raise AppLoadError(f"could not import module {module_name!r}") from None
        raise AppLoadError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise AppLoadError(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attrs!r}") from None
    return obj


def load_app(target: str, *, factory: bool = False, app_dir: str = ".") -> Any:
    """Import ``target``; with ``factory`` call it (without arguments) to get the app."""
    obj = import_from_string(target, app_dir=app_dir)
    if factory:
        if not callable(obj):
            raise AppLoadError(f"{target} is not callable, so it cannot be a --factory")
        try:
            obj = obj()
        except Exception as exc:
            raise AppLoadError(f"app factory {target} raised {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise AppLoadError(f"{target} is not callable, so it is not an ASGI application")
    return obj


# What asgiref's markcoroutinefunction sets on Pythons without inspect.markcoroutinefunction.
_ASYNCIO_MARKER = getattr(asyncio.coroutines, "_is_coroutine", None)


def _is_coroutine_callable(obj: Any) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    return _ASYNCIO_MARKER is not None and getattr(obj, "_is_coroutine", None) is _ASYNCIO_MARKER


def is_double_callable(app: Any) -> bool:
    """True for the ASGI 2 form ``app(scope)`` → ``instance(receive, send)``.

    The same decision asgiref makes: explicit ``_asgi_single_callable`` /
    ``_asgi_double_callable`` markers win; an uninstantiated class is ASGI 2 (its
    ``__init__`` takes the scope); otherwise an object whose ``__call__`` (or a function that)
    is not a coroutine function is ASGI 2.
    """
    if getattr(app, "_asgi_single_callable", False):
        return False
    if getattr(app, "_asgi_double_callable", False):
        return True
    if inspect.isclass(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - we need the method itself
    if call is not None and _is_coroutine_callable(call):
        return False
    return not _is_coroutine_callable(app)


def asgi2_to_asgi3(app: Callable[[Scope], Any]) -> ASGIApp:
    async def asgi3(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    asgi3.__wrapped__ = app  # type: ignore[attr-defined]
    return asgi3


def adapt(app: Any, interface: Interface) -> ASGIApp:
    """The app as ASGI 3, according to ``interface`` (``auto`` detects)."""
    if interface == "asgi2" or (interface == "auto" and is_double_callable(app)):
        return asgi2_to_asgi3(app)
    return cast(ASGIApp, app)
