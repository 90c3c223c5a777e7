#!/usr/bin/env python3
"""Run Autobahn|Testsuite's fuzzing client against ``python -m trio_asgi examples.echo:app``.

Autobahn|Testsuite (PyPI ``autobahntestsuite``, including the 25.10.1 release) runs only on
Python 2.7, which Debian 12 no longer ships. So this script builds a private Python 2.7 from
Debian 11 (bullseye) packages, downloaded with ``apt-get download`` through a private apt
configuration and unpacked with ``dpkg-deb -x`` into ``.conformance/`` (gitignored): nothing
is installed system-wide and no root is needed. pip 20.3.4 (the last for Python 2) then
installs the test suite with the dependency versions its release pins.

Steps: install (once) → start the server on a free port → run the cases → summarize the
report per case group. Exit status: 0 if no case FAILED, 1 if one did, 2 if the tools could
not be installed or run.

Usage:
    scripts/conformance/run.py                      # cases 1-13 (all of them)
    scripts/conformance/run.py --cases '1.*' '7.*'  # some of them
    scripts/conformance/run.py --summary-only       # summarize the last report again
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".conformance"
PY27 = WORK / "py27"  # the unpacked Debian packages: PY27/usr/bin/python2.7
REPORTS = WORK / "reports"
MARKER = PY27 / ".installed"

DEBIAN_SUITE = "bullseye"  # the last Debian release with Python 2.7
DEBIAN_PACKAGES = [
    "python2.7",
    "python2.7-minimal",
    "libpython2.7-minimal",
    "libpython2.7-stdlib",
    "libffi7",  # ctypes/cffi, Debian 12 has libffi8
    "libssl1.1",  # _ssl/_hashlib, Debian 12 has libssl3
]
PIP_FOR_PY2 = "pip==20.3.4"
BOOTSTRAP = ["setuptools==44.0.0", "wheel==0.37.1"]
SUITE = "autobahntestsuite==25.10.1"
# The release's own pins (its requirements.txt), minus the optional C accelerators
# (wsaccel, ujson) that would need a compiler and Python 2 headers.
SUITE_DEPENDENCIES = [
    "autobahn[twisted]==0.10.9",
    "txaio==2.1.0",
    "Twisted==19.10.0",
    "zope.interface==4.6.0",
    "incremental==16.10.1",
    "pyOpenSSL==19.1.0",
    "cryptography==3.3.2",
    "service_identity==18.1.0",
    "jinja2==2.11.3",
    "markupsafe==1.1.1",
    "Werkzeug==1.0.1",
    "klein==17.10.0",
    "unittest2==1.1.0",
    "six==1.16.0",
]
SERVER_APP = "examples.echo:app"
CASE_GROUPS = [f"{group}.*" for group in (1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13)]
BEHAVIOURS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]


class SetupError(Exception):
    """The external client could not be installed or started."""


def log(message: str) -> None:
    print(f"[conformance] {message}", flush=True)


def run(command: list[str], **kwargs: object) -> None:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise SetupError(f"command failed ({result.returncode}): {' '.join(command)}\n{output}")


# -- installation --------------------------------------------------------------------------


def py27_environment() -> dict[str, str]:
    libraries = sorted({os.path.dirname(p) for p in glob.glob(str(PY27 / "usr/lib/*/libssl.so.*"))})
    env = dict(os.environ)
    env["PYTHONHOME"] = str(PY27 / "usr")
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libraries, env.get("LD_LIBRARY_PATH", "")])
    env.pop("PYTHONPATH", None)
    return env


def python27() -> list[str]:
    return [str(PY27 / "usr/bin/python2.7")]


def install_python27() -> None:
    """Debian 11's Python 2.7 packages, unpacked into PY27 (no dpkg database, no root)."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SetupError(f"{tool} not found: a Debian-based system is needed to get Python 2.7")
    apt = WORK / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial", "debs"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    sources = apt / "sources.list"
    sources.write_text(
        f"deb [signed-by={keyring}] http://deb.debian.org/debian {DEBIAN_SUITE} main\n"
        f"deb [signed-by={keyring}] http://deb.debian.org/debian-security "
        f"{DEBIAN_SUITE}-security main\n"
    )
    options = [
        f"-oDir::State={apt / 'state'}",
        f"-oDir::Cache={apt / 'cache'}",
        f"-oDir::Etc::SourceList={sources}",
        "-oDir::Etc::SourceParts=/nonexistent",
        "-oDebug::NoLocking=1",
        "-qq",
    ]
    log(f"fetching the Debian {DEBIAN_SUITE} package lists (private apt state in {apt})")
    run(["apt-get", *options, "update"])
    log(f"downloading {', '.join(DEBIAN_PACKAGES)}")
    debs = apt / "debs"
    run(["apt-get", *options, "download", *DEBIAN_PACKAGES], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(PY27)])
    check = "import ssl, zlib, ctypes, hashlib; print(ssl.OPENSSL_VERSION)"
    run([*python27(), "-c", check], env=py27_environment())


def install_suite() -> None:
    """pip for Python 2 (fetched by this Python's pip), then the suite into dist-packages."""
    site = PY27 / "usr/lib/python2.7/dist-packages"  # a site dir: its .pth files are read
    wheels = WORK / "wheels"
    log(f"fetching {PIP_FOR_PY2} for Python 2.7")
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    run([*download, "--only-binary=:all:", "--python-version=2.7", f"--dest={wheels}", PIP_FOR_PY2])
    pip_wheel = next(wheels.glob("pip-*.whl"))
    env = py27_environment()
    quiet = [
        "--quiet",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--no-warn-script-location",
    ]
    bootstrap = [*python27(), f"{pip_wheel}/pip", "install", *quiet, f"--target={site}"]
    run([*bootstrap, PIP_FOR_PY2, *BOOTSTRAP], env=env)
    log(f"installing {SUITE} and its pinned dependencies")
    pip = [*python27(), "-m", "pip", "install", *quiet, "--upgrade", f"--target={site}"]
    run([*pip, *SUITE_DEPENDENCIES], env=env)
    run([*pip, "--no-deps", SUITE], env=env)
    run([*python27(), "-m", "autobahntestsuite.wstest", "--autobahnversion"], env=env)


def ensure_installed() -> None:
    if MARKER.exists():
        return
    if PY27.exists():
        shutil.rmtree(PY27)
    try:
        install_python27()
        install_suite()
    except SetupError as exc:
        raise SetupError(
            "could not install Autobahn|Testsuite (see docs/conformance.md):\n" + str(exc)
        ) from None
    MARKER.write_text(SUITE + "\n")


# -- running -------------------------------------------------------------------------------


def start_server(extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m trio_asgi`` on a free port; its log goes to ``.conformance/server.log``."""
    command = [sys.executable, "-m", "trio_asgi", SERVER_APP, "--port", "0", "--no-access-log"]
    server_log = WORK / "server.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen([*command, *extra], cwd=ROOT, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        # "... listening on http://127.0.0.1:PORT ..."
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", server_log.read_text())
        if match:
            return server, int(match.group(1))
        time.sleep(0.1)
    stop_server(server)
    raise SetupError(f"the server did not start listening; see {server_log}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_cases(cases: list[str], exclude: list[str], server_args: list[str]) -> None:
    if REPORTS.exists():
        shutil.rmtree(REPORTS)
    server, port = start_server(server_args)
    try:
        spec = {
            "outdir": str(REPORTS),
            "servers": [{"agent": "trio_asgi", "url": f"ws://127.0.0.1:{port}/ws"}],
            "cases": cases,
            "exclude-cases": exclude,
            "exclude-agent-cases": {},
        }
        spec_file = WORK / "fuzzingclient.json"
        spec_file.write_text(json.dumps(spec, indent=2))
        log(f"server on port {port}; running cases {' '.join(cases)}")
        started = time.monotonic()
        fuzzingclient = [
            "-u",
            "-m",
            "autobahntestsuite.wstest",
            "-m",
            "fuzzingclient",
            "-s",
            spec_file,
        ]
        wstest = subprocess.Popen(
            [*python27(), *map(str, fuzzingclient)],
            cwd=WORK,
            env=py27_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert wstest.stdout is not None
        transcript = WORK / "wstest.log"
        group = None
        with transcript.open("w") as out:
            for line in wstest.stdout:
                out.write(line)
                match = re.match(r"Running test case ID ((\d+)\.\S*)", line)
                if match and match.group(2) != group:
                    group = match.group(2)
                    log(f"case group {group} ({time.monotonic() - started:.0f} s)")
        if wstest.wait() != 0 or not (REPORTS / "index.json").exists():
            raise SetupError(f"wstest failed ({wstest.returncode}); see {transcript}")
        log(f"done in {time.monotonic() - started:.0f} s")
    finally:
        stop_server(server)


# -- the report ----------------------------------------------------------------------------


def case_key(case: str) -> list[int]:
    return [int(part) for part in case.split(".")]


def summarize() -> bool:
    """Print the counts per group and every case that is not plainly OK; True if none
    FAILED."""
    index = json.loads((REPORTS / "index.json").read_text())
    (results,) = index.values()
    groups: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    notable = []
    for case in sorted(results, key=case_key):
        result = results[case]
        behaviour = result["behavior"]
        groups[case.split(".")[0]][behaviour] += 1
        if behaviour != "OK" or result["behaviorClose"] not in ("OK", "INFORMATIONAL"):
            detail = json.loads((REPORTS / result["reportfile"]).read_text())
            notable.append((case, behaviour, result["behaviorClose"], detail.get("result", "")))
    lines = [
        "| group | cases | " + " | ".join(BEHAVIOURS) + " |",
        "|---" * (2 + len(BEHAVIOURS)) + "|",
    ]
    total: collections.Counter[str] = collections.Counter()
    for group in sorted(groups, key=int):
        counts = groups[group]
        total.update(counts)
        row = [group, str(sum(counts.values())), *(str(counts[b]) for b in BEHAVIOURS)]
        lines.append("| " + " | ".join(row) + " |")
    row = ["all", str(sum(total.values())), *(str(total[b]) for b in BEHAVIOURS)]
    lines.append("| " + " | ".join(f"**{cell}**" for cell in row) + " |")
    if notable:
        lines += ["", "| case | behaviour | close | Autobahn's note |", "|---|---|---|---|"]
        lines += [f"| {c} | {b} | {bc} | {note} |" for c, b, bc, note in notable]
    summary = "\n".join(lines)
    print(summary)
    (WORK / "summary.md").write_text(summary + "\n")
    log(f"report: {REPORTS / 'index.html'}; summary: {WORK / 'summary.md'}")
    return total["FAILED"] == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=CASE_GROUPS, help="case patterns")
    parser.add_argument("--exclude", nargs="*", default=[], help="case patterns to skip")
    parser.add_argument("--summary-only", action="store_true", help="summarize the last report")
    parser.add_argument(
        "server_args", nargs="*", help="extra server options, after '--' (e.g. -- --ws-max-size 1)"
    )
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    try:
        if not args.summary_only:
            ensure_installed()
            run_cases(args.cases, args.exclude, args.server_args)
        elif not (REPORTS / "index.json").exists():
            raise SetupError(f"no report in {REPORTS} yet")
    except SetupError as exc:
        print(f"[conformance] ERROR: {exc}", file=sys.stderr)
        return 2
    return 0 if summarize() else 1


if __name__ == "__main__":
    sys.exit(main())
