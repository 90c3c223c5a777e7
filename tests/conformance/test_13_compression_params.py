"""Autobahn 13.x: permessage-deflate negotiation (RFC 7692 section 7) and its promises.

Negotiation: every parameter a client may offer, alone and combined; malformed or unknown
parameters decline that offer; of several offers the first acceptable one wins. Then the
agreed parameters are held to: the server's messages inflate with exactly the window it
agreed to and, under ``server_no_context_takeover``, with no memory of earlier messages;
the server inflates whatever window and context use the client was allowed.
"""

from __future__ import annotations

import itertools
import random

import pytest
from trio.testing import MockClock

from .wire import BINARY, CLOSE, TEXT, Frame, Server, close_payload, frame, parse_extension, serve

PMD = "permessage-deflate"
Params = dict[str, str | None]


def expected_answer(
    server_bits: int | None, server_reset: bool, client_bits: str | None, client_reset: bool
) -> Params | None:
    """The server's answer to one offer, per RFC 7692 and the server's stated choices
    (echo both *_no_context_takeover flags, never restrict the client's window, decline a
    server window of 8 bits, which zlib cannot produce)."""
    if server_bits == 8:
        return None
    answer: Params = {}
    if server_reset:
        answer["server_no_context_takeover"] = None
    if client_reset:
        answer["client_no_context_takeover"] = None
    if server_bits is not None:
        answer["server_max_window_bits"] = str(server_bits)
    return answer


def offer(
    server_bits: int | None, server_reset: bool, client_bits: str | None, client_reset: bool
) -> str:
    params = [PMD]
    if server_reset:
        params.append("server_no_context_takeover")
    if client_reset:
        params.append("client_no_context_takeover")
    if server_bits is not None:
        params.append(f"server_max_window_bits={server_bits}")
    if client_bits == "":
        params.append("client_max_window_bits")
    elif client_bits is not None:
        params.append(f"client_max_window_bits={client_bits}")
    return "; ".join(params)


async def answer_to(server: Server, offers: list[str]) -> Params | None:
    """The parameters the server accepted, or ``None`` if it declined every offer."""
    stream, status, headers, _ = await server.handshake(extensions=offers)
    assert status.startswith(b"HTTP/1.1 101 "), status
    agreed = [value.decode() for name, value in headers if name == b"sec-websocket-extensions"]
    await stream.aclose()
    if not agreed:
        return None
    assert len(agreed) == 1
    name, params = parse_extension(agreed[0])
    assert name == PMD
    return params


async def test_13_every_combination_of_parameters(autojump_clock: MockClock) -> None:
    """server_max_window_bits absent or 8-15, client_max_window_bits absent, bare or 8-15,
    and both no_context_takeover flags on or off: 576 offers."""
    combinations = itertools.product(
        [None, *range(8, 16)],
        [False, True],
        [None, "", *map(str, range(8, 16))],
        [False, True],
    )
    async with serve() as server:
        for combination in combinations:
            answer = await answer_to(server, [offer(*combination)])
            assert answer == expected_answer(*combination), offer(*combination)


@pytest.mark.parametrize(
    "params",
    [
        "server_max_window_bits",  # a value is required
        "server_max_window_bits=7",
        "server_max_window_bits=16",
        "server_max_window_bits=0",
        "server_max_window_bits=010",  # no leading zeros
        "server_max_window_bits=ten",
        "server_max_window_bits=-9",
        "server_max_window_bits=",
        "client_max_window_bits=7",
        "client_max_window_bits=16",
        "client_max_window_bits=x",
        "server_no_context_takeover=1",  # flags take no value
        "client_no_context_takeover=true",
        "server_no_context_takeover; server_no_context_takeover",  # duplicates
        "client_max_window_bits; client_max_window_bits=10",
        "server_max_window_bits=10; server_max_window_bits=10",
        "x-unknown",
        "mux=1",
        "",  # an empty parameter after the ';'
    ],
)
async def test_13_malformed_or_unknown_parameters_decline_the_offer(
    autojump_clock: MockClock, params: str
) -> None:
    async with serve() as server:
        assert await answer_to(server, [f"{PMD}; {params}"]) is None
        # ... and the connection works without compression; RSV1 is then a protocol error.
        peer = await server.connect(extensions=[f"{PMD}; {params}"])
        await peer.send(frame(TEXT, b"plain"))
        assert await peer.receive() == Frame(TEXT, b"plain")
        await peer.send(frame(TEXT, b"\x02\x00", rsv=4))
        await peer.expect_close(1002)


@pytest.mark.parametrize(
    ("offers", "answer"),
    [
        ([f'{PMD}; server_max_window_bits="10"'], {"server_max_window_bits": "10"}),
        ([f'{PMD}; client_max_window_bits="9"'], {}),
        ([f"{PMD} ;  server_no_context_takeover  "], {"server_no_context_takeover": None}),
        (["x-webkit-deflate-frame"], None),
        (["x-webkit-deflate-frame", PMD], {}),
        # several offers: the first acceptable one wins, even if a later one is "better"
        ([f"{PMD}; server_max_window_bits=10, {PMD}"], {"server_max_window_bits": "10"}),
        ([f"{PMD}, {PMD}; server_max_window_bits=10"], {}),
        (
            [f"{PMD}; server_max_window_bits=8, {PMD}; server_max_window_bits=12"],
            {"server_max_window_bits": "12"},
        ),
        ([f"{PMD}; foo, {PMD}; client_no_context_takeover"], {"client_no_context_takeover": None}),
        ([f"{PMD}; foo, {PMD}; server_max_window_bits=8"], None),
        # offers spread over several header lines count in order
        (
            [f"{PMD}; server_max_window_bits=8", f"{PMD}; server_max_window_bits=11"],
            {"server_max_window_bits": "11"},
        ),
        # Autobahn 13.7's offer list
        (
            [
                f"{PMD}; client_no_context_takeover; client_max_window_bits; "
                "server_no_context_takeover; server_max_window_bits=9",
                f"{PMD}; client_no_context_takeover; client_max_window_bits; "
                "server_no_context_takeover",
                f"{PMD}; client_no_context_takeover; client_max_window_bits",
            ],
            {
                "client_no_context_takeover": None,
                "server_no_context_takeover": None,
                "server_max_window_bits": "9",
            },
        ),
    ],
)
async def test_13_offer_lists(
    autojump_clock: MockClock, offers: list[str], answer: Params | None
) -> None:
    async with serve() as server:
        assert await answer_to(server, offers) == answer


async def test_13_compression_can_be_switched_off(autojump_clock: MockClock) -> None:
    async with serve(ws_per_message_deflate=False) as server:
        assert await answer_to(server, [PMD]) is None


def window_probe(seed: int) -> list[bytes]:
    """Messages that a compressor with a big window (or a memory of earlier messages)
    compresses with back-references a small window (or a fresh inflater) cannot follow."""
    rng = random.Random(seed)
    block = rng.randbytes(300)
    short = rng.randbytes(100)  # zlib reaches back at most 2**bits - 262 bytes: 250 for 9 bits
    return [
        block + rng.randbytes(600) + block,  # distance 900: beyond 9 bits
        block + rng.randbytes(5000) + block + rng.randbytes(30000) + block,  # 5 and 30 KiB
        block * 10,  # the same as before: only a memory of earlier messages helps
        block * 10,
        short * 20,
        short * 20,
    ]


@pytest.mark.parametrize("server_reset", [False, True], ids=["context", "no-context"])
@pytest.mark.parametrize("server_bits", [None, *range(9, 16)])
async def test_13_server_keeps_its_window_and_context_promises(
    autojump_clock: MockClock, server_bits: int | None, server_reset: bool
) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[offer(server_bits, server_reset, "", False)])
        assert peer.deflate is not None
        assert peer.deflate.server_bits == (server_bits or 15)
        assert peer.deflate.server_resets == server_reset
        for payload in window_probe(seed=server_bits or 0):
            await peer.send_message(BINARY, payload)
            assert await peer.receive() == Frame(BINARY, payload)
        await peer.close()


async def test_13_server_uses_context_takeover_when_allowed(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[PMD])
        payload = random.Random(1).randbytes(1000)
        sizes = []
        for _ in range(2):
            await peer.send_message(BINARY, payload)
            echo = await peer.read_frame()
            assert echo is not None and echo.rsv == 4
            assert peer.deflate is not None and peer.deflate.decompress(echo.payload) == payload
            sizes.append(len(echo.payload))
        assert sizes[1] < sizes[0] // 10  # the second one refers back to the first
        await peer.close()


@pytest.mark.parametrize("client_reset", [False, True], ids=["context", "no-context"])
@pytest.mark.parametrize("client_bits", [None, "", "8", "9", "12", "15"])
async def test_13_server_inflates_what_the_client_may_send(
    autojump_clock: MockClock, client_bits: str | None, client_reset: bool
) -> None:
    """The client compresses with the largest window it offered to limit itself to (or 15),
    keeping its context across messages unless it offered not to."""
    bits = int(client_bits) if client_bits else 15
    async with serve() as server:
        peer = await server.connect(
            extensions=[offer(None, False, client_bits, client_reset)], client_bits=bits
        )
        assert peer.deflate is not None
        assert peer.deflate.client_resets == client_reset
        for payload in window_probe(seed=bits):
            await peer.send_message(BINARY, payload)
            assert await peer.receive() == Frame(BINARY, payload)
        await peer.close()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xff\xff\xff", 1007),  # not a deflate stream
        (b"\x07\x00", 1007),  # reserved block type 3
    ],
)
async def test_13_corrupt_compressed_data(
    autojump_clock: MockClock, data: bytes, code: int
) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[PMD])
        await peer.send(frame(BINARY, data, rsv=4))
        await peer.expect_close(code)


async def test_13_compressed_text_must_inflate_to_utf8(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[PMD])
        assert peer.deflate is not None
        await peer.send(frame(TEXT, peer.deflate.compress(b"valid, then \xc0\xaf"), rsv=4))
        await peer.expect_close(1007)


async def test_13_inflated_size_counts_against_the_limit(autojump_clock: MockClock) -> None:
    limit = 64 << 10
    async with serve(ws_max_size=limit) as server:
        peer = await server.connect(extensions=[PMD])
        await peer.send_message(BINARY, bytes(limit))  # 64 KiB of zeros: ~70 bytes on the wire
        assert await peer.receive() == Frame(BINARY, bytes(limit))
        await peer.send_message(BINARY, bytes(limit + 1))
        await peer.expect_close(1009)
        assert (await server.app.disconnect())[0] == 1009


async def test_13_close_and_control_frames_are_never_compressed(autojump_clock: MockClock) -> None:
    async with serve() as server:
        peer = await server.connect(extensions=[PMD])
        await peer.send(frame(0x9, b"x" * 125))
        pong = await peer.read_frame()
        assert pong == Frame(0xA, b"x" * 125)  # rsv 0 (checked by the reader as well)
        await peer.send(frame(CLOSE, close_payload(1000, b"r" * 100)))
        assert await peer.read_frame() == Frame(CLOSE, close_payload(1000, b"r" * 100))
