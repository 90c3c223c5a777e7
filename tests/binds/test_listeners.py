"""Each bind kind on real sockets, in-process: unix sockets (stale files, permissions, cleanup),
inherited descriptors, IPv6, and the startup line naming every listener."""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import stat
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_asgi import Config, listeners
from trio_asgi.errors import BindError
from trio_asgi.listeners import accept_loop, open_listeners, systemd_fds
from trio_asgi.testing import serve_in_background


async def addresses_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({"server": scope["server"], "client": scope["client"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def get_over_unix(path: Path) -> dict[str, Any]:
    transport = httpx.AsyncHTTPTransport(uds=str(path))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("http://localhost/")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def test_unix_socket_scope_startup_line_and_cleanup(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_asgi.error")
    path = sock_dir / "app.sock"
    async with serve_in_background(addresses_app, bind=[f"unix:{path}", "127.0.0.1:0"]) as server:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert server.addresses[0] == (str(path), None)
        port = server.addresses[1][1]
        assert port != 0
        assert await get_over_unix(path) == {"server": [str(path), None], "client": None}
    assert f"listening on unix:{path}, http://127.0.0.1:{port} " in caplog.text
    assert not path.exists()


async def test_cancelling_serve_closes_its_listeners(sock_dir: Path) -> None:
    """Cancelled rather than shut down: the sockets and the unix socket file go all the same."""
    import trio_asgi

    path = sock_dir / "app.sock"
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(
            trio_asgi.serve, addresses_app, Config(bind=[f"unix:{path}", "127.0.0.1:0"])
        )
        assert stat.S_ISSOCK(path.stat().st_mode)
        nursery.cancel_scope.cancel()
    assert not path.exists()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", addresses[1][1])


async def test_uds_shortcut_and_permissions(sock_dir: Path) -> None:
    path = sock_dir / "app.sock"
    async with serve_in_background(addresses_app, uds=str(path), uds_permissions=0o600):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (await get_over_unix(path))["server"] == [str(path), None]


async def test_a_backlog_beyond_what_listen_takes_is_capped(sock_dir: Path) -> None:
    """As trio does for TCP: listen() itself refuses a backlog beyond a C int with an
    OverflowError (which used to end the CLI in a traceback); the kernel caps it anyway."""
    path = sock_dir / "app.sock"
    async with serve_in_background(addresses_app, uds=str(path), backlog=3_000_000_000):
        assert (await get_over_unix(path))["server"] == [str(path), None]


async def test_stale_socket_file_is_replaced(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_asgi.error")
    path = sock_dir / "app.sock"
    with socket.socket(socket.AF_UNIX) as dead:  # a server that died: the file stays behind
        dead.bind(str(path))
    async with serve_in_background(addresses_app, uds=str(path)):
        assert (await get_over_unix(path))["client"] is None
    assert f"Removing stale unix socket {path}" in caplog.text


async def test_a_regular_file_is_never_removed(sock_dir: Path) -> None:
    path = sock_dir / "data.txt"
    path.write_text("precious")
    with pytest.raises(BindError, match="the path exists and is not a socket"):
        await open_listeners(Config(uds=str(path)))
    assert path.read_text() == "precious"


async def test_a_live_socket_is_not_taken_over(sock_dir: Path) -> None:
    path = sock_dir / "app.sock"
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        other.listen()
        with pytest.raises(BindError, match=f"unix:{path}: another server is listening on it"):
            await open_listeners(Config(uds=str(path)))
        assert path.exists()


async def test_a_socket_file_replaced_meanwhile_is_left_alone(sock_dir: Path) -> None:
    path = sock_dir / "app.sock"
    with socket.socket(socket.AF_UNIX) as newer:
        async with serve_in_background(addresses_app, uds=str(path)):
            path.unlink()
            newer.bind(str(path))  # another process's socket now, at the same path
        assert path.exists()


async def test_listeners_opened_before_a_failing_bind_are_closed(sock_dir: Path) -> None:
    first, blocked = sock_dir / "first.sock", sock_dir / "blocked"
    blocked.write_text("")
    with pytest.raises(BindError, match="blocked"):
        await open_listeners(Config(bind=[f"unix:{first}", f"unix:{blocked}"]))
    assert not first.exists()


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not available")
    async with serve_in_background(addresses_app, bind=["[::1]:0"]) as server:
        host, port = server.addresses[0]
        assert (host, server.url) == ("::1", f"http://[::1]:{port}")
        async with httpx.AsyncClient() as client:
            scope = (await client.get(server.url + "/")).json()
    assert scope["server"] == ["::1", port]
    assert scope["client"][0] == "::1"


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX])
@pytest.mark.parametrize("listening", [True, False])
async def test_inherited_descriptor(sock_dir: Path, family: int, listening: bool) -> None:
    sock = socket.socket(family)
    sock.bind(("127.0.0.1", 0) if family == socket.AF_INET else str(sock_dir / "fd.sock"))
    if listening:
        sock.listen(5)
    fd = sock.detach()  # the server owns it now and closes it on exit
    async with serve_in_background(addresses_app, bind=[f"fd://{fd}"]) as server:
        if family == socket.AF_INET:
            async with httpx.AsyncClient() as client:
                scope = (await client.get(server.url + "/")).json()
            assert scope["server"] == list(server.addresses[0])
        else:
            scope = await get_over_unix(sock_dir / "fd.sock")
            assert scope == {"server": [str(sock_dir / "fd.sock"), None], "client": None}
        assert not os.get_inheritable(fd)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed with the server
    if family == socket.AF_UNIX:
        assert (sock_dir / "fd.sock").exists()  # not ours to remove: we did not create it


async def test_inherited_descriptor_that_is_no_stream_socket() -> None:
    read_end, write_end = os.pipe()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            with pytest.raises(BindError, match=f"fd://{read_end}: Socket operation on non-socket"):
                await open_listeners(Config(fd=read_end))
            with pytest.raises(BindError, match="not a TCP or unix stream socket"):
                await open_listeners(Config(fd=udp.fileno()))
            assert os.fstat(udp.fileno())  # left open for its owner
        finally:
            os.close(read_end)
            os.close(write_end)


async def test_inherited_socket_that_cannot_listen() -> None:
    """A connected stream socket cannot become a listener: a BindError that says why, and
    the descriptor is left open for its owner (it used to be closed with the error)."""
    ours, theirs = socket.socketpair()
    with ours, theirs, warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        why = "not listening, and listen\\(\\) failed"
        with pytest.raises(BindError, match=f"cannot serve on fd://{ours.fileno()}: {why}"):
            await open_listeners(Config(fd=ours.fileno()))
        gc.collect()  # a socket object dropped with the error would close it here
        assert os.fstat(ours.fileno())
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"  # still the same, working descriptor


def test_systemd_variables_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    monkeypatch.delenv("LISTEN_PID", raising=False)
    with pytest.raises(BindError, match="LISTEN_FDS is not set"):
        systemd_fds()
    monkeypatch.setenv("LISTEN_FDS", "2")
    with pytest.raises(BindError, match="LISTEN_PID is not set"):
        systemd_fds()
    monkeypatch.setenv("LISTEN_PID", "1")
    with pytest.raises(BindError, match=f"LISTEN_PID is 1, not this process \\({os.getpid()}\\)"):
        systemd_fds()
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    assert systemd_fds() == [3, 4]
    monkeypatch.setenv("LISTEN_FDS", "two")
    with pytest.raises(BindError, match="is no number"):
        systemd_fds()


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def free_descriptors(count: int) -> int:
    """The first of ``count`` consecutive descriptor numbers that are not in use (high
    ones, which the kernel hands out last)."""
    start = 200
    while any(is_open(fd) for fd in range(start, start + count)):
        start += count
    return start


async def test_systemd_sockets_before_a_failing_one_are_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closed before the error propagates, not left to the garbage collector (which warns
    of an unclosed socket, or never gets to it while something holds on to the socket)."""
    start = free_descriptors(2)
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        os.dup2(tcp.fileno(), start)  # a socket we can serve on, then one we cannot
        os.dup2(udp.fileno(), start + 1)
    monkeypatch.setattr(listeners, "SD_LISTEN_FDS_START", start)
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(BindError, match=f"systemd fd {start + 1}: not a TCP or unix"):
                await open_listeners(Config(bind=["systemd"]))
            gc.collect()
        assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
        assert not is_open(start)
        assert is_open(start + 1)  # not a socket we can serve on: left to its owner
    finally:
        for fd in (start, start + 1):
            if is_open(fd):
                os.close(fd)


async def test_port_in_use_names_the_bind() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BindError, match=f"cannot serve on 127.0.0.1:{port}: "):
            await open_listeners(Config(bind=["127.0.0.1:0", f"127.0.0.1:{port}"]))


async def test_tls_unix_socket_in_the_startup_line(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import trustme

    caplog.set_level(logging.INFO, logger="trio_asgi.error")
    ca = trustme.CA()
    cert = sock_dir / "cert.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(cert))
    path = sock_dir / "tls.sock"
    async with serve_in_background(
        addresses_app, certfile=str(cert), uds=str(path), insecure_bind=["127.0.0.1:0"]
    ) as server:
        port = server.addresses[1][1]
    assert f"listening on unix:{path} (TLS), http://127.0.0.1:{port} " in caplog.text


async def queued_clients(listener: trio.SocketListener, count: int) -> list[socket.socket]:
    port = listener.socket.getsockname()[1]
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


async def open_listener() -> trio.SocketListener:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return trio.SocketListener(sock)


async def test_connections_waiting_in_the_backlog_are_accepted_in_one_go() -> None:
    """A busy server must not make each new client wait a scheduler round of its own: the
    clients already queued are all accepted within a couple of rounds."""
    listener = await open_listener()
    clients = await queued_clients(listener, 20)
    accepted: list[trio.SocketStream] = []
    all_in = trio.Event()
    rounds = 0

    async def handler(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        if len(accepted) == len(clients):
            all_in.set()
        await trio.sleep_forever()

    async def count_rounds() -> None:
        nonlocal rounds
        while True:  # one checkpoint per scheduler round
            rounds += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(count_rounds)
        nursery.start_soon(accept_loop, listener, nursery, handler)
        with trio.fail_after(10):
            await all_in.wait()
        assert rounds <= 4, rounds  # one round per client would be 20
        # ordinary trio streams, TCP_NODELAY included
        assert accepted[-1].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        nursery.cancel_scope.cancel()
    for client in clients:
        client.close()
    await listener.aclose()


async def test_batched_accepts_respect_the_concurrency_limit() -> None:
    listener = await open_listener()
    clients = await queued_clients(listener, 10)
    slots = trio.Semaphore(3)
    accepted: list[trio.SocketStream] = []
    release = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await release.wait()
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_loop, listener, nursery, handler, slots)
        await trio.testing.wait_all_tasks_blocked()
        assert len(accepted) == 3  # the rest wait in the kernel's backlog
        release.set()
        with trio.fail_after(10):
            while len(accepted) < 10:
                await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    for client in clients:
        client.close()
    await listener.aclose()
