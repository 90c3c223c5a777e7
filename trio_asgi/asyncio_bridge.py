"""Run an asyncio-only ASGI app (Django, Channels, Quart, Sanic…) inside the trio server.

The server stays trio; the app runs as an asyncio task in one trio-asyncio loop per server
process (``AsyncioBridge.open``, entered by the server around lifespan and connections). Its
``receive``/``send`` are asyncio coroutines whose work is done in trio by *servant* tasks.

Why servants instead of ``trio_asyncio.trio_as_aio`` (a new trio task per call): a message
then costs one ``reschedule`` of a parked servant and one asyncio wake-up, nothing else, and
frameworks that wait in ``receive()`` in one asyncio task while sending from another (Django,
Channels, Quart all do) get a second servant once per request, not a task per message.

Cancellation, both ways:

- trio → asyncio: when the server cancels the request's task (shutdown deadline, a
  connection torn down), the app's asyncio task is cancelled and awaited, for at most
  ``CANCEL_GRACE`` seconds; trio calls it makes meanwhile fail with ``CancelledError``.
- asyncio → trio: an asyncio task cancelled while awaiting ``receive()``/``send()`` cancels
  the trio call it was waiting for (a framework's disconnect listener, ``asyncio.wait_for``).

Two asyncio behaviours are changed on the bridge's loop, both for a server's sake: an error
asyncio cannot hand to anyone ("Task exception was never retrieved") is logged, not raised
into the loop's nursery (which would stop the server); and ``run_in_executor`` accepts any
``concurrent.futures.Executor`` (asgiref's ``sync_to_async`` brings its own thread pools,
which trio-asyncio's loop rejects: Django's sync views need this).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from ._types import ASGIApp, Message, Receive, Scope, Send
from .asyncio_apps import INSTALL_HINT
from .errors import AppLoadError

if TYPE_CHECKING:
    from trio_asyncio import TrioEventLoop

log = logging.getLogger("trio_asgi.error")

# How long a cancelled app gets to finish its asyncio task; an app that swallows
# CancelledError is abandoned after this (and cancelled again when the loop closes).
CANCEL_GRACE: Final = 5.0


def import_trio_asyncio(
    missing: str = f"--app-loop asyncio needs the trio-asyncio package: {INSTALL_HINT}",
) -> Any:
    """The ``trio_asyncio`` module, or an ``AppLoadError`` with the ``missing`` message."""
    try:
        import trio_asyncio
    except ImportError:
        raise AppLoadError(missing) from None
    return trio_asyncio


class AsyncioBridge:
    """An ASGI 3 app for the trio server that runs ``app`` in an asyncio loop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._trio_asyncio = import_trio_asyncio()
        self._loop: TrioEventLoop | None = None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        """The asyncio loop, for the life of the server (nested use is an error)."""
        if self._loop is not None:
            raise RuntimeError("this app's asyncio loop is already open")
        async with self._trio_asyncio.open_loop() as loop:
            loop.set_exception_handler(_log_loop_error)
            loop.run_in_executor = _any_executor(
                loop, loop.run_in_executor, self._trio_asyncio.TrioExecutor
            )
            _speed_up(loop)
            self._loop = loop
            try:
                yield
            finally:
                self._loop = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the asyncio loop is not open: serve the app with Server")
        await _BridgedCall(loop, receive, send).run(self.app, scope)


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    message = context.get("message") or "Unhandled error in the asyncio loop"
    log.error("asyncio: %s", message, exc_info=exc)


def _any_executor(
    loop: Any, run_in_executor: Callable[..., Any], trio_executor: type
) -> Callable[..., Any]:
    def run(executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        if executor is None or isinstance(executor, trio_executor):
            return run_in_executor(executor, func, *args)  # type: ignore[no-any-return]
        if not isinstance(executor, concurrent.futures.Executor):
            raise TypeError(f"run_in_executor: {executor!r} is not an Executor")
        return asyncio.wrap_future(executor.submit(func, *args), loop=loop)

    return run


# Callbacks run back to back in one trio scheduling round, at most this many: a request in
# Django takes about 30, and a round costs far more than a callback.
CALLBACK_BATCH: Final = 64


def _speed_up(loop: Any) -> None:
    """Two changes to trio-asyncio's loop for a server's load, each installed only when the
    loop has the internals it relies on (trio-asyncio 0.16 has them; otherwise the loop
    stays as it is, only slower).

    1. trio-asyncio's loop task takes one callback from its queue per trio scheduling round
       (a checkpoint, an epoll poll and a cancel scope each), and a Django request makes
       about 30 callbacks. ``_main_loop_one(no_wait=True)`` runs the next ready callback
       without yielding; we call it until the queue is empty. Django hello world went from
       674 to 1,017 requests/s.
    2. Its ``call_soon`` inspects every callback to refuse coroutine functions, a check
       asyncio itself makes only in debug mode.
    """
    one = getattr(loop, "_main_loop_one", None)
    if (
        one is not None
        and isinstance(getattr(loop, "_stopped", None), trio.Event)
        and "no_wait" in inspect.signature(one).parameters
    ):

        async def batch(no_wait: bool = False) -> None:
            await one(no_wait)
            for _ in range(CALLBACK_BATCH):
                if loop._stopped.is_set():
                    return
                try:
                    await one(True)
                except trio.WouldBlock:
                    return

        loop._main_loop_one = batch
    queue = getattr(loop, "_queue_handle", None)
    if queue is not None and not loop.get_debug():

        def call_soon(
            callback: Callable[..., Any], *args: Any, context: Any = None
        ) -> asyncio.Handle:
            return queue(asyncio.Handle(callback, args, loop, context=context))  # type: ignore[no-any-return]

        loop.call_soon = call_soon


class _Call:
    """One ``receive()``/``send()`` of the asyncio side, waiting for a servant."""

    __slots__ = ("args", "finished", "fn", "future", "servant")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: Any) -> None:
        self.fn = fn
        self.args = args
        self.future: asyncio.Future[Any] = future
        self.servant: _Servant | None = None  # the one running it
        # Set once the trio side is done with it, if someone waits for that (given up on).
        self.finished: asyncio.Future[None] | None = None


class _Servant:
    """A trio task making the asyncio side's trio calls, one at a time."""

    __slots__ = ("call", "scope", "task")

    def __init__(self) -> None:
        self.task: Task | None = None
        self.call: _Call | None = None
        self.scope: trio.CancelScope | None = None


class _BridgedCall:
    """One app call (a request, a WebSocket session or the lifespan) across the bridge."""

    __slots__ = (
        "_app_task",
        "_given_up",
        "_idle",
        "_loop",
        "_main",
        "_nursery",
        "_receive",
        "_send",
        "_unclaimed",
    )

    def __init__(self, loop: Any, receive: Receive, send: Send) -> None:
        self._loop = loop
        self._receive = receive
        self._send = send
        self._idle: list[_Servant] = []
        self._nursery: trio.Nursery | None = None
        self._main: Task | None = None
        self._app_task: asyncio.Task[None] | None = None
        # Messages a cancelled receive() had already taken from the server, in order: the
        # next receive() returns them (the cancellation came as, or after, the trio call
        # completed, so it could not be stopped any more).
        self._unclaimed: list[Message] = []
        self._given_up: _Call | None = None  # a cancelled receive() the trio side still runs

    # -- the asyncio side ------------------------------------------------------------------

    async def receive(self) -> Message:
        given_up = self._given_up
        if given_up is not None and given_up.finished is not None:
            # Its message, if it got one, comes first: wait until the trio side is done.
            await asyncio.shield(given_up.finished)
        if self._unclaimed:
            return self._unclaimed.pop(0)
        return await self._submit(self._receive, ())  # type: ignore[no-any-return]

    async def send(self, message: Message) -> None:
        await self._submit(self._send, (message,))

    async def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        call = _Call(fn, args, self._loop.create_future())
        if self._idle:
            servant = self._idle.pop()
            servant.call = call
            assert servant.task is not None  # (an idle servant is a task waiting)
            reschedule(servant.task)
        elif self._nursery is not None:
            self._nursery.start_soon(self._serve, call)
        else:  # a task the app left behind calls after the app returned
            raise RuntimeError("ASGI receive/send called after the application returned")
        future = call.future
        try:
            return await future
        except asyncio.CancelledError:
            # The asyncio task waiting for this call was cancelled: stop the trio side too,
            # so that e.g. a cancelled receive() does not take the next message.
            running = call.servant
            if running is not None and running.call is call and running.scope is not None:
                running.scope.cancel()
                if fn is self._receive:  # it may still complete: the next receive() waits
                    call.finished = self._loop.create_future()
                    self._given_up = call
            if not future.cancelled() and future.exception() is None:
                self._keep(call, future.result())  # it had its answer, but never resumed
            raise

    def _keep(self, call: _Call, result: Any) -> None:
        """A result the asyncio side gave up on: a message received stays for the next
        ``receive()`` (what was sent is sent; nothing to keep)."""
        if call.fn is self._receive:
            self._unclaimed.append(result)

    async def _run_app(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        finally:
            # The task is done once this step ends, before the trio side runs again. Waking
            # it from here saves the loop iteration a done-callback would cost.
            self._app_done()

    def _app_done(self, _task: object = None) -> None:
        if self._main is not None:
            main, self._main = self._main, None
            reschedule(main)

    # -- the trio side ---------------------------------------------------------------------

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        task = self._loop.create_task(self._run_app(app, scope))
        self._app_task = task
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._wait_for_app()
            except trio.Cancelled:
                await self._cancel_app()  # servants still answer it, with CancelledError
                raise
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()  # idle servants
        if task.cancelled():
            raise RuntimeError("the asyncio task running the ASGI application was cancelled")
        task.result()  # the app's exception, if any

    async def _wait_for_app(self) -> None:
        if self._app_task is not None and self._app_task.done():
            await trio.lowlevel.checkpoint()
            return
        self._main = current_task()

        def abort(_raise_cancel: Any) -> Abort:
            self._main = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    async def _cancel_app(self) -> None:
        """Cancel the asyncio task and wait (a bounded time) until it has finished."""
        task = self._app_task
        if task is None or task.done():
            return
        task.cancel()
        # A task cancelled before its first step never runs _run_app's `finally`.
        task.add_done_callback(self._app_done)
        with trio.CancelScope(shield=True) as grace:
            grace.deadline = trio.current_time() + CANCEL_GRACE
            await self._wait_for_app()
        if not task.done():
            log.error(
                "The asyncio task of the ASGI application ignored its cancellation for %g s; "
                "abandoning it",
                CANCEL_GRACE,
            )
            task.cancel()

    async def _serve(self, call: _Call | None) -> None:
        """A servant: makes ``call``, then each call it is handed while parked. Its scope is
        cancelled only when the asyncio side gives up on the call in progress; it then goes
        on in a fresh scope (one scope per cancellation, not one per call)."""
        servant = _Servant()
        servant.task = current_task()
        while True:
            with trio.CancelScope() as scope:
                servant.scope = scope
                while True:
                    if call is None:
                        call = await self._park(servant)
                    current, call = call, None  # so a fresh scope does not make it again
                    await self._make_call(servant, current)

    async def _make_call(self, servant: _Servant, call: _Call) -> None:
        """Make ``call`` in trio and settle its future with the outcome, unless the asyncio
        side has settled it already (cancelled)."""
        future = call.future
        if future.done():  # cancelled before we got to it: nothing to wait for or keep
            servant.call = None
            return
        servant.call = call
        call.servant = servant
        try:
            result = await call.fn(*call.args)
        except trio.Cancelled:
            if not future.done():
                future.cancel()
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
            else:  # cancelled while the trio call was already done, waiting to resume us
                self._keep(call, result)
        finally:
            servant.call = None
            if call.finished is not None:
                call.finished.set_result(None)
                if self._given_up is call:
                    self._given_up = None

    async def _park(self, servant: _Servant) -> _Call:
        self._idle.append(servant)

        def abort(_raise_cancel: Any) -> Abort:
            self._idle.remove(servant)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)
        call = servant.call
        assert call is not None
        return call
