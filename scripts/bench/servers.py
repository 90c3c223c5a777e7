"""The servers under test: how each is started, where its Python comes from, and what
``/proc`` says about its CPU time and memory while it runs.

Every server is one process bound to loopback, pinned to :data:`SERVER_CPU` with ``taskset``
(the load generators get :data:`LOADGEN_CPU`), running ``scripts.bench.app:app`` with access
logs off. trio_asgi runs from the interpreter that runs the harness (the project's venv);
the peers run from their own venv, which gets the *same* trio, h11 and wsproto versions so
that "same parsers" really means the same code.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Final

REPO: Final = Path(__file__).resolve().parents[2]
BENCH_DIR: Final = REPO / ".bench"
PEERS_VENV: Final = BENCH_DIR / "peers-venv"
APP: Final = "scripts.bench.app:app"
HOST: Final = "127.0.0.1"
# Two cores: the server gets one to itself, the load generators the other.
SERVER_CPU: Final = "0"
LOADGEN_CPU: Final = "1"
# Same listen backlog everywhere (Hypercorn's default of 100 would drop SYNs in the
# connection storm of ws-idle and measure retransmission timers instead of the server).
BACKLOG: Final = "2048"
# Packages whose versions go into the report.
SHARED_PACKAGES: Final = ("trio", "h11", "wsproto")
PEER_PACKAGES: Final = (
    "hypercorn",
    "uvicorn",
    "httptools",
    "uvloop",
    "websockets",
    *SHARED_PACKAGES,
    "matplotlib",
    "django",
    "quart",
)
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_KIB: Final = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class ServerSpec:
    """One contender: a name for the tables and the command line that starts it."""

    name: str
    label: str
    peer: bool  # runs from the peers venv

    def command(self, python: str, port: int, app: str = APP) -> list[str]:
        if self.name == "trio_asgi":
            return [
                python,
                "-m",
                "trio_asgi",
                app,
                "--host",
                HOST,
                "--port",
                str(port),
                "--backlog",
                BACKLOG,
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        if self.name == "hypercorn-trio":
            # -w 0: serve in this process; with the default -w 1 Hypercorn forks a worker and
            # we would be measuring (and pinning) the idle parent.
            return [
                python,
                "-m",
                "hypercorn",
                "-k",
                "trio",
                "-w",
                "0",
                "--bind",
                f"{HOST}:{port}",
                "--backlog",
                BACKLOG,
                "--log-level",
                "warning",
                app,
            ]
        http, ws, loop = {
            "uvicorn-h11": ("h11", "wsproto", "asyncio"),
            "uvicorn-fast": ("httptools", "websockets", "uvloop"),
        }[self.name]
        return [
            python,
            "-m",
            "uvicorn",
            app,
            "--host",
            HOST,
            "--port",
            str(port),
            "--backlog",
            BACKLOG,
            "--http",
            http,
            "--ws",
            ws,
            "--loop",
            loop,
            "--lifespan",
            "on" if app == APP else "auto",  # Django has no lifespan
            "--no-access-log",
            "--log-level",
            "warning",
        ]


SERVERS: Final = {
    spec.name: spec
    for spec in (
        ServerSpec("trio_asgi", "trio_asgi (trio, h11/wsproto)", peer=False),
        ServerSpec("hypercorn-trio", "Hypercorn -k trio (h11/wsproto)", peer=True),
        ServerSpec("uvicorn-h11", "Uvicorn h11/wsproto (asyncio)", peer=True),
        ServerSpec("uvicorn-fast", "Uvicorn httptools/websockets (uvloop)", peer=True),
    )
}


class BenchError(Exception):
    """A run could not produce a measurement; the message says why."""


# -- environments ------------------------------------------------------------------------


def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def shared_versions() -> dict[str, str]:
    """trio/h11/wsproto as installed next to trio_asgi (the harness's interpreter)."""
    return {name: metadata.version(name) for name in SHARED_PACKAGES}


def ensure_peers_venv(log: IO[str]) -> None:
    """Create ``.bench/peers-venv`` and install the peers (and matplotlib) from PyPI.

    The requirement list is stamped into the venv, so later runs skip pip entirely unless
    trio_asgi's own trio/h11/wsproto moved.
    """
    requirements = [
        "hypercorn[trio]",
        "uvicorn",
        "httptools",
        "uvloop",
        "websockets",
        "matplotlib",
        # the asyncio frameworks of the bridge workloads (django-hello, quart-ws-echo)
        "django",
        "channels",
        "quart",
        *(f"{name}=={version}" for name, version in shared_versions().items()),
    ]
    stamp = PEERS_VENV / "bench-requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if stamp.exists() and stamp.read_text() == wanted and peers_python().exists():
        return
    print(f"installing peers into {PEERS_VENV} ...", file=log, flush=True)
    if not peers_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = [str(peers_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    result = subprocess.run([*pip, *requirements], capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"pip install of the peers failed:\n{result.stderr[-3000:]}")
    stamp.write_text(wanted)


def package_versions(python: Path | str, packages: tuple[str, ...]) -> dict[str, str]:
    """Versions of ``packages`` as seen by another interpreter (missing ones omitted)."""
    code = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        f"for name in {list(packages)!r}:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout))


def raise_open_files_limit() -> int:
    """Soft ``RLIMIT_NOFILE`` up to the hard limit, for us and (inherited) every child:
    ws-idle holds thousands of sockets on each side."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def have_taskset() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(cpu: str, command: list[str]) -> list[str]:
    """``command`` pinned to ``cpu`` (``taskset`` execs, so the PID stays the server's)."""
    return ["taskset", "-c", cpu, *command] if have_taskset() else command


# -- /proc -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    """CPU seconds (user + system, all threads) and memory of a process at one instant."""

    at: float
    cpu: float
    rss_kib: int
    hwm_kib: int


def sample(pid: int) -> ProcSample:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchError(f"server process {pid} is gone") from exc
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return ProcSample(
        at=time.monotonic(),
        cpu=(utime + stime) / CLK_TCK,
        rss_kib=values.get("VmRSS", 0),
        hwm_kib=values.get("VmHWM", 0),
    )


def cpu_busy() -> float:
    """Seconds all CPUs spent busy since boot (/proc/stat: everything but idle and iowait,
    steal included: time the hypervisor gave to someone else is time we did not get)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def process_cpu(pid: int) -> float:
    """CPU seconds of a process (0 if it is already gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- running a server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class RunningServer:
    """A started server process; use as a context manager so it is always stopped."""

    def __init__(self, spec: ServerSpec, python: str, log_path: Path, app: str = APP) -> None:
        self.spec = spec
        self.port = free_port()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            pinned(SERVER_CPU, spec.command(python, self.port, app)),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the harness reaches us, not the servers
        )
        self._log_size_at_ready = 0
        self._log_size_at_stop = 0
        self._stop_note = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until the app answers ``GET /`` correctly (no sleeps tuned to one server)."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read()
                conn.close()
            except OSError as exc:
                last_error = str(exc)
                time.sleep(0.05)
                continue
            if response.status != 200 or body != b"Hello, world!":
                raise BenchError(f"{self.spec.name}: GET / answered {response.status} {body!r}")
            self._log_size_at_ready = self._log_size()
            return
        raise BenchError(f"{self.spec.name} not ready after {timeout} s ({last_error})")

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise BenchError(
                f"{self.spec.name} exited with status {code}:\n{self.log_tail()}".rstrip()
            )

    def sample(self) -> ProcSample:
        self.check_alive()
        return sample(self.pid)

    def _log_size(self) -> int:
        self._log.flush()
        return self.log_path.stat().st_size

    def stop(self) -> None:
        """SIGINT (graceful everywhere), then SIGTERM, then SIGKILL if it lingers."""
        if self._log.closed:
            return
        self._log_size_at_stop = self._log_size()
        for signum, grace in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._stop_note = f"did not exit within {grace:g} s of {signum.name}"
                continue
        self._log.close()

    def log_tail(self, limit: int = 2000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-limit:].decode(errors="replace")

    def _log_lines(self, start: int, end: int) -> list[str]:
        text = self.log_path.read_bytes()[start:end].decode(errors="replace")
        return [line for line in text.splitlines() if line.strip()][:20]

    def startup_notes(self) -> list[str]:
        """What the server logged before it answered (deprecation warnings and the like)."""
        return self._log_lines(0, self._log_size_at_ready)

    def complaints(self) -> list[str]:
        """Lines logged under load, before we asked the server to stop: with the log level
        at ``warning``, anything here is a warning, an error or a traceback."""
        lines = self._log_lines(self._log_size_at_ready, self._log_size_at_stop)
        return [*lines, f"(harness) {self._stop_note}"] if self._stop_note else lines
