"""Listening sockets and the accept loops that hand each new stream to a handler task."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from .config import Config

log = logging.getLogger("trio_asgi.error")

# accept() failing with these means "out of resources right now", not "listener broken":
# existing connections keep being served and we retry once some are released.
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# Backoff while out of descriptors: start small so recovery is quick, cap it so we notice
# freed descriptors within a second.
BACKOFF_START: Final = 0.01
BACKOFF_MAX: Final = 1.0


async def open_listeners(config: Config) -> list[trio.SocketListener]:
    """Bind every address the config names (a host name may resolve to several)."""
    return await trio.open_tcp_listeners(config.port, host=config.host, backlog=config.backlog)


def listener_address(listener: trio.abc.Listener[Any]) -> tuple[str, int]:
    """The bound ``(host, port)``; in-memory listeners (the test client's) name their own."""
    if isinstance(listener, trio.SocketListener):
        host, port, *_ = listener.socket.getsockname()
        return host, port
    return listener.address  # type: ignore[attr-defined, no-any-return]


def stream_addresses(stream: trio.abc.Stream) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """``(client, server)`` addresses of an accepted stream; ``None`` if the peer is gone."""
    if isinstance(stream, trio.SocketStream):
        try:
            client = stream.socket.getpeername()
            server = stream.socket.getsockname()
        except OSError:
            return None
        return (client[0], client[1]), (server[0], server[1])
    return stream.client_address, stream.server_address  # type: ignore[attr-defined]


def listener_url(listener: trio.abc.Listener[Any], scheme: str = "http") -> str:
    host, port = listener_address(listener)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


async def accept_loop(
    listener: trio.abc.Listener[Any],
    nursery: trio.Nursery,
    handler: Callable[[Any], Awaitable[None]],
    slots: trio.Semaphore | None = None,
) -> None:
    """Accept forever, starting ``handler(stream)`` in ``nursery`` for each connection.

    With ``slots``, a connection slot is taken *before* accepting and given back when the
    handler ends: at the limit we simply stop accepting, and new clients wait in the
    kernel's listen backlog instead of being accepted only to be refused.
    """
    backoff = BACKOFF_START
    exhausted = False
    while True:
        if slots is not None:
            await slots.acquire()
        try:
            stream = await listener.accept()
        except OSError as exc:
            if slots is not None:
                slots.release()
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            if not exhausted:
                log.error(
                    "accept() failed (%s): out of file descriptors or memory; "
                    "existing connections are still served, retrying with backoff",
                    errno.errorcode.get(exc.errno or 0, exc.errno),
                )
                exhausted = True
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        if exhausted:
            log.info("accept() works again; new connections are accepted")
            exhausted = False
            backoff = BACKOFF_START
        if slots is None:
            nursery.start_soon(handler, stream)
        else:
            nursery.start_soon(_handle_in_slot, handler, stream, slots)


async def _handle_in_slot(
    handler: Callable[[Any], Awaitable[None]], stream: Any, slots: trio.Semaphore
) -> None:
    try:
        await handler(stream)
    finally:
        slots.release()
