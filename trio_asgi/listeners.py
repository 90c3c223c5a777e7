"""Listening sockets and the accept loops that hand each new stream to a handler task.

Which addresses to listen on is ``Config.binds()`` (parsed in ``binds.py``); here they become
trio listeners: TCP, unix sockets we create (and remove again), inherited sockets
(``fd://N``, systemd socket activation), each wrapped for TLS when the bind says so.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from ._types import Address, ServerAddress
from .binds import Bind
from .config import Config
from .errors import BindError

if TYPE_CHECKING:
    from .tls import ServerTLS

log = logging.getLogger("trio_asgi.error")

# accept() failing with these means "out of resources right now", not "listener broken":
# existing connections keep being served and we retry once some are released.
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# Backoff while out of descriptors: start small so recovery is quick, cap it so we notice
# freed descriptors within a second.
BACKOFF_START: Final = 0.01
BACKOFF_MAX: Final = 1.0
# After logging "out of file descriptors", the same error within this many seconds is logged
# at debug level only.
ACCEPT_ERROR_QUIET: Final = 60.0
# Connections taken from the backlog per wakeup of the accept loop, at most (see _Backlog).
ACCEPT_BATCH: Final = 128
# listen() refuses a backlog beyond a C int (OverflowError); trio caps TCP binds at this, and
# the kernel caps every backlog at net.core.somaxconn anyway.
MAX_BACKLOG: Final = 0xFFFF
# systemd passes activated sockets from this descriptor on (sd_listen_fds(3)).
SD_LISTEN_FDS_START: Final = 3
SOCKET_FAMILIES: Final = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})
# Connecting to a unix socket file tells a stale one (refused) from a live one; a live
# server with a full backlog may keep us waiting, which this bounds.
STALE_PROBE_TIMEOUT: Final = 1.0


async def open_listeners(
    config: Config, tls: ServerTLS | None = None
) -> list[trio.abc.Listener[Any]]:
    """Listen on every bind the config names (a host name may give several listeners).

    TLS binds get a ``trio.SSLListener``: its ``accept()`` only wraps the stream, and the
    handshake happens later in the connection's own task. Raises ``BindError`` naming the
    bind that failed, after closing the listeners already opened.
    """
    listeners: list[trio.abc.Listener[Any]] = []
    try:
        for bind in config.binds():
            try:
                opened = await _open_bind(bind, config)
            except BindError:
                raise
            except OSError as exc:
                raise BindError(f"cannot serve on {bind}: {exc.strerror or exc}") from exc
            for listener in opened:
                if bind.tls:
                    assert tls is not None, "Config.uses_tls without a ServerTLS"
                    listener = secure(listener, tls.context)
                listeners.append(listener)
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return listeners


def secure(listener: trio.abc.Listener[Any], context: ssl.SSLContext) -> trio.SSLListener[Any]:
    """A TLS listener over ``listener``.

    Not trio's ``https_compatible`` mode: in it, closing never sends a close_notify, and RFC
    9112 9.8 says a server MUST (without one a client cannot tell our close from a truncation
    attack). Its other half, a peer that leaves without a close_notify, needs no mode: the
    connection reads that as the end of the stream either way.
    """
    return trio.SSLListener(listener, context)


async def _open_bind(bind: Bind, config: Config) -> list[trio.abc.Listener[Any]]:
    if bind.kind == "tcp":
        return list(
            await trio.open_tcp_listeners(bind.port, host=bind.host, backlog=config.backlog)
        )
    if bind.kind == "unix":
        return [await _open_unix(bind, config.backlog, config.uds_permissions)]
    if bind.kind == "fd":
        return [_inherited(bind.fd, config.backlog, bind)]
    return _systemd_listeners(bind, config.backlog)


# -- unix sockets -------------------------------------------------------------------------------


class UnixSocketListener(trio.abc.Listener[trio.SocketStream]):
    """A listener on a unix socket file we created; closing it removes the file, unless
    another process replaced it meanwhile (same path, different inode)."""

    def __init__(self, listener: trio.SocketListener, path: str, identity: tuple[int, int]):
        self.listener = listener
        self.socket = listener.socket
        self.path = path
        self._identity = identity

    async def accept(self) -> trio.SocketStream:
        return await self.listener.accept()

    async def aclose(self) -> None:
        try:
            await self.listener.aclose()
        finally:
            _remove_if_ours(self.path, self._identity)


async def _open_unix(bind: Bind, backlog: int, permissions: int | None) -> UnixSocketListener:
    path = bind.path
    await _remove_stale_socket(bind)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    identity: tuple[int, int] | None = None
    try:
        await sock.bind(path)
        info = os.stat(path)
        identity = (info.st_dev, info.st_ino)
        # Permissions before listen(): until then nobody can connect, so there is no moment
        # in which the umask's (maybe wider) permissions are in force.
        if permissions is not None:
            os.chmod(path, permissions)
        sock.listen(min(backlog, MAX_BACKLOG))
    except BaseException:
        sock.close()
        if identity is not None:
            _remove_if_ours(path, identity)
        raise
    return UnixSocketListener(trio.SocketListener(sock), path, identity)


async def _remove_stale_socket(bind: Bind) -> None:
    """Remove a socket file left by a server that died without cleaning up.

    Only a socket nobody accepts on is removed: a regular file is an error (we never
    delete what may be someone's data), and a live socket means another server has it.
    """
    path = bind.path
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise BindError(f"cannot serve on {bind}: the path exists and is not a socket")
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        with trio.move_on_after(STALE_PROBE_TIMEOUT):
            try:
                await probe.connect(path)
            except ConnectionRefusedError:
                log.info("Removing stale unix socket %s", path)
                os.unlink(path)
                return
            except FileNotFoundError:
                return
    raise BindError(f"cannot serve on {bind}: another server is listening on it")


def _remove_if_ours(path: str, identity: tuple[int, int]) -> None:
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == identity:
            os.unlink(path)
    except OSError:
        pass


# -- inherited sockets (fd://N, systemd) -----------------------------------------------------


def systemd_fds() -> list[int]:
    """The descriptors systemd passed by socket activation: 3, 4, ... (``LISTEN_FDS`` of
    them), provided ``LISTEN_PID`` names this process (the variables are inherited by
    children that are not meant to take the sockets)."""
    count = os.environ.get("LISTEN_FDS")
    if not count:
        raise BindError("cannot serve on systemd: LISTEN_FDS is not set (no socket activation)")
    pid = os.environ.get("LISTEN_PID", "")
    if pid != str(os.getpid()):
        raise BindError(
            f"cannot serve on systemd: LISTEN_PID is {pid or 'not set'}, "
            f"not this process ({os.getpid()})"
        )
    try:
        number = int(count)
    except ValueError:
        raise BindError(f"cannot serve on systemd: LISTEN_FDS={count!r} is no number") from None
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + number))


def _systemd_listeners(bind: Bind, backlog: int) -> list[trio.abc.Listener[Any]]:
    """One listener per activated socket. If one fails, those taken before it are closed
    first: the caller only closes the listeners it was given."""
    listeners: list[trio.SocketListener] = []
    try:
        for fd in systemd_fds():
            listeners.append(_inherited(fd, backlog, bind))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return [*listeners]


def _inherited(fd: int, backlog: int, bind: Bind) -> trio.SocketListener:
    """A listener on an inherited socket (its family and type are read from it)."""
    where = bind if bind.kind == "fd" else f"systemd fd {fd}"
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"cannot serve on {where}: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM or sock.family not in SOCKET_FAMILIES:
        sock.detach()
        raise BindError(f"cannot serve on {where}: not a TCP or unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        try:
            # (a supervisor that listens already chose its own backlog)
            sock.listen(min(backlog, MAX_BACKLOG))
        except OSError as exc:  # e.g. a connected socket
            sock.detach()  # still its owner's: the error must not close it
            raise BindError(
                f"cannot serve on {where}: not listening, and listen() failed "
                f"({exc.strerror or exc})"
            ) from None
    # Ours now: do not leak it into subprocesses the app may start.
    sock.set_inheritable(False)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


# -- addresses ----------------------------------------------------------------------------------


def listener_address(listener: trio.abc.Listener[Any]) -> ServerAddress:
    """The bound ``(host, port)``, or ``(path, None)`` for a unix socket; in-memory
    listeners (the test client's) name their own."""
    if isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    sock = getattr(listener, "socket", None)
    if sock is not None:
        return _socket_address(sock.family, sock.getsockname())
    return listener.address  # type: ignore[attr-defined, no-any-return]


def stream_addresses(
    stream: trio.abc.Stream,
) -> tuple[Address | None, ServerAddress] | None:
    """``(client, server)`` addresses of an accepted stream; ``None`` if a TCP peer is
    already gone.

    A unix socket's client has no address (``None``) and its server is ``(path, None)``,
    as the ASGI spec has it.
    """
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        sock = stream.socket
        try:
            server = _socket_address(sock.family, sock.getsockname())
            if sock.family == socket.AF_UNIX:
                return None, server  # (a unix peer has no address to ask for)
            client = sock.getpeername()
        except OSError:
            return None
        return (client[0], client[1]), server
    return stream.client_address, stream.server_address  # type: ignore[attr-defined]


def _socket_address(family: int, name: Any) -> ServerAddress:
    if family == socket.AF_UNIX:
        if isinstance(name, bytes):  # Linux abstract namespace: b"\0name"
            name = name.decode("utf-8", "backslashreplace")
        return ("@" + name[1:] if name.startswith("\0") else name), None
    return name[0], name[1]


def listener_url(listener: trio.abc.Listener[Any]) -> str:
    """How the startup line names a listener: ``http://host:port``, ``https://...``,
    ``unix:/path`` (``unix:/path (TLS)``)."""
    secure = isinstance(listener, trio.SSLListener)
    host, port = listener_address(listener)
    if port is None:
        return f"unix:{host}" + (" (TLS)" if secure else "")
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if secure else 'http'}://{host}:{port}"


class _Backlog:
    """Connections already waiting in a plain socket listener's backlog, taken without
    yielding to the scheduler.

    ``await listener.accept()`` yields once per connection, and a busy server runs every
    connection's task between two yields: 1,000 clients arriving while 50 are served waited
    seconds to be accepted. Taking what is already queued on each wakeup (as asyncio's loop
    does) lets them in at once; their requests then share the scheduler fairly. A duplicate
    of the listening descriptor, so trio's own socket object is left alone; TLS and other
    listeners take the plain path.
    """

    def __init__(self, listener: trio.abc.Listener[Any]) -> None:
        if isinstance(listener, UnixSocketListener):
            listener = listener.listener
        self._raw: socket.socket | None = None
        if isinstance(listener, trio.SocketListener):
            self._raw = socket.socket(fileno=os.dup(listener.socket.fileno()))
            self._raw.setblocking(False)

    def take(self) -> trio.SocketStream | None:
        if self._raw is None:
            return None
        try:
            connection, _ = self._raw.accept()
        except OSError:  # nothing waiting, or out of descriptors: the awaited path handles it
            return None
        return trio.SocketStream(trio.socket.from_stdlib_socket(connection))

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()


async def accept_loop(
    listener: trio.abc.Listener[Any],
    nursery: trio.Nursery,
    handler: Callable[[Any], Awaitable[None]],
    slots: trio.Semaphore | None = None,
) -> None:
    """Accept forever, starting ``handler(stream)`` in ``nursery`` for each connection.

    With ``slots``, a connection slot is taken before accepting and given back when the
    handler ends: at the limit we simply stop accepting, and new clients wait in the
    kernel's listen backlog (where another worker process may take them) instead of being
    accepted only to be refused. A loop first waits for a client to be waiting, and only
    then for a slot: a loop holding a slot while its listener stays quiet would starve the
    other binds.
    """
    backlog = _Backlog(listener)
    try:
        await _accept_forever(listener, backlog, nursery, handler, slots)
    finally:
        backlog.close()


def _start(
    stream: Any,
    nursery: trio.Nursery,
    handler: Callable[[Any], Awaitable[None]],
    slots: trio.Semaphore | None,
) -> None:
    if slots is None:
        nursery.start_soon(handler, stream)
    else:
        nursery.start_soon(_handle_in_slot, handler, stream, slots)


async def _accept_forever(
    listener: trio.abc.Listener[Any],
    backlog: _Backlog,
    nursery: trio.Nursery,
    handler: Callable[[Any], Awaitable[None]],
    slots: trio.Semaphore | None,
) -> None:
    backoff = BACKOFF_START
    exhausted = False
    # When the error was last logged: descriptors freed one by one make accept() work and
    # fail by turns, and that is one episode for whoever reads the log, not dozens.
    logged_at = -math.inf
    level = logging.ERROR
    ready = listening_socket(listener) if slots is not None else None
    while True:
        if slots is not None:
            if ready is not None:
                await trio.lowlevel.wait_readable(ready)
            await slots.acquire()
        try:
            stream = await listener.accept()
        except OSError as exc:
            if slots is not None:
                slots.release()
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            if not exhausted:
                now = trio.current_time()
                level = logging.ERROR if now - logged_at >= ACCEPT_ERROR_QUIET else logging.DEBUG
                if level == logging.ERROR:
                    logged_at = now
                log.log(
                    level,
                    "accept() failed (%s): out of file descriptors or memory; "
                    "existing connections are still served, retrying with backoff",
                    errno.errorcode.get(exc.errno or 0, exc.errno),
                )
                exhausted = True
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        _start(stream, nursery, handler, slots)
        if exhausted:
            log.log(
                logging.INFO if level == logging.ERROR else logging.DEBUG,
                "accept() works again; new connections are accepted",
            )
            exhausted = False
            backoff = BACKOFF_START
            continue  # one at a time while descriptors are just coming back
        for _ in range(ACCEPT_BATCH):
            if slots is not None:
                try:
                    slots.acquire_nowait()
                except trio.WouldBlock:
                    break
            more = backlog.take()
            if more is None:
                if slots is not None:
                    slots.release()
                break
            _start(more, nursery, handler, slots)


def listening_socket(listener: trio.abc.Listener[Any]) -> trio.socket.SocketType | None:
    """The listening socket under ``listener`` (TLS and unix-file wrappers unwrapped);
    ``None`` for listeners without one (in-memory ones in tests)."""
    if isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    if isinstance(listener, UnixSocketListener):
        listener = listener.listener
    return listener.socket if isinstance(listener, trio.SocketListener) else None


async def _handle_in_slot(
    handler: Callable[[Any], Awaitable[None]], stream: Any, slots: trio.Semaphore
) -> None:
    try:
        await handler(stream)
    finally:
        slots.release()
