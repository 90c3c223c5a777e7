"""``serve()``: the nurseries of a running server and the order in which it stops.

The root nursery holds the signal watcher and the Heartbeat (connection timers); inside it, the
asyncio loop of an asyncio app (``--app-loop asyncio``) is open around an *app tasks*
nursery with the lifespan task; inside that, a *connections* nursery holds one task per
client, and inside that a *listeners* nursery holds the accept loops. Keeping listeners and
connections apart is what makes a graceful stop possible: cancel the listeners (stop
accepting), ask each connection to wind down, give them a deadline, then cancel whatever is
left. Lifespan shutdown runs after the last connection, and the asyncio loop closes after it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import trio

from ._types import Address as ClientAddress
from ._types import ASGIApp, ServerAddress
from .app_loader import adapt
from .asgi.scope import ConnectionInfo, SecureTransportInfo
from .asyncio_bridge import AsyncioBridge
from .config import Config
from .connection import Connection, ServerState
from .errors import StartupFailed
from .lifespan import Lifespan
from .listeners import (
    accept_loop,
    listener_address,
    listener_url,
    open_listeners,
    stream_addresses,
)
from .logging import format_address
from .proxy import ProxyHeaders
from .tls import ServerTLS, TLSDetails, handshake, load_server_tls, tls_details

log = logging.getLogger("trio_asgi.error")


def http_extensions(config: Config) -> dict[str, dict[object, object]]:
    """The ASGI extensions every HTTP scope advertises (each one is implemented)."""
    extensions: dict[str, dict[object, object]] = {
        "http.response.trailers": {},
        "http.response.pathsend": {},
        "http.response.zerocopysend": {},
    }
    if config.http_early_hints:
        extensions["http.response.early_hint"] = {}
    return extensions


class Server:
    """One server: ``await server.serve()`` runs it; ``request_shutdown()`` stops it."""

    def __init__(
        self,
        app: Any,
        config: Config | None = None,
        *,
        wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        """``wrap`` is given the adapted app and returns the app to serve: for tools that
        observe the app (the test client records what it receives and sends)."""
        self.config = config or Config()
        adapted = adapt(
            app,
            self.config.interface,
            wsgi_threads=self.config.wsgi_threads,
            multiprocess=self.config.workers > 1,
            app_loop=self.config.app_loop,
        )
        # The one asyncio loop of an asyncio app: open from before lifespan startup until
        # after lifespan shutdown.
        self._bridge = adapted if isinstance(adapted, AsyncioBridge) else None
        self.state = ServerState(
            app=wrap(adapted) if wrap is not None else adapted, config=self.config
        )
        self.addresses: list[ServerAddress] = []
        self.forced = False  # a second signal cut the graceful shutdown short
        # A worker process leaves the "listening on" line to its supervisor, which owns the
        # sockets and announces them once.
        self.announce = True
        self._close_code = 1001
        self._stop = trio.Event()
        self._root: trio.Nursery | None = None
        self.lifespan = Lifespan(
            self.state.app,
            self.config.lifespan,
            self.state.lifespan_state,
            shutdown_limit=self.config.timeout_lifespan_shutdown,
        )
        self.state.on_request_limit = self.request_shutdown
        self._http_extensions = http_extensions(self.config)
        # TLS files are loaded here, so that a bad one is a usage error before serving.
        self.tls: ServerTLS | None = load_server_tls(self.config)
        self._handshakes: set[trio.CancelScope] = set()  # cancelled when shutdown begins
        self._proxy: ProxyHeaders | None = None
        if self.config.proxy_headers:
            self._proxy = ProxyHeaders(self.config.trusted_proxies)

    def request_shutdown(self, close_code: int = 1001) -> None:
        """Begin a graceful shutdown (idempotent). Safe to call from any trio task.

        ``close_code`` is what WebSocket clients are told: 1001 (going away) by default,
        1012 (service restart) when a supervisor replaces this worker.
        """
        if not self._stop.is_set():
            self._close_code = close_code
        self._stop.set()

    def force_shutdown(self) -> None:
        """Stop now: cancel everything, skipping the drain deadline."""
        self.forced = True
        self._stop.set()
        if self._root is not None:
            self._root.cancel_scope.cancel()

    async def serve(
        self,
        *,
        listeners: list[trio.abc.Listener[Any]] | None = None,
        handle_signals: bool = False,
        shutdown_trigger: trio.Event | None = None,
        task_status: trio.TaskStatus[list[ServerAddress]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until shut down (``shutdown_trigger`` set: gracefully). ``listeners`` replaces
        binding the configured address (the test client passes an in-memory one)."""
        config = self.config
        if listeners is None:
            listeners = await open_listeners(config, self.tls)
        startup_failure: StartupFailed | None = None
        try:
            async with trio.open_nursery() as root:
                self._root = root
                if handle_signals:
                    await root.start(self._watch_signals)
                if shutdown_trigger is not None:
                    root.start_soon(self._watch_trigger, shutdown_trigger)
                await root.start(self.state.heartbeat.run)
                await root.start(self.state.readiness.run)
                await root.start(self.state.handoffs.run)
                async with self._app_loop(), trio.open_nursery() as app_tasks:
                    try:
                        await self.lifespan.startup(app_tasks)
                    except StartupFailed as exc:
                        # Raised after the nursery, so callers see StartupFailed, not a group.
                        startup_failure = exc
                    else:
                        await self._serve_connections(listeners, task_status)
                        await self.lifespan.shutdown()
                    app_tasks.cancel_scope.cancel()  # a lifespan task still running
                root.cancel_scope.cancel()  # the signal watcher
        finally:
            # Also when cancelled or failing: no listening socket (or unix socket file)
            # outlives serve().
            self._root = None
            for listener in listeners:
                await trio.aclose_forcefully(listener)

        if startup_failure is not None:
            raise startup_failure

    async def _watch_trigger(self, trigger: trio.Event) -> None:
        await trigger.wait()
        self.request_shutdown()

    def _app_loop(self) -> AbstractAsyncContextManager[None]:
        return self._bridge.open() if self._bridge is not None else nullcontext()

    async def _serve_connections(
        self,
        listeners: list[trio.abc.Listener[Any]],
        task_status: trio.TaskStatus[list[ServerAddress]],
    ) -> None:
        """Accept until asked to stop, then drain the connections within the grace period."""
        state = self.state
        config = self.config
        self.addresses = [listener_address(listener) for listener in listeners]
        slots = None
        if config.limit_concurrency is not None and config.limit_concurrency_mode == "backlog":
            slots = trio.Semaphore(config.limit_concurrency)
        with trio.CancelScope() as drain_scope:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as accepting:
                    for listener in listeners:
                        accepting.start_soon(
                            accept_loop, listener, connections, self._handle, slots
                        )
                    if self.announce:
                        log.info(
                            "trio_asgi listening on %s (press CTRL+C to quit)",
                            ", ".join(listener_url(listener) for listener in listeners),
                        )
                    task_status.started(list(self.addresses))
                    await self._stop.wait()
                    accepting.cancel_scope.cancel()
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
                log.info("Shutting down: waiting for %d connection(s)", len(state.connections))
                state.begin_shutdown(self._close_code)
                for handshaking in self._handshakes:
                    handshaking.cancel()
                drain_scope.deadline = trio.current_time() + config.timeout_graceful_shutdown
        if drain_scope.cancelled_caught:
            log.warning("Graceful shutdown timed out; remaining connections were cancelled")

    def _handle(
        self, stream: trio.abc.Stream, *, secure_transport: bool = False
    ) -> Awaitable[None]:
        """What the task of a newly accepted stream runs.

        A plain function that returns ``Connection.serve()``'s coroutine instead of a
        coroutine that awaits it: each idle connection then keeps one suspended frame less
        (about 250 bytes of the ~12 KiB an idle WebSocket costs).

        ``secure_transport`` makes the scopes https/wss without TLS: the test client passes
        it for its in-memory streams when its base_url is https. Listeners never do.
        """
        if isinstance(stream, trio.SSLStream):
            return self._handle_tls(stream)
        addresses = stream_addresses(stream)
        if addresses is None:  # the client left before we got to it: the task closes it
            return trio.aclose_forcefully(stream)  # noqa: ASYNC105 (awaited as the task)
        return self._connection(stream, addresses, None, secure_transport).serve()

    async def _handle_tls(self, stream: trio.SSLStream[Any]) -> None:
        addresses = stream_addresses(stream)
        if addresses is None or not await self._handshake(stream, addresses[0]):
            await trio.aclose_forcefully(stream)
            return
        server_cert = None  # unknown for listeners a caller wrapped with its own context
        if self.tls is not None and stream.context is self.tls.context:
            server_cert = self.tls.server_cert
        await self._connection(stream, addresses, tls_details(stream, server_cert)).serve()

    def _connection(
        self,
        stream: trio.abc.Stream,
        addresses: tuple[ClientAddress | None, ServerAddress],
        tls: TLSDetails | None,
        secure_transport: bool = False,
    ) -> Connection:
        proxy = self._proxy
        info = (SecureTransportInfo if secure_transport else ConnectionInfo)(
            client=addresses[0],
            server=addresses[1],
            root_path=self.config.root_path,
            http_extensions=self._http_extensions,
            tls=tls,
            proxy=proxy if proxy is not None and proxy.trusts_peer(addresses[0]) else None,
        )
        connection = Connection(stream, self.state, info)
        limit = self.config.limit_concurrency
        if (
            limit is not None
            and self.config.limit_concurrency_mode == "503"
            and len(self.state.connections) >= limit
        ):
            connection.overloaded = True
        # Counted from now, not from when its task first runs: the accept loop starts a
        # whole burst of connections before any of their tasks runs.
        self.state.connections.add(connection)
        return connection

    async def _handshake(self, stream: trio.SSLStream[Any], client: Any) -> bool:
        """The TLS handshake, in the connection's task, bounded by --timeout-tls-handshake
        and cut short when shutdown begins (it is no request in flight yet)."""
        if self.state.shutting_down:
            return False
        with trio.CancelScope() as scope:
            self._handshakes.add(scope)
            try:
                return await handshake(
                    stream, self.config.timeout_tls_handshake, format_address(client)
                )
            finally:
                self._handshakes.discard(scope)
        return False

    async def _watch_signals(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            signalled = False
            async for signum in signals:
                name = signal.Signals(signum).name
                # "Again" means a second signal: a stop we began ourselves (--limit-max-requests,
                # a trigger) is no reason to cut the requests of a service manager's SIGTERM.
                if signalled:
                    log.warning("Received %s again: stopping now", name)
                    self.force_shutdown()
                    return
                signalled = True
                if self._stop.is_set():
                    log.info("Received %s: already shutting down gracefully", name)
                else:
                    log.info("Received %s: shutting down gracefully", name)
                self.request_shutdown()


async def serve(
    app: Any,
    config: Config | None = None,
    shutdown_trigger: trio.Event | None = None,
    *,
    task_status: trio.TaskStatus[list[ServerAddress]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until the surrounding nursery is cancelled or ``shutdown_trigger`` is set.

    Use it with ``await nursery.start(serve, app, config)``, which returns the bound
    addresses (``(host, port)``; ``(path, None)`` for unix sockets) once the app's lifespan
    startup completed and the server accepts connections. Setting ``shutdown_trigger``
    stops gracefully (stop accepting, let in-flight requests finish within
    ``timeout_graceful_shutdown``, run lifespan shutdown); cancelling stops at once.
    """
    # Errors (BindError, StartupFailed) come out as themselves, not in an exception group.
    await Server(app, config).serve(shutdown_trigger=shutdown_trigger, task_status=task_status)
