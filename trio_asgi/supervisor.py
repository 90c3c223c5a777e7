"""``--workers N`` and ``--reload``: a supervisor binds the sockets once and keeps worker
processes serving them.

The supervisor is a small trio program that never imports the app and never accepts a
connection. It binds with ``open_listeners`` (so every kind of address works as for a single
process, port 0 included) and starts each worker as a fresh interpreter
(``python -m trio_asgi.worker``, see ``worker.py``) that inherits the listening sockets and
one end of a *control channel*. The kernel gives each new connection to whichever worker
accepts it first. Nothing forks a running trio program.

- **Startup**: all interpreters start at once, but only the first loads the app; the others
  get their spec once it is ready. So a broken app fails once, with the worker's own error
  line and exit code (2: cannot import, 3: lifespan startup failed), and a good one starts
  in about the time of one worker. "listening on" is printed once, when all are ready.
- **A worker that exits unasked** is replaced. After ``--limit-max-requests`` it says so
  first, and its replacement starts while it drains. Any other exit (a crash, or exit code 0
  after a SIGTERM of its own) is logged and restarted after an exponential backoff, so a
  crash-looping app does not spin.
- **Rolling restart** (SIGHUP, or a file change with ``--reload``): for each worker in turn,
  start its replacement, wait until it is ready, then tell the old one to stop with close
  code 1012 (service restart). Old workers drain while the roll goes on: the roll takes about
  one worker start-up per worker. A replacement that fails to start stops the roll; the
  workers not replaced yet keep serving.
- **Shutdown** (SIGINT, SIGTERM): every worker is told to stop gracefully (1001), and gets
  ``--timeout-graceful-shutdown`` and ``--timeout-lifespan-shutdown`` plus ``STOP_MARGIN``
  before it is killed. A second signal
  tells them to stop at once. Exit code 0 when every worker stopped cleanly, else 1.

Signals, to the supervisor: SIGINT/SIGTERM stop gracefully, again: at once; SIGHUP rolls.
Workers ignore SIGINT and SIGHUP (a terminal sends them to the whole process group) and stop
gracefully on SIGTERM, like a single server.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from .cli import EXIT_FAILED, EXIT_OK, EXIT_STARTUP_FAILED, EXIT_USAGE, fail
from .config import Config
from .connection import SERVICE_RESTART
from .errors import BindError, ConfigError
from .listeners import listener_url, listening_socket, open_listeners
from .tls import load_server_tls
from .worker import (
    GOING_AWAY,
    READY,
    RETIRING,
    STOP,
    STOP_NOW,
    LineReader,
    encode_spec,
)

if TYPE_CHECKING:
    from .reload import Reloader

log = logging.getLogger("trio_asgi.error")

# Beyond --timeout-graceful-shutdown, a stopping worker has this long for lifespan shutdown
# and process exit before it is killed.
STOP_MARGIN: Final = 5.0
# After a second signal, workers cancel everything; this long later they are killed.
FORCE_MARGIN: Final = 3.0
# Crash backoff: the first restart after this long, doubling for each crash in a row up to
# the cap (one start every 10 s costs nothing, and a fix on disk is picked up soon).
BACKOFF_START: Final = 0.1
BACKOFF_MAX: Final = 10.0
# A worker that served this long before crashing resets its slot's backoff: it was a crash,
# not a crash loop.
STABLE_UPTIME: Final = 10.0
# Once a worker exited, its last reports are read for at most this long.
REPORTS_AFTER_EXIT: Final = 1.0


def describe_exit(returncode: int | None) -> str:
    """ "exit code 1" or "killed by SIGKILL", for the log."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass(eq=False)
class Worker:
    """One worker process, as the supervisor sees it."""

    slot: int
    process: trio.Process
    control: trio.SocketStream
    ready_at: float | None = None
    settled: trio.Event = field(default_factory=trio.Event)  # ready, or exited before
    exited: trio.Event = field(default_factory=trio.Event)
    has_spec: bool = True  # else it waits for it (see _start_all) and has loaded nothing
    asked_to_stop: bool = False  # by us: replaced, or the server stops
    retiring: bool = False  # by itself: --limit-max-requests reached
    sending: trio.Lock = field(default_factory=trio.Lock)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def tell(self, message: str) -> None:
        """Send one control line; a worker that is gone is not an error (it is reaped)."""
        await self.send(message.encode() + b"\n")

    async def send(self, data: bytes) -> None:
        async with self.sending:
            try:
                await self.control.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


@dataclass(eq=False)
class Slot:
    """A place for one worker: ``--workers N`` means N slots, each kept filled."""

    index: int
    current: Worker | None = None
    failures: int = 0  # crashes in a row, for the backoff
    # Held while a new worker for this slot starts, so a crash and a roll never both fill it.
    lock: trio.Lock = field(default_factory=trio.Lock)

    def backoff(self) -> float:
        return float(min(BACKOFF_START * 2 ** (self.failures - 1), BACKOFF_MAX))


class Supervisor:
    """``exit_code = trio.run(Supervisor(target, config).run)``."""

    def __init__(self, target: str, config: Config, *, reloader: Reloader | None = None) -> None:
        self.target = target
        self.config = config
        self.reloader = reloader
        self.slots = [Slot(index) for index in range(config.workers)]
        self.workers: set[Worker] = set()  # every live process: starting, serving, draining
        self.stopping = False
        self.forced = False  # a second signal, or a worker had to be killed
        self.unclean = False  # a worker exited with an error while stopping
        self.startup_failure: int | None = None  # exit code when the first workers failed
        self._last_boot_failure: int | None = None  # the exit code of the last failed start
        self.urls: list[str] = []
        self._fds: list[int] = []
        self._tls: list[bool] = []  # which of them speak TLS
        self._announced = False
        self._roll_scope: trio.CancelScope | None = None  # the roll under way, if any
        self._roll_requested = trio.Event()
        self._changed = trio.Event()  # a worker exited
        self._nursery: trio.Nursery  # worker watchers and the signal watcher
        self._tasks: trio.Nursery  # startup, rolls, replacements, file watching
        self._drain_scope: trio.CancelScope | None = None

    # -- the whole run ----------------------------------------------------------------------

    async def run(self) -> int:
        # Loading the certificate here makes a bad one a startup error before any worker runs;
        # each worker loads it again for its own context.
        listeners = await open_listeners(self.config, load_server_tls(self.config))
        try:
            self._fds = [_listening_socket(listener).fileno() for listener in listeners]
            self._tls = [isinstance(listener, trio.SSLListener) for listener in listeners]
            self.urls = [listener_url(listener) for listener in listeners]
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self._watch_signals)
                async with trio.open_nursery() as tasks:
                    self._tasks = tasks
                    if self.reloader is not None:
                        await tasks.start(self.reloader.run, self._files_changed)
                    tasks.start_soon(self._start_then_roll)
                await self._drain()
                nursery.cancel_scope.cancel()  # the signal watcher
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
        if self.startup_failure is not None:
            return self.startup_failure
        return EXIT_FAILED if self.forced or self.unclean else EXIT_OK

    async def _start_then_roll(self) -> None:
        started = False
        with trio.CancelScope() as start:
            if self.reloader is not None:
                # A newer save gives up a first start still under way, as it does a roll
                # (request_roll): the first code may hang in its import as well.
                self._roll_scope = start
            started = await self._start_all()
        self._roll_scope = None
        if start.cancelled_caught:
            pass  # the roll requested meanwhile starts the newer code
        elif started:
            self._announce()
        else:
            self._startup_failed()
            if self.stopping:
                return
        while True:
            await self._roll_requested.wait()
            self._roll_requested = trio.Event()
            await self._roll()

    async def _start_all(self) -> bool:
        """Start every worker; False if any fails.

        All interpreters start at once (that is the slow part), but only the first gets its
        spec and loads the app; the others wait for theirs until the first is ready. So a
        broken app fails once, with one error line, and a good one starts in about the time
        of one worker.
        """
        try:
            first = await self._spawn(self.slots[0])
            waiting = [await self._spawn(slot, load=False) for slot in self.slots[1:]]
        except OSError as exc:
            log.error("Cannot start a worker process: %s", exc)
            self._last_boot_failure = EXIT_FAILED
            return False
        ready = None
        try:
            ready = await self._settle(first)
        finally:
            if ready is None:  # failed, or given up for newer code (--reload): the others
                for worker in waiting:  # loaded nothing, so there is nothing to drain
                    _kill(worker)
        if ready is None:
            return False
        self._install(self.slots[0], ready)
        settled: list[Worker | None] = []

        async def load(worker: Worker) -> None:
            await worker.send(encode_spec(self.target, self.config, self._fds, self._tls))
            worker.has_spec = True
            settled.append(ready := await self._settle(worker))
            if ready is not None:
                self._install(self.slots[worker.slot], ready)

        async with trio.open_nursery() as nursery:
            for worker in waiting:
                nursery.start_soon(load, worker)
        return None not in settled

    def _startup_failed(self) -> None:
        if self.reloader is not None:
            log.error("The app failed to start; waiting for file changes")
            return
        code = self._last_boot_failure
        self.startup_failure = code if code in (EXIT_USAGE, EXIT_STARTUP_FAILED) else EXIT_FAILED
        self._begin_stop()

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        if self.reloader is not None:
            how = f"reloading on changes in {', '.join(map(str, self.reloader.dirs))}"
        else:
            how = f"{len(self.slots)} workers"
        log.info(
            "trio_asgi listening on %s (%s, supervisor pid %d; press CTRL+C to quit)",
            ", ".join(self.urls),
            how,
            os.getpid(),
        )

    # -- starting workers -------------------------------------------------------------------

    async def _spawn(self, slot: Slot, *, load: bool = True) -> Worker:
        """Start a worker process; with ``load``, its spec is already waiting for it."""
        ours, theirs = socket.socketpair()
        try:
            if load:  # into the socket buffer before the process exists: nothing comes first
                ours.sendall(encode_spec(self.target, self.config, self._fds, self._tls))
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "trio_asgi.worker", "--control-fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(), *self._fds),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = Worker(
            slot=slot.index,
            process=process,
            control=trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
            has_spec=load,
        )
        self.workers.add(worker)
        self._nursery.start_soon(self._watch_worker, worker)
        return worker

    async def _boot(self, slot: Slot) -> Worker | None:
        """A new worker for ``slot``, once it is ready; ``None`` if it could not start."""
        try:
            worker = await self._spawn(slot)
        except OSError as exc:
            log.error("Cannot start a worker process: %s", exc)
            self._last_boot_failure = EXIT_FAILED
            return None
        return await self._settle(worker)

    async def _settle(self, worker: Worker) -> Worker | None:
        """``worker`` once it is ready; ``None`` if it exited before."""
        try:
            await worker.settled.wait()
        except trio.Cancelled:
            if not self.stopping:  # abandoned for newer code (--reload)
                worker.asked_to_stop = True
                _abandon(worker)
                self._nursery.start_soon(self._kill_if_stuck, worker)
            raise
        if worker.ready_at is None:
            code = worker.process.returncode
            self._last_boot_failure = code
            if code not in (EXIT_USAGE, EXIT_STARTUP_FAILED):  # those printed their reason
                log.error("Worker %d failed to start (%s)", worker.pid, describe_exit(code))
            return None
        log.info("Worker %d ready", worker.pid)
        return worker

    def _install(self, slot: Slot, worker: Worker) -> None:
        slot.current = worker
        if worker.exited.is_set():  # it became ready and died before we got here
            self._on_exit(worker)

    async def _watch_worker(self, worker: Worker) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_reports, worker)
            await worker.process.wait()
            # What it wrote just before exiting (``retiring``, then a quick exit) may still
            # be unread: read on to the end of the channel, which the exit closed (a child
            # process that inherited it could keep it open, hence the bound).
            nursery.cancel_scope.deadline = trio.current_time() + REPORTS_AFTER_EXIT
        await trio.aclose_forcefully(worker.control)
        worker.exited.set()
        worker.settled.set()
        self._on_exit(worker)

    async def _read_reports(self, worker: Worker) -> None:
        reader = LineReader()
        while (line := await reader.read(worker.control)) is not None:
            message = line.decode("ascii", "replace")
            if message == READY:
                worker.ready_at = trio.current_time()
                worker.settled.set()
            elif message == RETIRING:
                self._on_retiring(worker)
            else:
                log.warning("Worker %d sent an unknown report %r", worker.pid, message)

    # -- workers that leave -----------------------------------------------------------------

    def _on_exit(self, worker: Worker) -> None:
        self.workers.discard(worker)
        self._changed.set()
        self._changed = trio.Event()
        code = worker.process.returncode
        if not worker.has_spec:
            return  # never got to load the app (startup stopped early): nothing to report
        if self.stopping:
            if code == 0:
                log.info("Worker %d stopped", worker.pid)
            else:
                log.warning("Worker %d stopped (%s)", worker.pid, describe_exit(code))
                if worker.ready_at is not None:  # (one still starting was told by SIGTERM)
                    self.unclean = True
            return
        slot = self.slots[worker.slot]
        if worker.asked_to_stop or worker.retiring:  # replaced, or recycled
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "Worker %d stopped (%s)", worker.pid, describe_exit(code))
            if slot.current is worker:  # its replacement is not ready yet: make sure it comes
                self._tasks.start_soon(self._replace, slot, worker, 0.0)
            return
        if slot.current is not worker:
            return  # a new worker that failed to start: _boot reports it
        # Not asked to leave: a crash, or an exit 0 we did not expect (a SIGTERM sent to the
        # worker itself, an app calling sys.exit). Either can loop, so both back off.
        uptime = trio.current_time() - (worker.ready_at or trio.current_time())
        slot.failures = 1 if uptime >= STABLE_UPTIME else slot.failures + 1
        delay = slot.backoff()
        log.log(
            logging.INFO if code == 0 else logging.ERROR,
            "Worker %d %s (%s); restarting it in %.1f s",
            worker.pid,
            "exited" if code == 0 else "crashed",
            describe_exit(code),
            delay,
        )
        self._tasks.start_soon(self._replace, slot, worker, delay)

    def _on_retiring(self, worker: Worker) -> None:
        worker.retiring = True
        slot = self.slots[worker.slot]
        if self.stopping or slot.current is not worker:
            return
        log.info(
            "Worker %d reached --limit-max-requests and is draining; starting its replacement",
            worker.pid,
        )
        self._nursery.start_soon(self._kill_if_stuck, worker)
        self._tasks.start_soon(self._replace, slot, worker, 0.0)

    async def _replace(self, slot: Slot, old: Worker, delay: float) -> None:
        """Fill ``slot`` again unless someone else did; retry with backoff."""
        while True:
            await trio.sleep(delay)
            async with slot.lock:
                if slot.current is not old:
                    return  # a roll (or an earlier replacement) got there first
                new = await self._boot(slot)
                if new is not None:
                    self._install(slot, new)
                    return
            slot.failures += 1
            delay = slot.backoff()
            log.error("Could not replace worker %d; retrying in %.1f s", old.pid, delay)

    async def _kill_if_stuck(self, worker: Worker) -> None:
        """A draining worker gets what a stopping server gets, then it is killed."""
        config = self.config
        allowed = config.timeout_graceful_shutdown + config.timeout_lifespan_shutdown
        with trio.move_on_after(allowed + STOP_MARGIN):
            await worker.exited.wait()
            return
        log.warning("Worker %d did not stop in time; killing it", worker.pid)
        _kill(worker)

    # -- rolling restarts -------------------------------------------------------------------

    def request_roll(self, reason: str) -> None:
        if self.stopping:
            return
        if self._roll_scope is not None and self.reloader is not None:
            # The newest code wins: a worker still starting with older code (or hanging in
            # it, a breakpoint or an endless loop mid-edit) is given up.
            log.info("%s: restarting%s", reason, " again" if self._announced else "")
            self._roll_scope.cancel()
        elif self._roll_scope is not None:
            log.info("%s: another rolling restart follows the current one", reason)
        elif self.reloader is not None:
            log.info("%s: restarting", reason)
        else:
            log.info("%s: restarting the workers one by one", reason)
        self._roll_requested.set()

    def _files_changed(self, paths: list[str]) -> None:
        shown = ", ".join(_relative(path) for path in paths[:3])
        if len(paths) > 3:
            shown += f" and {len(paths) - 3} more"
        self.request_roll(f"Reloading: {shown} changed")

    async def _roll(self) -> None:
        began = trio.current_time()
        try:
            with trio.CancelScope() as self._roll_scope:
                await self._roll_slots(began)
        finally:
            self._roll_scope = None

    async def _roll_slots(self, began: float) -> None:
        for slot in self.slots:
            async with slot.lock:
                old = slot.current
                new = await self._boot(slot)
                if new is None:
                    left = sum(1 for s in self.slots if _alive(s.current))
                    log.error(
                        "Rolling restart stopped: a new worker failed to start; "
                        "%d worker(s) keep running the previous code%s",
                        left,
                        "; waiting for file changes" if self.reloader is not None else "",
                    )
                    return
                self._install(slot, new)
                if old is not None and not old.exited.is_set():
                    self._retire(old, SERVICE_RESTART)
        log.info(
            "Rolling restart done: %d worker(s) replaced in %.2f s",
            len(self.slots),
            trio.current_time() - began,
        )
        self._announce()

    def _retire(self, worker: Worker, close_code: int) -> None:
        """Ask ``worker`` to drain and stop (from the outer nursery: cancelling a roll must
        not leave a replaced worker running)."""
        worker.asked_to_stop = True
        self._nursery.start_soon(worker.tell, f"{STOP} {close_code}")
        self._nursery.start_soon(self._kill_if_stuck, worker)

    # -- stopping ---------------------------------------------------------------------------

    async def _watch_signals(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    if not self.stopping:
                        self.request_roll(f"Received {name}")
                elif not self.stopping:
                    log.info(
                        "Received %s: stopping %d worker(s) gracefully", name, len(self.workers)
                    )
                    self._begin_stop()
                elif not self.forced:
                    log.warning("Received %s again: stopping now", name)
                    self._force()

    def _begin_stop(self) -> None:
        self.stopping = True
        self._tasks.cancel_scope.cancel()  # no more starts, rolls or replacements

    def _force(self) -> None:
        self.forced = True
        for worker in list(self.workers):
            if worker.has_spec:  # (the others are killed by _drain)
                self._nursery.start_soon(worker.tell, STOP_NOW)
        if self._drain_scope is not None:
            self._drain_scope.deadline = min(
                self._drain_scope.deadline, trio.current_time() + FORCE_MARGIN
            )

    async def _drain(self) -> None:
        """Stop every worker: gracefully, within the deadline, else by SIGKILL."""
        self.stopping = True
        grace = self.config.timeout_graceful_shutdown + STOP_MARGIN
        with trio.CancelScope(deadline=trio.current_time() + grace) as self._drain_scope:
            if self.forced:
                self._force()
            for worker in list(self.workers):
                worker.asked_to_stop = True
                if not worker.has_spec:  # waiting for its spec: it loaded nothing
                    _kill(worker)
                    continue
                await worker.tell(f"{STOP} {GOING_AWAY}")
                if worker.ready_at is None:
                    _abandon(worker)  # it may be stuck loading the app, not reading
            await self._all_exited()
        self._drain_scope = None
        if self.workers:
            log.warning("%d worker(s) did not stop in time; killing them", len(self.workers))
            self.forced = True
            for worker in list(self.workers):
                _kill(worker)
            await self._all_exited()

    async def _all_exited(self) -> None:
        while self.workers:
            await self._changed.wait()


def _alive(worker: Worker | None) -> bool:
    return worker is not None and not worker.exited.is_set()


def _abandon(worker: Worker) -> None:
    """Stop a worker that is not ready yet. SIGTERM: while it imports the app (perhaps stuck
    in it) that ends it at once; once trio runs, it is a graceful stop."""
    try:
        worker.process.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass


def _kill(worker: Worker) -> None:
    try:
        worker.process.kill()
    except ProcessLookupError:  # already gone
        pass


def _listening_socket(listener: trio.abc.Listener[Any]) -> trio.socket.SocketType:
    """The socket to hand to workers (under a TLS listener, the one it wraps: each worker
    wraps it again with its own TLS context)."""
    sock = listening_socket(listener)  # (a unix socket's file is removed by the supervisor)
    if sock is None:
        raise ConfigError(f"workers cannot share a {type(listener).__name__}")
    return sock


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def run_supervisor(target: str, config: Config) -> int:
    """The command line's entry point for ``--workers`` > 1 and ``--reload``."""
    reloader = None
    if config.reload:
        from .reload import Reloader  # watchfiles only when asked for

        try:
            reloader = Reloader.from_config(config)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
    supervisor = Supervisor(target, config, reloader=reloader)
    try:
        return trio.run(supervisor.run)
    except BindError as exc:  # already names the address
        fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        fail(f"cannot serve on {config.host}:{config.port}: {exc.strerror or exc}", EXIT_FAILED)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        return EXIT_FAILED
