"""One worker process of ``--workers N`` or ``--reload``: serves its supervisor's sockets.

The supervisor (``supervisor.py``) starts ``python -m trio_asgi.worker --control-fd FD`` as a
fresh interpreter (no fork of a running trio program), passing the listening sockets and one
end of a Unix socketpair, the *control channel*, as inherited descriptors. The worker imports
the app itself, runs ``Server.serve(listeners=...)`` on the inherited sockets and reports over
the control channel. Nothing here is meant to be started by hand.

Control channel, newline-framed ASCII (JSON for the first line):

supervisor → worker
    ``{"target": ..., "config": {...}, "fds": [...]}``   first line: what to serve, and how
    ``stop CODE``    stop gracefully; WebSocket clients are closed with CODE (1001 when the
                     server shuts down, 1012 "service restart" when the worker is replaced)
    ``stop-now``     stop at once (a second SIGINT/SIGTERM reached the supervisor)
    end of file      the supervisor is gone: stop gracefully, so no worker is orphaned
worker → supervisor
    ``ready``        lifespan startup is done and connections are accepted
    ``retiring``     it reached ``--limit-max-requests`` and drains (as a replaced worker
                     does, 1012): start its replacement

Signals: SIGTERM stops a worker gracefully (a second one at once), as it stops a single
server. SIGINT and SIGHUP belong to the supervisor: a terminal sends them to the whole
process group, and the supervisor relays what they mean over the control channel, so a
worker ignores them (otherwise one Ctrl-C would reach workers twice: a forced stop).

Exit codes are those of the command line: 0 after a graceful stop, 1 when forced, 2 when the
app cannot be loaded, 3 when its lifespan startup failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import socket
import sys
from typing import Any, Final, NoReturn

import trio

from .app_loader import load_app
from .cli import EXIT_FAILED, EXIT_OK, EXIT_STARTUP_FAILED, EXIT_USAGE, fail
from .config import Config
from .connection import SERVICE_RESTART
from .errors import AppLoadError, ConfigError, StartupFailed
from .listeners import secure
from .logging import configure_logging, error_logger
from .server import Server
from .tls import ServerTLS

# Control messages (see the module docstring).
STOP: Final = "stop"
STOP_NOW: Final = "stop-now"
READY: Final = "ready"
RETIRING: Final = "retiring"
# Every line on the control channel is short; a longer one means the peer is not ours.
MAX_LINE: Final = 1024 * 1024
# WebSocket close code when the supervisor disappears: the server is going away.
GOING_AWAY: Final = 1001
# A report to the supervisor is a few bytes into a local socket; this bound is never reached
# unless the supervisor is stuck, and then the worker must not wait for it.
REPORT_TIMEOUT: Final = 5.0


def encode_spec(
    target: str, config: Config, fds: list[int], tls: list[bool] | None = None
) -> bytes:
    """The first control line. Every Config field is JSON data (tuples become lists, which
    ``Config`` turns back into tuples), so the worker gets exactly the validated settings;
    ``tls`` says which of the inherited sockets speak TLS."""
    spec = {
        "target": target,
        "config": dataclasses.asdict(config),
        "fds": fds,
        "tls": tls or [False] * len(fds),
    }
    return json.dumps(spec).encode() + b"\n"


def decode_spec(line: bytes) -> tuple[str, Config, list[int], list[bool]]:
    spec = json.loads(line)
    fds = [int(fd) for fd in spec["fds"]]
    return spec["target"], Config(**spec["config"]), fds, [bool(t) for t in spec["tls"]]


def worker_listeners(
    sockets: list[socket.socket], tls_flags: list[bool], tls: ServerTLS | None
) -> list[trio.abc.Listener[Any]]:
    """Listeners over the inherited sockets, TLS ones wrapped with this worker's own context
    (each worker loads the certificate itself; a context cannot be passed between processes)."""
    listeners: list[trio.abc.Listener[Any]] = []
    for sock, uses_tls in zip(sockets, tls_flags, strict=True):
        listener: trio.abc.Listener[Any] = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if uses_tls:
            assert tls is not None, "a TLS socket without a certificate configured"
            listener = secure(listener, tls.context)
        listeners.append(listener)
    return listeners


class LineReader:
    """Newline-framed reading of the control channel: bytes beyond one line are kept for
    the next (the spec may arrive together with a ``stop``)."""

    def __init__(self) -> None:
        self.buffer = b""

    def take_line(self) -> bytes | None:
        line, newline, rest = self.buffer.partition(b"\n")
        if not newline:
            if len(self.buffer) > MAX_LINE:
                raise ValueError("control line too long")
            return None
        self.buffer = rest
        return line

    def read_blocking(self, sock: socket.socket) -> bytes | None:
        """The next line, before trio runs; ``None`` at end of file."""
        while (line := self.take_line()) is None:
            data = sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        return line

    async def read(self, stream: trio.SocketStream) -> bytes | None:
        while (line := self.take_line()) is None:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self.buffer += data
        return line


def _ignore(signum: int, frame: Any) -> None:
    """A Python-level no-op handler rather than SIG_IGN: it is not inherited by programs the
    app starts (exec resets handlers, not ignored dispositions)."""


def main(argv: list[str] | None = None) -> NoReturn:
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _ignore)
    parser = argparse.ArgumentParser(prog="python -m trio_asgi.worker")
    parser.add_argument("--control-fd", type=int, required=True)
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    control.set_inheritable(False)  # not for the app's own child processes
    reader = LineReader()
    line = reader.read_blocking(control)
    if line is None:  # the supervisor went away before telling us anything
        raise SystemExit(EXIT_FAILED)
    try:
        # Each step can meet a changed world (a log config deleted before a reload, a
        # certificate replaced): one line and the usage exit code, as on the command line.
        target, config, fds, tls_flags = decode_spec(line)
        sockets = [socket.socket(fileno=fd) for fd in fds]
        for sock in sockets:
            sock.set_inheritable(False)
        configure_logging(
            config.log_level, access_log=config.access_log, config_file=config.log_config
        )
        if config.reload:
            # Bytecode caches are validated by source mtime (in seconds) and size: an edit
            # within the same second that keeps the size would load the stale cache. And
            # writing them into the watched tree would only wake the watcher.
            sys.dont_write_bytecode = True
        app = load_app(target, factory=config.factory, app_dir=config.app_dir)
        server = Server(app, config)
    except (AppLoadError, ConfigError) as exc:
        fail(str(exc), EXIT_USAGE)
    server.announce = False  # the supervisor announces the shared sockets once
    try:
        trio.run(_run, server, control, reader, sockets, tls_flags)
    except StartupFailed as exc:
        fail(f"application startup failed: {exc}", EXIT_STARTUP_FAILED)
    raise SystemExit(EXIT_FAILED if server.forced else EXIT_OK)


async def _run(
    server: Server,
    control_sock: socket.socket,
    reader: LineReader,
    sockets: list[socket.socket],
    tls_flags: list[bool],
) -> None:
    listeners = worker_listeners(sockets, tls_flags, server.tls)
    control = trio.SocketStream(trio.socket.from_stdlib_socket(control_sock))
    ready = trio.Event()
    retiring = trio.Event()
    reported = trio.Event()

    def on_request_limit() -> None:
        retiring.set()
        server.request_shutdown(SERVICE_RESTART)  # recycled: a replacement takes over

    server.state.on_request_limit = on_request_limit
    startup_failure: StartupFailed | None = None
    async with trio.open_nursery() as helpers:
        helpers.start_soon(_obey, control, reader, server)
        await helpers.start(_watch_sigterm, server)
        helpers.start_soon(_report, control, ready, retiring, reported)
        try:
            await server.serve(listeners=listeners, task_status=_Started(ready))
        except StartupFailed as exc:
            startup_failure = exc  # raised after the nursery, so it is not in a group
        if retiring.is_set():
            # The supervisor hears of the limit before we exit, so the exit is not taken
            # for a crash (it normally heard long ago: the drain takes longer).
            with trio.move_on_after(REPORT_TIMEOUT):
                await reported.wait()
        helpers.cancel_scope.cancel()  # the control reader and the signal watcher
    if startup_failure is not None:
        raise startup_failure


class _Started:
    """``Server.serve``'s task status, when the worker runs it itself: sets ``ready``."""

    def __init__(self, ready: trio.Event) -> None:
        self._ready = ready

    def started(self, value: Any = None) -> None:
        self._ready.set()


async def _report(
    control: trio.SocketStream, ready: trio.Event, retiring: trio.Event, reported: trio.Event
) -> None:
    await ready.wait()
    await _tell(control, READY)
    await retiring.wait()
    await _tell(control, RETIRING)  # the supervisor starts the replacement while we drain
    reported.set()


async def _tell(control: trio.SocketStream, message: str) -> None:
    """Report to the supervisor; if it is gone, ``_obey`` sees the end of file and stops."""
    try:
        await control.send_all(message.encode() + b"\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _obey(control: trio.SocketStream, reader: LineReader, server: Server) -> None:
    while (line := await reader.read(control)) is not None:
        command, _, argument = line.decode("ascii", "replace").partition(" ")
        if command == STOP and argument.isdigit():
            server.request_shutdown(int(argument))
        elif command == STOP_NOW:
            server.force_shutdown()
            return
        else:
            error_logger.warning("Worker: unknown control message %r ignored", line)
    error_logger.info("Supervisor gone: shutting down gracefully")
    server.request_shutdown(GOING_AWAY)


async def _watch_sigterm(
    server: Server, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """The single server's behaviour, for SIGTERM only: graceful first, then at once."""
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        task_status.started()
        received = 0
        async for _ in signals:
            received += 1
            if received == 1:
                error_logger.info("Worker received SIGTERM: shutting down gracefully")
                server.request_shutdown()
            elif received == 2:
                error_logger.warning("Worker received SIGTERM again: stopping now")
                server.force_shutdown()


if __name__ == "__main__":
    main()
