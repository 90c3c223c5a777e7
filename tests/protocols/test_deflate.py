"""permessage-deflate negotiation and bounded inflation, as synchronous transcripts."""

from __future__ import annotations

import zlib

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, TextMessage
from wsproto.extensions import PerMessageDeflate as ClientDeflate
from wsproto.handshake import server_extensions_handshake

from trio_asgi.protocols.deflate import MIN_COMPRESS_SIZE, PerMessageDeflate, parse_offer
from trio_asgi.protocols.websocket import ProtocolFailure, WebSocketProtocol


def negotiate(header: str, max_size: int = 1 << 20) -> tuple[bytes | None, PerMessageDeflate]:
    ext = PerMessageDeflate(max_size)
    offers = [offer.strip() for offer in header.split(",")]
    return server_extensions_handshake(offers, [ext]), ext


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate", b"permessage-deflate"),
        ("permessage-deflate; client_max_window_bits", b"permessage-deflate"),
        ("permessage-deflate; client_max_window_bits=8", b"permessage-deflate"),
        (
            "permessage-deflate; server_no_context_takeover",
            b"permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            b"permessage-deflate; client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            b"permessage-deflate; server_max_window_bits=10",
        ),
        (
            'permessage-deflate; server_max_window_bits="11"',
            b"permessage-deflate; server_max_window_bits=11",
        ),
        ("permessage-deflate; server_max_window_bits=8", None),  # zlib cannot, so decline
        ("permessage-deflate; server_max_window_bits", None),  # value required
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("permessage-deflate; unknown_param", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("x-webkit-deflate-frame", None),
    ],
)
def test_single_offers(offer: str, response: bytes | None) -> None:
    accepted, ext = negotiate(offer)
    assert accepted == response
    assert ext.enabled() is (response is not None)


def test_first_acceptable_of_several_offers_wins() -> None:
    accepted, ext = negotiate(
        "permessage-deflate; server_max_window_bits=8, "
        "permessage-deflate; server_max_window_bits=12; client_no_context_takeover, "
        "permessage-deflate"
    )
    assert accepted == b"permessage-deflate; server_max_window_bits=12; client_no_context_takeover"
    assert ext.server_max_window_bits == 12
    assert ext.client_no_context_takeover


def test_a_declined_offer_leaves_no_setting_behind() -> None:
    # The first offer names a window, then fails on an unknown parameter; the plain offer
    # accepted after it must compress with the full window.
    accepted, ext = negotiate(
        "permessage-deflate; server_max_window_bits=9; x_unknown, permessage-deflate"
    )
    assert accepted == b"permessage-deflate"
    assert ext.server_max_window_bits == 15


def test_parse_offer() -> None:
    assert parse_offer('permessage-deflate; a; b=1; c="2"') == {"a": None, "b": "1", "c": "2"}
    assert parse_offer("permessage-deflate;;") is None


def pair(offer: ClientDeflate, max_size: int = 1 << 20) -> tuple[Connection, WebSocketProtocol]:
    """A wsproto client and our server protocol that agreed on ``offer``."""
    client_offer = offer.offer()
    header = "permessage-deflate" + ("; " + client_offer if isinstance(client_offer, str) else "")
    accepted, ext = negotiate(header, max_size)
    assert accepted is not None
    offer.finalize(accepted.decode())
    client = Connection(ConnectionType.CLIENT, [offer])
    server = WebSocketProtocol(max_message_size=max_size, extensions=[ext])
    return client, server


def events(server: WebSocketProtocol) -> list[object]:
    out = []
    while (event := server.next_event()) is not None:
        out.append(event)
        if isinstance(event, ProtocolFailure):
            break
    return out


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"client_no_context_takeover": True},
        {"server_no_context_takeover": True},
        {"client_max_window_bits": 9},
        {"server_max_window_bits": 9},
        {"client_max_window_bits": 15, "server_max_window_bits": 15},
        {
            "client_no_context_takeover": True,
            "server_no_context_takeover": True,
            "client_max_window_bits": 10,
            "server_max_window_bits": 10,
        },
    ],
)
def test_round_trips_with_parameter_combinations(params: dict[str, object]) -> None:
    client, server = pair(ClientDeflate(**params))  # type: ignore[arg-type]
    messages: list[str | bytes] = [
        "short",
        "repetitive " * 500,
        bytes(range(256)) * 40,
        "",
        "repetitive " * 500,  # context takeover (or not) across messages
    ]
    for message in messages:
        event = (
            TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        )
        server.receive_data(client.send(event))
        assert events(server) == [message]
        client.receive_data(server.send(message))
        [echoed] = list(client.events())
        assert echoed.data == message  # type: ignore[attr-defined]


def test_small_messages_are_sent_uncompressed_and_large_ones_compressed() -> None:
    _client, server = pair(ClientDeflate())
    small = server.send(b"x" * (MIN_COMPRESS_SIZE - 1))
    large = server.send(b"x" * 10_000)
    assert small[0] & 0x40 == 0  # RSV1 clear
    assert large[0] & 0x40 and len(large) < 100


def test_fragmented_compressed_message_with_interleaved_ping() -> None:
    _client, server = pair(ClientDeflate())
    payload = ("fragmented and compressed " * 200).encode()
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    body = body[:-4]
    half = len(body) // 2
    from trio_asgi.testing import build_frame

    server.receive_data(
        build_frame(0x2, body[:half], fin=False, rsv=4)
        + build_frame(0x9, b"ping in between")
        + build_frame(0x0, body[half:], fin=True)
    )
    out = events(server)
    assert out[0].payload == b"ping in between"  # type: ignore[union-attr]
    assert out[1] == payload


def test_decompression_bomb_is_stopped_at_the_limit() -> None:
    client, server = pair(ClientDeflate(), max_size=1 << 20)
    bomb = client.send(BytesMessage(data=b"\x00" * (50 << 20)))  # 50 MiB of zeros
    assert len(bomb) < 60_000
    server.receive_data(bomb)
    [failure] = events(server)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1009


def test_limit_is_inclusive_for_compressed_messages() -> None:
    client, server = pair(ClientDeflate(), max_size=5000)
    server.receive_data(client.send(BytesMessage(data=b"a" * 5000)))
    assert events(server) == [b"a" * 5000]
    server.receive_data(client.send(BytesMessage(data=b"a" * 5001)))
    [failure] = events(server)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1009


def test_corrupt_compressed_data_is_1007() -> None:
    from trio_asgi.testing import build_frame

    _, server = pair(ClientDeflate())
    server.receive_data(build_frame(0x2, b"\xff\xff\xff\xff garbage", rsv=4))
    [failure] = events(server)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1007


def test_rsv1_on_control_or_continuation_frame_is_a_protocol_error() -> None:
    from trio_asgi.testing import build_frame

    _, server = pair(ClientDeflate())
    server.receive_data(build_frame(0x9, b"", rsv=4))
    [failure] = events(server)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1002
