"""Synchronous transcripts of the WebSocket protocol layer."""

from __future__ import annotations

import base64
import struct

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from trio_asgi.protocols.websocket import (
    CONNECTION_LOST,
    CloseReceived,
    HandshakeError,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    WebSocketProtocol,
    accept_headers,
    check_handshake,
    closable_by_app,
    wants_websocket,
)
from trio_asgi.testing import build_frame

KEY = base64.b64encode(b"0123456789abcdef")
GOOD = [
    (b"host", b"x"),
    (b"connection", b"keep-alive, Upgrade"),
    (b"upgrade", b"websocket"),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-key", KEY),
]


def replace(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes | None) -> list:
    kept = [(n, v) for n, v in headers if n != name]
    return kept if value is None else [*kept, (name, value)]


def test_valid_handshake_and_its_offers() -> None:
    headers = [
        *GOOD,
        (b"sec-websocket-protocol", b"chat, superchat"),
        (b"sec-websocket-protocol", b"v3"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits, x-foo"),
    ]
    handshake = check_handshake(b"GET", b"1.1", headers)
    assert handshake.key == KEY
    assert handshake.subprotocols == ["chat", "superchat", "v3"]
    assert handshake.extensions == ["permessage-deflate; client_max_window_bits", "x-foo"]


@pytest.mark.parametrize(
    ("method", "version", "headers", "status"),
    [
        (b"POST", b"1.1", GOOD, 400),
        (b"GET", b"1.0", GOOD, 400),
        (b"GET", b"1.1", replace(GOOD, b"connection", b"keep-alive"), 400),
        (b"GET", b"1.1", replace(GOOD, b"sec-websocket-key", None), 400),
        (b"GET", b"1.1", replace(GOOD, b"sec-websocket-key", b"short"), 400),
        (b"GET", b"1.1", replace(GOOD, b"sec-websocket-key", b"not base64 at all!!!!!!="), 400),
        (b"GET", b"1.1", replace(GOOD, b"sec-websocket-version", b"8"), 426),
        (b"GET", b"1.1", replace(GOOD, b"sec-websocket-version", None), 426),
    ],
)
def test_invalid_handshakes(
    method: bytes, version: bytes, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    with pytest.raises(HandshakeError) as info:
        check_handshake(method, version, headers)
    assert info.value.status == status
    if status == 426:
        assert (b"sec-websocket-version", b"13") in info.value.headers


def test_upgrade_detection_is_token_based() -> None:
    assert wants_websocket([(b"upgrade", b"WebSocket")])
    assert wants_websocket([(b"upgrade", b"h2c, websocket")])
    assert not wants_websocket([(b"upgrade", b"h2c")])
    assert not wants_websocket([(b"connection", b"upgrade")])


def test_accept_headers_carry_token_and_subprotocol() -> None:
    handshake = check_handshake(b"GET", b"1.1", [*GOOD, (b"sec-websocket-protocol", b"chat")])
    headers, extensions = accept_headers(
        handshake, subprotocol="chat", extra_headers=[(b"x-a", b"1")], supported_extensions=[]
    )
    # RFC 6455 4.2.2 example key/accept pair shape: base64 of a SHA-1.
    accept = dict(headers)[b"sec-websocket-accept"]
    assert len(base64.b64decode(accept)) == 20
    assert (b"sec-websocket-protocol", b"chat") in headers
    assert headers[-1] == (b"x-a", b"1")
    assert extensions == []


def client_bytes(*events: object) -> bytes:
    client = Connection(ConnectionType.CLIENT)
    return b"".join(client.send(event) for event in events)  # type: ignore[arg-type]


def drain(ws: WebSocketProtocol) -> list[object]:
    events = []
    while (event := ws.next_event()) is not None:
        events.append(event)
        if event is CONNECTION_LOST or isinstance(event, ProtocolFailure | CloseReceived):
            break
    return events


def test_fragments_are_reassembled_and_control_frames_interleave() -> None:
    ws = WebSocketProtocol(max_message_size=1000)
    ws.receive_data(
        client_bytes(
            TextMessage(data="hel", message_finished=False),
            Ping(payload=b"p"),
            TextMessage(data="lo", message_finished=True),
            BytesMessage(data=b"\x00\x01"),
        )
    )
    events = drain(ws)
    assert isinstance(events[0], PingReceived) and events[0].payload == b"p"
    assert events[1:] == ["hello", b"\x00\x01"]


def test_messages_one_byte_at_a_time() -> None:
    ws = WebSocketProtocol(max_message_size=100)
    data = client_bytes(TextMessage(data="héllo"), BytesMessage(data=b"xyz"))
    events: list[object] = []
    for i in range(len(data)):
        ws.receive_data(data[i : i + 1])
        events.extend(drain(ws))
    assert events == ["héllo", b"xyz"]


def test_size_limit_counts_bytes_across_fragments() -> None:
    ws = WebSocketProtocol(max_message_size=10)
    ws.receive_data(
        client_bytes(
            BytesMessage(data=b"123456", message_finished=False),
            BytesMessage(data=b"7890", message_finished=True),
        )
    )
    assert drain(ws) == [b"1234567890"]  # exactly at the limit is fine
    ws.receive_data(
        client_bytes(
            TextMessage(data="ééé", message_finished=False),  # 6 bytes in UTF-8
            TextMessage(data="éé", message_finished=True),  # 4 more: 10 → still fine
        )
    )
    assert drain(ws) == ["ééééé"]
    ws.receive_data(client_bytes(BytesMessage(data=b"x" * 11)))
    [failure] = drain(ws)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1009
    assert ws.next_event() is None  # nothing after a failure


def test_close_frames_and_codes() -> None:
    ws = WebSocketProtocol(max_message_size=10)
    ws.receive_data(client_bytes(CloseConnection(code=4001, reason="bye")))
    [close] = drain(ws)
    assert isinstance(close, CloseReceived) and (close.code, close.reason) == (4001, "bye")
    # Echo of the peer's code completes the handshake.
    assert ws.close(4001) == b"\x88\x02\x0f\xa1"


def test_close_without_code_is_1005_and_echoed_without_code() -> None:
    ws = WebSocketProtocol(max_message_size=10)
    ws.receive_data(build_frame(0x8, b""))
    [close] = drain(ws)
    assert isinstance(close, CloseReceived) and close.code == 1005
    assert ws.close(1005) == b"\x88\x00"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (build_frame(0x8, b"\x03"), 1002),  # 1-byte close payload
        (build_frame(0x8, struct.pack("!H", 999)), 1002),  # invalid code
        (build_frame(0x8, struct.pack("!H", 1005)), 1002),  # local-only code on the wire
        (build_frame(0x8, struct.pack("!H", 1000) + b"\xff\xfe"), 1007),  # reason not UTF-8
        (build_frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 1007),
        (build_frame(0x1, b"x", rsv=1), 1002),  # reserved bit without an extension
        (build_frame(0x3, b"x"), 1002),  # reserved opcode
        (build_frame(0x9, b"x", fin=False), 1002),  # fragmented control frame
        (build_frame(0x9, b"x" * 126), 1002),  # control frame payload > 125
        (build_frame(0x0, b"x"), 1002),  # continuation without a start
        (build_frame(0x1, b"x", mask=False), 1002),  # clients must mask
    ],
)
def test_protocol_errors_fail_with_the_right_code(frame: bytes, code: int) -> None:
    ws = WebSocketProtocol(max_message_size=1000)
    ws.receive_data(frame)
    [failure] = drain(ws)
    assert isinstance(failure, ProtocolFailure)
    assert failure.code == code
    assert ws.close(failure.code).startswith(b"\x88")


def test_invalid_utf8_fails_fast_inside_a_fragmented_message() -> None:
    ws = WebSocketProtocol(max_message_size=1000)
    ws.receive_data(build_frame(0x1, b"valid", fin=False))
    assert drain(ws) == []
    # The first fragment of the next frame is already invalid; the rest never comes.
    ws.receive_data(build_frame(0x0, b"\xff" + b"x" * 50, fin=True)[:10])
    [failure] = drain(ws)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1007


def test_pong_and_eof() -> None:
    ws = WebSocketProtocol(max_message_size=10)
    ws.receive_data(build_frame(0xA, b"unsolicited"))
    [pong] = drain(ws)
    assert isinstance(pong, PongReceived) and pong.payload == b"unsolicited"
    ws.receive_data(b"")
    assert ws.next_event() is CONNECTION_LOST


def test_local_only_codes_never_reach_the_wire() -> None:
    for code in (1005, 1006, 1015):
        assert not closable_by_app(code)
    ws = WebSocketProtocol(max_message_size=10)
    frame = ws.close(1006)
    assert frame == b"\x88\x02\x03\xf3"  # 1011, not 1006 or wsproto's silent 1000


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_frame_lengths_round_trip(size: int) -> None:
    ws = WebSocketProtocol(max_message_size=1 << 20)
    payload = bytes(i % 251 for i in range(size))
    ws.receive_data(client_bytes(BytesMessage(data=payload)))
    assert drain(ws) == [payload]
    frame = ws.send(payload)
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(frame)
    [event] = list(client.events())
    assert isinstance(event, BytesMessage) and event.data == payload
