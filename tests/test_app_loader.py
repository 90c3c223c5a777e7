"""Finding the app and deciding its calling convention (ASGI 3 or the legacy ASGI 2)."""

from __future__ import annotations

import functools
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from trio_asgi.app_loader import adapt, is_double_callable, load_app
from trio_asgi.errors import AppLoadError
from trio_asgi.testing import TestClient

Scope = dict[str, Any]


async def asgi3(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"asgi3"})


class ASGI2Class:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"asgi2 class"})


def asgi2_function(scope: Scope) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"asgi2 function"})

    return instance


class ASGI3Instance:
    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await asgi3(scope, receive, send)


class SyncCallReturningInstance:
    def __call__(self, scope: Scope) -> Any:
        return asgi2_function(scope)


def marked_single(scope: Scope, receive: Any, send: Any) -> Any:
    return asgi3(scope, receive, send)


marked_single._asgi_single_callable = True  # type: ignore[attr-defined]


class MarkedDouble:
    _asgi_double_callable = True

    async def __call__(self, scope: Scope) -> Any:  # looks single, marker says double
        return asgi2_function(scope)


@pytest.mark.parametrize(
    ("app", "double"),
    [
        (asgi3, False),
        (ASGI2Class, True),
        (asgi2_function, True),
        (ASGI3Instance(), False),
        (SyncCallReturningInstance(), True),
        (marked_single, False),
        (MarkedDouble(), True),
        (functools.partial(asgi3), False),
    ],
)
def test_is_double_callable(app: Any, double: bool) -> None:
    assert is_double_callable(app) is double


@pytest.mark.parametrize(
    ("app", "body"),
    [(asgi3, b"asgi3"), (ASGI2Class, b"asgi2 class"), (asgi2_function, b"asgi2 function")],
)
async def test_detected_apps_are_served(app: Any, body: bytes) -> None:
    async with TestClient(app) as client:
        assert (await client.get("/")).content == body


async def test_asgi2_apps_see_asgi_version_2() -> None:
    versions = []

    class App:
        def __init__(self, scope: Scope) -> None:
            versions.append(scope["asgi"]["version"])

        async def __call__(self, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 204})
            await send({"type": "http.response.body"})

    async with TestClient(App, lifespan="off") as client:
        await client.get("/")
    assert versions == ["2.0"]


async def test_interface_can_be_forced() -> None:
    assert adapt(asgi3, "asgi3") is asgi3
    wrapped = adapt(SyncCallReturningInstance(), "asgi2")
    async with TestClient(wrapped, interface="asgi3") as client:
        assert (await client.get("/")).content == b"asgi2 function"


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (asgi3, "--interface asgi2, but tests.test_app_loader.asgi3 is an async callable"),
        (lambda environ, start_response: [], "cannot be called as app(scope): its signature"),
    ],
)
def test_interface_asgi2_refuses_what_cannot_be_asgi2(app: Any, message: str) -> None:
    """As for --interface wsgi: refused at startup, not failing on every request."""
    with pytest.raises(AppLoadError, match=re.escape(message)):
        adapt(app, "asgi2")


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good_app.py").write_text(
        textwrap.dedent(
            """
            async def app(scope, receive, send):
                pass

            class Holder:
                inner = app

            def make_app():
                return app

            def broken_factory():
                raise RuntimeError("factory exploded")

            not_callable = 42
            """
        )
    )
    (tmp_path / "raising_app.py").write_text("import nonexistent_dependency_xyz\n")
    (tmp_path / "erroring_app.py").write_text("1 / 0\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("good_app", "raising_app", "erroring_app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_load_app_variants(app_dir: Path) -> None:
    app = load_app("good_app:app", app_dir=str(app_dir))
    assert load_app("good_app:Holder.inner", app_dir=str(app_dir)) is app
    assert load_app("good_app:make_app", factory=True, app_dir=str(app_dir)) is app


@pytest.mark.parametrize(
    ("target", "factory", "message"),
    [
        ("no_colon", False, 'must look like "module:attribute"'),
        ("good_app:", False, 'must look like "module:attribute"'),
        ("missing_module_xyz:app", False, "could not import module 'missing_module_xyz'"),
        ("raising_app:app", False, "nonexistent_dependency_xyz"),
        ("erroring_app:app", False, "ZeroDivisionError"),
        ("good_app:nope", False, "has no attribute 'nope'"),
        ("good_app:not_callable", False, "is not callable"),
        ("good_app:broken_factory", True, "factory exploded"),
    ],
)
def test_load_errors_are_one_clear_line(
    app_dir: Path, target: str, factory: bool, message: str
) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app(target, factory=factory, app_dir=str(app_dir))
    assert message in str(info.value)
    assert "\n" not in str(info.value)
