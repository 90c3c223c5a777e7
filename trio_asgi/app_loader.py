"""Find the application (``module:attribute``, no eval) and adapt its calling convention.

ASGI 2 and WSGI apps are wrapped into ASGI 3 once, at load time, so the hot path only knows
one shape. ``detect_interface`` documents how ``--interface auto`` decides.
"""

from __future__ import annotations

import asyncio.coroutines
import functools
import importlib
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any, Final, Literal, cast

from ._types import ASGIApp, Receive, Scope, Send
from .asyncio_apps import INSTALL_HINT, detect_app_loop
from .asyncio_bridge import AsyncioBridge, import_trio_asyncio
from .config import AppLoop, Interface
from .errors import AppLoadError
from .wsgi import DEFAULT_THREADS, WSGIAdaptor

log = logging.getLogger("trio_asgi.error")


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
    """True for the ASGI 2 form ``app(scope)`` → ``instance(receive, send)``."""
    return detect_interface(app)[0] == "asgi2"


Detected = Literal["asgi3", "asgi2", "wsgi"]


def detect_interface(app: Any) -> tuple[Detected, str]:
    """The calling convention of ``app`` and the reason, for ``--interface auto``.

    In order:

    1. asgiref's markers: ``_asgi_single_callable`` → ASGI 3, ``_asgi_double_callable`` →
       ASGI 2.
    2. A coroutine function, or an object whose ``__call__`` is one → ASGI 3.
    3. Anything else is synchronous (a function, an object with ``__call__``, or a class,
       whose constructor is what gets called). Its signature decides by how many positional
       arguments it accepts: only 1 (``scope``) → ASGI 2; 2 (``environ, start_response``)
       but not 1 → WSGI; 3 (``scope, receive, send``, e.g. a class whose instances are
       awaitable) but not 1 or 2 → ASGI 3.
    4. No signature, or one that accepts both 1 and 2 (``*args``) → ASGI 2, asgiref's
       answer for synchronous callables, with a warning that says how to decide.
    """
    if getattr(app, "_asgi_single_callable", False):
        return "asgi3", "it is marked _asgi_single_callable"
    if getattr(app, "_asgi_double_callable", False):
        return "asgi2", "it is marked _asgi_double_callable"
    if _is_async(app):
        return "asgi3", "it is an async callable"
    arities = _positional_arities(app)
    if arities is not None:
        if 1 in arities and 2 not in arities:
            return "asgi2", "it takes one argument (scope)"
        if 2 in arities and 1 not in arities:
            return "wsgi", "it takes (environ, start_response)"
        if arities == {3}:
            return "asgi3", "it takes (scope, receive, send)"
    return "asgi2", "ambiguous"


def _is_async(app: Any) -> bool:
    if inspect.isclass(app):
        return False  # cls.__call__ is its instances' method; the class itself is sync
    if _is_coroutine_callable(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - we need the method itself
    return call is not None and _is_coroutine_callable(call)


def _positional_arities(app: Any) -> set[int] | None:
    """Which of 1, 2 or 3 positional arguments a call of ``app`` accepts; None if unknown."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):  # builtins and some extension types have none
        return None
    arities = set()
    for count in (1, 2, 3):
        try:
            signature.bind(*range(count))
        except TypeError:
            continue
        arities.add(count)
    return arities


def _describe(app: Any) -> str:
    if inspect.isfunction(app) or inspect.isclass(app):
        return f"{app.__module__}.{app.__qualname__}"
    return f"a {type(app).__qualname__} instance"


def _signature(app: Any) -> str:
    """The parameters, without annotations: ``(environ, start_response)``."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return "(unknown)"
    empty = inspect.Parameter.empty
    parameters = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=parameters, return_annotation=empty))


def asgi2_to_asgi3(app: Callable[[Scope], Any], hint: str | None = None) -> ASGIApp:
    """Wrap an ASGI 2 app; ``hint`` is added to a TypeError from calling ``app(scope)``
    (a guessed interface that was wrong fails there)."""

    async def asgi3(scope: Scope, receive: Receive, send: Send) -> None:
        scope["asgi"]["version"] = "2.0"  # the interface this app is spoken to with
        try:
            instance = app(scope)
        except TypeError as exc:
            if hint is not None:
                exc.add_note(hint)
            raise
        await instance(receive, send)

    asgi3.__wrapped__ = app  # type: ignore[attr-defined]
    return asgi3


def adapt(
    app: Any,
    interface: Interface,
    *,
    wsgi_threads: int = DEFAULT_THREADS,
    multiprocess: bool = False,
    app_loop: AppLoop = "trio",
) -> ASGIApp:
    """The app as ASGI 3 for the trio server, according to ``interface`` and ``app_loop``
    (``auto`` detects, and says so when it picks WSGI or asyncio, or has to guess).

    Raises ``AppLoadError`` if ``interface`` is ``wsgi`` and the app certainly is not a
    WSGI app, or if asyncio is needed and trio-asyncio is not installed. ``multiprocess``
    (several worker processes serve the app) becomes ``wsgi.multiprocess``. An app for
    asyncio comes back as an ``AsyncioBridge``, whose loop the server opens.
    """
    asgi3 = _adapt_interface(app, interface, wsgi_threads, multiprocess, app_loop)
    if isinstance(asgi3, WSGIAdaptor):
        return asgi3
    if app_loop == "auto":
        app_loop, reason = cast(tuple[AppLoop, str], detect_app_loop(app))
        if app_loop == "asyncio":
            import_trio_asyncio(
                f"{_describe(app)} is {reason}, which runs on asyncio: install trio-asyncio to "
                f"serve it ({INSTALL_HINT}), or pass --app-loop trio"
            )
            log.info(
                "%s is %s: running it in an asyncio loop on trio (trio-asyncio). "
                "Pass --app-loop trio to override.",
                _describe(app),
                reason,
            )
    if app_loop == "asyncio":
        return AsyncioBridge(asgi3)
    return asgi3


def _adapt_interface(
    app: Any, interface: Interface, wsgi_threads: int, multiprocess: bool, app_loop: AppLoop
) -> ASGIApp:
    kind: Detected
    if interface == "auto":
        kind, reason = detect_interface(app)
        if kind == "wsgi" and app_loop == "asyncio":
            raise AppLoadError(
                f"--app-loop asyncio is for ASGI applications; {_describe(app)} is a WSGI "
                "application, which runs in threads"
            )
        if reason == "ambiguous":
            log.warning(
                "Cannot tell from its signature %s whether %s is an ASGI 2 or a WSGI "
                "application; assuming ASGI 2. Pass --interface asgi2 or --interface wsgi.",
                _signature(app),
                _describe(app),
            )
            return asgi2_to_asgi3(
                app,
                hint=f"trio_asgi guessed that {_describe(app)} is an ASGI 2 application and "
                "called it as app(scope); if it is a WSGI or ASGI 3 application, run it "
                "with --interface wsgi or --interface asgi3.",
            )
        if kind == "wsgi":
            log.info(
                "%s is a WSGI application (%s): running it in up to %d threads. "
                "Pass --interface to override.",
                _describe(app),
                reason,
                wsgi_threads,
            )
        else:
            log.debug("%s is an %s application (%s)", _describe(app), kind.upper(), reason)
    else:
        kind = interface
        if kind != "asgi3":  # (auto-detection says wsgi or asgi2 only for apps that pass)
            _check_forced(app, kind)
    if kind == "asgi2":
        return asgi2_to_asgi3(app)
    if kind == "wsgi":
        if app_loop == "asyncio":
            raise AppLoadError("--app-loop asyncio is for ASGI applications, not WSGI")
        return WSGIAdaptor(app, threads=wsgi_threads, multiprocess=multiprocess)
    return cast(ASGIApp, app)


# What --interface KIND calls an app with: the positional arguments it must accept.
_FORCED_CALLS: Final = {"wsgi": (2, "app(environ, start_response)"), "asgi2": (1, "app(scope)")}


def _check_forced(app: Any, kind: str) -> None:
    """Refuse ``--interface wsgi`` or ``asgi2`` for an app that cannot be one, instead of
    failing on every request."""
    arity, call = _FORCED_CALLS[kind]
    if _is_async(app):
        raise AppLoadError(
            f"--interface {kind}, but {_describe(app)} is an async callable, i.e. an ASGI "
            "application; use --interface asgi3 (or auto)"
        )
    arities = _positional_arities(app)
    if arities is not None and arity not in arities:
        raise AppLoadError(
            f"--interface {kind}, but {_describe(app)} cannot be called as {call}: its "
            f"signature is {_signature(app)}"
        )
