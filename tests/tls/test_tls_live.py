"""TLS on real loopback sockets with third-party clients: httpx and the websockets library."""

from __future__ import annotations

import ast
import ssl
from typing import Any

import httpx
import pytest
import trio
import trustme

from examples.echo import app as echo_app
from trio_asgi.testing import serve_in_background

from .conftest import TLSFiles, scope_app


def wss_echo(url: str, context: ssl.SSLContext, messages: list[str | bytes]) -> list[Any]:
    from websockets.sync.client import connect

    with connect(url, ssl=context, open_timeout=10, close_timeout=10) as ws:
        replies = []
        for message in messages:
            ws.send(message)
            replies.append(ws.recv(timeout=10))
    return replies


async def test_https_get_and_post_with_httpx(tls: TLSFiles) -> None:
    async with serve_in_background(echo_app, **tls.config) as server:
        assert server.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(verify=tls.client_context()) as client:
            hello = await client.get(server.url + "/")
            echoed = await client.post(server.url + "/", content=b"over TLS")
    assert (hello.status_code, hello.text) == (200, "Hello, world!\n")
    assert hello.http_version == "HTTP/1.1"
    assert echoed.text == "over TLS"


async def test_wss_echo_with_websockets(tls: TLSFiles) -> None:
    async with serve_in_background(echo_app, **tls.config) as server:
        assert server.ws_url.startswith("wss://")
        replies = await trio.to_thread.run_sync(
            wss_echo, server.ws_url + "/ws", tls.client_context(), ["hi", b"\x00\xff" * 1000]
        )
    assert replies == ["hi", b"\x00\xff" * 1000]


@pytest.mark.parametrize("cert_reqs", ["optional", "required"])
async def test_mutual_tls_with_httpx(tls: TLSFiles, ca: trustme.CA, cert_reqs: str) -> None:
    alice = ca.issue_cert("alice@example.com", common_name="alice")
    config = {**tls.config, "ca_certs": tls.ca_file, "cert_reqs": cert_reqs}
    async with serve_in_background(scope_app, **config) as server:
        async with httpx.AsyncClient(verify=tls.client_context(alice)) as client:
            response = await client.get(server.url + "/")
        _, ext = ast.literal_eval(response.text)
        assert ext["client_cert_name"].startswith("CN=alice,")
        assert len(ext["client_cert_chain"]) == 1

        async with httpx.AsyncClient(verify=tls.client_context()) as client:
            if cert_reqs == "required":
                with pytest.raises(httpx.TransportError):
                    await client.get(server.url + "/")
            else:
                _, ext = ast.literal_eval((await client.get(server.url + "/")).text)
                assert (ext["client_cert_chain"], ext["client_cert_name"]) == ([], None)

        # Refused clients do not disturb the server.
        async with httpx.AsyncClient(verify=tls.client_context(alice)) as client:
            assert (await client.get(server.url + "/")).status_code == 200


async def test_plain_http_client_on_the_tls_port_is_told(tls: TLSFiles) -> None:
    async with serve_in_background(echo_app, **tls.config) as server:
        async with httpx.AsyncClient() as client:
            response = await client.get(server.url.replace("https://", "http://") + "/")
    assert response.status_code == 400
    assert "speaks HTTPS" in response.text


async def test_plain_and_tls_binds_in_one_server(tls: TLSFiles) -> None:
    config = {**tls.config, "bind": ["127.0.0.1:0"], "insecure_bind": ["127.0.0.1:0"]}
    async with serve_in_background(scope_app, **config) as server:
        (tls_host, tls_port), (plain_host, plain_port) = server.addresses
        async with httpx.AsyncClient(verify=tls.client_context()) as client:
            secure = await client.get(f"https://{tls_host}:{tls_port}/")
            plain = await client.get(f"http://{plain_host}:{plain_port}/")
    scheme, ext = ast.literal_eval(secure.text)
    assert scheme == "https" and ext["tls_version"] in (0x0303, 0x0304)
    assert ast.literal_eval(plain.text) == ("http", None)


async def test_file_responses_go_through_tls_not_sendfile(
    tls: TLSFiles, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    def no_sendfile(*args: Any) -> int:
        raise AssertionError("sendfile would bypass TLS")

    monkeypatch.setattr(os, "sendfile", no_sendfile)
    path = tmp_path / "big.bin"
    content = os.urandom(700_000)
    path.write_bytes(content)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(b"content-length", str(len(content)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.pathsend", "path": str(path)})

    async with serve_in_background(app, lifespan="off", **tls.config) as server:
        async with httpx.AsyncClient(verify=tls.client_context()) as client:
            response = await client.get(server.url + "/")
    assert response.content == content
