"""Helpers shared by the test modules."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from trio_asgi.readiness import ReadinessSet
from trio_asgi.testing import MemoryStream


async def raw_exchange(stream: MemoryStream, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read everything until the server closes."""
    await stream.send_all(data)
    return await stream.receive_until_eof()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def anyio_backend() -> str:  # for plugins that look for it; we only run on trio
    return "trio"


def header(message: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in message.get("headers", []):
        if key == name:
            return bytes(value)
    return None


@pytest.fixture(autouse=True)
def _busy_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers run in a test's process wait in their readiness set from its first event on,
    whatever the load (``readiness.py``): a test's few clients would seldom make a server
    busy, and busy is the mode with more to get wrong. The switching between the modes is
    tested in ``test_readiness.py``; servers run as a subprocess keep the real thresholds."""
    monkeypatch.setattr(ReadinessSet, "enter_at", 0)  # (a probe may find the data read)
    monkeypatch.setattr(ReadinessSet, "leave_below", 0.0)
    monkeypatch.setattr(ReadinessSet, "probe_every", 0.0)


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    """Tests that run the CLI configure trio_asgi's loggers; undo that for the next test
    (caplog relies on records propagating to the root logger)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("trio_asgi.error", "trio_asgi.access")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    yield
    for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.setLevel(level)


@dataclass
class TLSFiles:
    """A CA, a server certificate for localhost, 127.0.0.1 and ::1, and the PEM files."""

    ca: trustme.CA
    server: trustme.LeafCert
    certfile: str  # the server's certificate chain
    keyfile: str
    ca_file: str  # the CA's certificate: clients trust it, and mTLS servers verify with it

    @property
    def config(self) -> dict[str, Any]:
        return {"certfile": self.certfile, "keyfile": self.keyfile}

    def client_context(self, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        """A client context trusting our CA, presenting ``cert`` if given."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if cert is not None:
            cert.configure_cert(context)
        return context


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(ca: trustme.CA, tmp_path: Path) -> TLSFiles:
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    certfile = tmp_path / "server.pem"
    keyfile = tmp_path / "server.key"
    ca_file = tmp_path / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(certfile))
    server.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(ca_file))
    return TLSFiles(ca, server, str(certfile), str(keyfile), str(ca_file))
