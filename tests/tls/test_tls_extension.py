"""The ASGI ``tls`` extension (asgiref specs/tls.rst 0.2), key by key, over in-memory TLS."""

from __future__ import annotations

import ast
import logging
import ssl
from typing import Any

import pytest
import trio
import trustme
from cryptography import x509
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request, TextMessage

from trio_asgi.testing import TestClient

from .conftest import TLSFiles, exchange, scope_app, tls_server

TLS_KEYS = {
    "server_cert",
    "client_cert_chain",
    "client_cert_name",
    "client_cert_error",
    "tls_version",
    "cipher_suite",
}
# IANA numbers of the suites these tests negotiate (RFC 8446 B.4, RFC 5289).
IANA = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
}


def pem(der_or_pem: bytes) -> str:
    """A certificate as ``ssl`` encodes PEM (what the extension reports)."""
    if der_or_pem.startswith(b"-----"):
        der_or_pem = ssl.PEM_cert_to_DER_cert(der_or_pem.decode())
    return ssl.DER_cert_to_PEM_cert(der_or_pem)


def described(body: bytes) -> tuple[str, dict[str, Any] | None]:
    return ast.literal_eval(body.decode())  # type: ignore[no-any-return]


async def test_every_key_without_a_client_certificate(tls: TLSFiles) -> None:
    async with tls_server(**tls.config) as server:
        stream = await server.connect(tls.client_context())
        status, body = await exchange(stream)
        cipher = stream.cipher()
    assert status == b"HTTP/1.1 200 OK"
    scheme, ext = described(body)
    assert scheme == "https"
    assert ext == {
        "server_cert": pem(tls.server.cert_chain_pems[0].bytes()),
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": 0x0304,
        "cipher_suite": IANA[cipher[0]],
    }


async def test_websocket_scope_has_it_too_with_wss(tls: TLSFiles) -> None:
    ws = WSConnection(ConnectionType.CLIENT)
    async with tls_server(**tls.config) as server:
        stream = await server.connect(tls.client_context())
        await stream.send_all(ws.send(Request(host="localhost", target="/ws")))
        text = None
        while text is None:
            ws.receive_data(await stream.receive_some())
            for event in ws.events():
                if isinstance(event, TextMessage):
                    text = event.data
        await stream.aclose()
    scheme, ext = described(text.encode())
    assert scheme == "wss"
    assert ext is not None and set(ext) == TLS_KEYS
    assert ext["tls_version"] == 0x0304


async def test_plain_connections_have_no_tls_extension() -> None:
    async with TestClient(scope_app) as client:
        response = await client.get("/")
    assert described(response.content) == ("http", None)


async def test_tls_1_2_version_and_cipher_numbers(tls: TLSFiles) -> None:
    context = tls.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
    async with tls_server(**tls.config) as server:
        _, body = await server.get(context)
    _, ext = described(body)
    assert ext is not None
    assert (ext["tls_version"], ext["cipher_suite"]) == (0x0303, 0xC02C)


@pytest.mark.parametrize("cert_reqs", ["optional", "required"])
async def test_client_certificate_chain_and_name(
    tls: TLSFiles, ca: trustme.CA, cert_reqs: str
) -> None:
    alice = ca.issue_cert("alice@example.com", common_name='alice, "the" admin')
    async with tls_server(**tls.config, ca_certs=tls.ca_file, cert_reqs=cert_reqs) as server:
        _, body = await server.get(tls.client_context(alice))
    _, ext = described(body)
    assert ext is not None
    leaf = alice.cert_chain_pems[0].bytes()
    # Python 3.11 and 3.12 report only the client's own certificate (see trio_asgi/tls.py).
    assert ext["client_cert_chain"] == [pem(leaf)]
    subject = x509.load_pem_x509_certificate(leaf).subject
    assert ext["client_cert_name"] == subject.rfc4514_string()
    assert ext["client_cert_name"].startswith('CN=alice\\, \\"the\\" admin,OU=')
    assert ext["client_cert_error"] is None


async def test_optional_client_certificate_may_be_left_out(tls: TLSFiles) -> None:
    async with tls_server(**tls.config, ca_certs=tls.ca_file, cert_reqs="optional") as server:
        _, body = await server.get(tls.client_context())
    _, ext = described(body)
    assert ext is not None
    assert (ext["client_cert_chain"], ext["client_cert_name"]) == ([], None)


async def test_client_chain_with_an_intermediate_reports_the_client_first(
    tls: TLSFiles, ca: trustme.CA
) -> None:
    intermediate = ca.create_child_ca()
    bob = intermediate.issue_cert("bob@example.com", common_name="bob")
    async with tls_server(**tls.config, ca_certs=tls.ca_file, cert_reqs="required") as server:
        _, body = await server.get(tls.client_context(bob))
    _, ext = described(body)
    assert ext is not None
    assert ext["client_cert_chain"][0] == pem(bob.cert_chain_pems[0].bytes())
    assert ext["client_cert_name"].startswith("CN=bob,")


async def refused(
    server: Any, context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> list[str]:
    """Try a request that the server must refuse during the handshake; returns the server's
    debug lines about it (and checks nothing was logged as an error)."""
    caplog.set_level(logging.DEBUG, logger="trio_asgi.error")
    stream = await server.connect(context)
    with pytest.raises(trio.BrokenResourceError):
        # TLS 1.3 clients finish their side first, so the refusal may show on the read.
        await exchange(stream)
    await trio.testing.wait_all_tasks_blocked()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    return [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]


async def test_required_client_certificate_missing_is_refused_quietly(
    tls: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    async with tls_server(**tls.config, ca_certs=tls.ca_file, cert_reqs="required") as server:
        lines = await refused(server, tls.client_context(), caplog)
        assert lines and "PEER_DID_NOT_RETURN_A_CERTIFICATE" in lines[0]
        # The server is unaffected: the next client is served.
        assert (await server.get(tls.client_context(tls.server)))[0] == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize("cert_reqs", ["optional", "required"])
async def test_client_certificate_from_another_ca_is_refused(
    tls: TLSFiles, cert_reqs: str, caplog: pytest.LogCaptureFixture
) -> None:
    mallory = trustme.CA().issue_cert("mallory@example.com")
    async with tls_server(**tls.config, ca_certs=tls.ca_file, cert_reqs=cert_reqs) as server:
        lines = await refused(server, tls.client_context(mallory), caplog)
    # OpenSSL fails the handshake, so client_cert_error never reaches an app.
    assert lines and "CERTIFICATE_VERIFY_FAILED" in lines[0]


async def test_ciphers_option_limits_tls_1_2_suites(
    tls: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    config = {**tls.config, "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"}
    async with tls_server(**config) as server:
        context = tls.client_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        _, body = await server.get(context)
        _, ext = described(body)
        assert ext is not None and ext["cipher_suite"] == 0xC02B
        context.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
        lines = await refused(server, context, caplog)
        assert lines and "NO_SHARED_CIPHER" in lines[0]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_1_1_is_refused(tls: TLSFiles, caplog: pytest.LogCaptureFixture) -> None:
    def tls_1_1_client() -> ssl.SSLContext:
        context = tls.client_context()
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer it at all
        return context

    # First, a server that allows TLS 1.1 serves this client: so the refusal below is ours
    # (and the extension numbers TLS 1.1 right).
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.minimum_version = ssl.TLSVersion.TLSv1_1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    tls.server.configure_cert(permissive)
    async with tls_server(ssl_context=permissive) as server:
        try:
            _, body = await server.get(tls_1_1_client())
        except trio.BrokenResourceError:
            pytest.skip("this OpenSSL cannot speak TLS 1.1 at all")
    _, ext = described(body)
    assert ext is not None and ext["tls_version"] == 0x0302
    assert ext["server_cert"] is None  # Python cannot read a given context's certificate

    async with tls_server(**tls.config) as server:
        lines = await refused(server, tls_1_1_client(), caplog)
    assert lines and "UNSUPPORTED_PROTOCOL" in lines[0]


async def test_alpn_selects_http_1_1(tls: TLSFiles) -> None:
    context = tls.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    async with tls_server(**tls.config) as server:
        stream = await server.connect(context)
        await stream.do_handshake()
        assert stream.selected_alpn_protocol() == "http/1.1"
        await stream.aclose()


async def test_server_cert_is_the_first_certificate_of_a_chain_file(
    tls: TLSFiles, ca: trustme.CA, tmp_path: Any
) -> None:
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("localhost")
    chain = tmp_path / "chain.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(chain))  # key, leaf, intermediate
    async with tls_server(certfile=str(chain)) as server:
        _, body = await server.get(tls.client_context())
    _, ext = described(body)
    assert ext is not None and ext["server_cert"] == pem(leaf.cert_chain_pems[0].bytes())
