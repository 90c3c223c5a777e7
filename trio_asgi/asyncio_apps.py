"""Which ASGI apps need asyncio (``--app-loop auto``), and how an asyncio app that runs on
trio by mistake shows itself, so that the log can say what to do."""

from __future__ import annotations

from typing import Any, Final

INSTALL_HINT: Final = "pip install 'trio-asgi[asyncio]'"


# Classes whose instances are asyncio-only ASGI apps, by "module.qualname" anywhere in the
# MRO; a trio class wins over them (QuartTrio is a Quart subclass).
_ASYNCIO_CLASSES: Final = {
    "django.core.handlers.asgi.ASGIHandler": "a Django ASGIHandler",
    "quart.app.Quart": "a Quart app",
    "sanic.app.Sanic": "a Sanic app",
}
_TRIO_CLASSES: Final = frozenset({"quart_trio.app.QuartTrio"})
# Every ASGI app Channels builds (routers, middleware, consumers' as_asgi()) is asyncio.
_ASYNCIO_PACKAGES: Final = {"channels": "a Django Channels app"}
# Where ASGI middleware keeps the app it wraps.
_WRAPPED_ATTRIBUTES: Final = ("app", "application", "inner", "__wrapped__", "func")
_MAX_WRAPPERS: Final = 10


def detect_app_loop(app: Any) -> tuple[str, str]:
    """``("asyncio", what it is)`` for an app recognised as asyncio-bound, else
    ``("trio", "")``.

    Looks at the app and, through common middleware attributes (``app``, ``inner``…), at
    the apps it wraps: Django's ``ASGIHandler``, anything from Channels, Quart apps that are
    not Quart-Trio, Sanic apps. Anything else (Starlette, FastAPI, Litestar… via anyio, or
    plain ASGI) runs on trio.
    """
    seen: set[int] = set()
    for _ in range(_MAX_WRAPPERS):
        if app is None or id(app) in seen:
            break
        seen.add(id(app))
        found = _asyncio_kind(app)
        if found == "trio":
            return "trio", ""
        if found is not None:
            return "asyncio", found
        app = next(
            (getattr(app, name) for name in _WRAPPED_ATTRIBUTES if _has_attribute(app, name)),
            None,
        )
    return "trio", ""


def _has_attribute(obj: Any, name: str) -> bool:
    try:
        return callable(getattr(obj, name, None))
    except Exception:  # a property that fails is no wrapped app
        return False


def _asyncio_kind(app: Any) -> str | None:
    """What makes ``app`` asyncio-bound, "trio" if it certainly is not, None if unknown."""
    cls = app if isinstance(app, type) else type(app)
    names = [f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__]
    if any(name in _TRIO_CLASSES for name in names):
        return "trio"
    for name in names:
        if name in _ASYNCIO_CLASSES:
            return _ASYNCIO_CLASSES[name]
    modules = [getattr(app, "__module__", None) or "", *(c.__module__ for c in cls.__mro__)]
    for module in modules:
        kind = _ASYNCIO_PACKAGES.get(module.partition(".")[0])
        if kind is not None:
            return kind
    return None


# How asyncio code fails when it runs on trio: asyncio finds no loop, or trio is handed an
# asyncio future to wait for.
_ASYNCIO_ON_TRIO: Final = ("no running event loop", "unrecognized yield message")
ASYNCIO_HINT: Final = (
    "This looks like an asyncio application running on trio: serve it with "
    "--app-loop asyncio (README: 'Frameworks')."
)


def looks_like_asyncio_on_trio(error: BaseException | str) -> bool:
    """Did ``error`` (an exception, its chain or group, or an app's failure message) come
    from asyncio code running without an asyncio loop?"""
    if isinstance(error, str):
        return any(sign in error for sign in _ASYNCIO_ON_TRIO)
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, RuntimeError | TypeError) and looks_like_asyncio_on_trio(str(exc)):
            return True
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        pending.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
    return False


def add_asyncio_hint(exc: BaseException) -> None:
    """Add ``ASYNCIO_HINT`` to the traceback of an app error that calls for it (once)."""
    if looks_like_asyncio_on_trio(exc) and ASYNCIO_HINT not in getattr(exc, "__notes__", ()):
        exc.add_note(ASYNCIO_HINT)
