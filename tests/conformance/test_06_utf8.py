"""Autobahn 6.x: UTF-8 in text messages. Valid text is echoed; invalid text fails with 1007,
and fails *fast*: as soon as the byte that makes it invalid arrives, even if the rest of the
frame or message never does.

The expectations come from ``utf8_failure`` below, an independent reading of RFC 3629's
table of well-formed byte sequences (the server relies on Python's codec via wsproto).
"""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from .wire import CONTINUATION, TEXT, Text, frame, serve

KOSME = bytes.fromhex("cebae1bdb9cf83cebcceb5")  # "κόσμε", the stress test's sample word

# (first byte range, allowed range of the second byte, number of continuation bytes)
_LEADS = [
    (0xC2, 0xDF, 0x80, 0xBF, 1),
    (0xE0, 0xE0, 0xA0, 0xBF, 2),  # no overlongs
    (0xE1, 0xEC, 0x80, 0xBF, 2),
    (0xED, 0xED, 0x80, 0x9F, 2),  # no surrogates
    (0xEE, 0xEF, 0x80, 0xBF, 2),
    (0xF0, 0xF0, 0x90, 0xBF, 3),  # no overlongs
    (0xF1, 0xF3, 0x80, 0xBF, 3),
    (0xF4, 0xF4, 0x80, 0x8F, 3),  # nothing above U+10FFFF
]


def utf8_failure(data: bytes) -> int | None:
    """Where ``data`` stops being UTF-8 (RFC 3629 section 4), or ``None`` if it is valid.

    The answer is the index of the first byte that no valid text could have there, or
    ``len(data)`` when the data is only cut short (a prefix of valid text).
    """
    i = 0
    while i < len(data):
        lead = data[i]
        if lead < 0x80:
            i += 1
            continue
        rule = next((r for r in _LEADS if r[0] <= lead <= r[1]), None)
        if rule is None:
            return i
        _, _, low, high, count = rule
        for k in range(1, count + 1):
            if i + k == len(data):
                return len(data)
            lo, hi = (low, high) if k == 1 else (0x80, 0xBF)
            if not lo <= data[i + k] <= hi:
                return i + k
        i += count + 1
    return None


def h(text: str) -> bytes:
    return bytes.fromhex(text)


VALID = {
    "6.5.1 kosme": KOSME,
    "6.5.2 sigma": h("cf83"),
    "6.5.3 kosme+ascii": KOSME + b" and more",
    "6.6 kosme prefix 2": KOSME[:2],
    "6.6 kosme prefix 5": KOSME[:5],
    "6.6 kosme prefix 7": KOSME[:7],
    "6.6 kosme prefix 9": KOSME[:9],
    "6.7.1 U+0000": h("00"),
    "6.7.2 U+0080": h("c280"),
    "6.7.3 U+0800": h("e0a080"),
    "6.7.4 U+10000": h("f0908080"),
    "6.9.1 U+007F": h("7f"),
    "6.9.2 U+07FF": h("dfbf"),
    "6.9.3 U+FFFF": h("efbfbf"),
    "6.9.4 U+10FFFF": h("f48fbfbf"),
    "6.11.1 U+D7FF": h("ed9fbf"),
    "6.11.2 U+E000": h("ee8080"),
    "6.11.3 U+FFFD": h("efbfbd"),
    "6.22 U+FFFE": h("efbfbe"),
    "6.22 U+1FFFE": h("f09fbfbe"),
    "6.22 U+10FFFE": h("f48fbfbe"),
    "6.22 U+FDD0": h("efb790"),
    "6.22 U+FDEF": h("efb7af"),
    "6.23 U+FFF9": h("efbfb9"),
    "6.23 U+FEFF": h("efbbbf"),
}

INVALID = {
    "6.3.1 kosme+surrogate": KOSME + h("eda080") + b"edited",
    "6.6 kosme prefix 1": KOSME[:1],
    "6.6 kosme prefix 4": KOSME[:4],
    "6.6 kosme prefix 10": KOSME[:10],
    "6.8.1 5 bytes": h("f888808080"),
    "6.8.2 6 bytes": h("fc8480808080"),
    "6.10.1 U+1FFFFF": h("f7bfbfbf"),
    "6.10.2 5 bytes max": h("fbbfbfbfbf"),
    "6.10.3 6 bytes max": h("fdbfbfbfbfbf"),
    "6.11.5 U+110000": h("f4908080"),
    "6.12.1 lone 80": h("80"),
    "6.12.2 lone bf": h("bf"),
    "6.12.3 80bf": h("80bf"),
    "6.12.8 all continuations": bytes(range(0x80, 0xC0)),
    "6.13.1 c0-df lonely": b"".join(bytes([b, 0x20]) for b in range(0xC0, 0xE0)),
    "6.13.2 e0-ef lonely": b"".join(bytes([b, 0x20]) for b in range(0xE0, 0xF0)),
    "6.13.3 f0-f7 lonely": b"".join(bytes([b, 0x20]) for b in range(0xF0, 0xF8)),
    "6.13.5 fc-fd lonely": h("fc20fd20"),
    "6.14.1 c0": h("c0"),
    "6.14.2 e080": h("e080"),
    "6.14.3 f08080": h("f08080"),
    "6.14.6 df": h("df"),
    "6.14.7 efbf": h("efbf"),
    "6.14.8 f7bfbf": h("f7bfbf"),
    "6.14.11 f48fbf": h("f48fbf"),
    "6.15.1 concatenated": h("c0e080f08080f8808080fc80808080dfefbff7bfbffbbfbfbffdbfbfbfbf"),
    "6.16.1 fe": h("fe"),
    "6.16.2 ff": h("ff"),
    "6.16.3 fefeffff": h("fefeffff"),
    "6.17.1 overlong /": h("c0af"),
    "6.17.2 overlong / 3": h("e080af"),
    "6.17.3 overlong / 4": h("f08080af"),
    "6.17.4 overlong / 5": h("f8808080af"),
    "6.18.1 max overlong 2": h("c1bf"),
    "6.18.2 max overlong 3": h("e09fbf"),
    "6.18.3 max overlong 4": h("f08fbfbf"),
    "6.19.1 overlong NUL": h("c080"),
    "6.19.2 overlong NUL 3": h("e08080"),
    "6.19.3 overlong NUL 4": h("f0808080"),
    "6.20.1 U+D800": h("eda080"),
    "6.20.4 U+DBFF": h("edafbf"),
    "6.20.5 U+DC00": h("edb080"),
    "6.20.7 U+DFFF": h("edbfbf"),
    "6.21.1 U+D800 U+DC00": h("eda080edb080"),
    "6.21.8 U+DBFF U+DFFF": h("edafbfedbfbf"),
    "6.x valid then F5": b"valid text " + h("f5"),
}

# Invalid as soon as a byte arrives, as opposed to only at the end of the message.
FAILS_EARLY = {name: data for name, data in INVALID.items() if utf8_failure(data) != len(data)}
CUT_SHORT = {name: data for name, data in INVALID.items() if utf8_failure(data) == len(data)}

# CPython's UTF-8 decoder (which wsproto uses) flags a surrogate lead pair ED A0..BF only
# when the third byte arrives, one byte late: see test_surrogates_fail_on_their_second_byte.
SURROGATE_LATE = (
    "fail-fast misses UTF-16 surrogates: after ED A0..BF the server waits for a third byte "
    "(CPython's incremental UTF-8 decoder, used by wsproto, checks the surrogate range only "
    "once the sequence is complete)"
)


def ids_of(vectors: dict[str, bytes]) -> list[str]:
    return [name.replace(" ", "_") for name in vectors]


def test_reference_validator_agrees_with_strict_decoding() -> None:
    for data in [*VALID.values(), *INVALID.values()]:
        try:
            data.decode("utf-8")
            decodes = True
        except UnicodeDecodeError:
            decodes = False
        assert decodes == (utf8_failure(data) is None), data.hex()
    assert FAILS_EARLY and CUT_SHORT


def one_byte_frames(data: bytes) -> list[bytes]:
    if not data:
        return [frame(TEXT, b"")]
    return [
        frame(TEXT if i == 0 else CONTINUATION, data[i : i + 1], fin=i == len(data) - 1)
        for i in range(len(data))
    ]


@pytest.mark.parametrize("data", list(VALID.values()), ids=ids_of(VALID))
async def test_valid_text_is_echoed(autojump_clock: MockClock, data: bytes) -> None:
    """Whole, as one-byte fragments, and as one frame read one byte at a time."""
    async with serve() as server:
        peers = [await server.connect() for _ in range(3)]
        await peers[0].send(frame(TEXT, data))
        await peers[1].send(*one_byte_frames(data))
        peers[2].chop(1)
        await peers[2].send(frame(TEXT, data))
        for peer in peers:
            assert await peer.receive() == Text(data)
            await peer.close()


@pytest.mark.parametrize("data", list(INVALID.values()), ids=ids_of(INVALID))
async def test_invalid_text_fails_with_1007(autojump_clock: MockClock, data: bytes) -> None:
    async with serve() as server:
        peers = [await server.connect() for _ in range(3)]
        await peers[0].send(frame(TEXT, data))
        await peers[1].send(*one_byte_frames(data))
        peers[2].chop(1)
        await peers[2].send(frame(TEXT, data))
        for peer in peers:
            await peer.expect_close(1007)
        assert server.app.received == 0
        assert [code for code, _ in server.app.disconnects] == [1007] * 3


def _fail_fast_params() -> list[object]:
    params = []
    for name, data in FAILS_EARLY.items():
        bad = utf8_failure(data)
        assert bad is not None
        late = data[bad - 1] == 0xED and 0xA0 <= data[bad] <= 0xBF
        marks = [pytest.mark.xfail(strict=True, reason=SURROGATE_LATE)] if late else []
        params.append(pytest.param(data, bad, id=name.replace(" ", "_"), marks=marks))
    return params


@pytest.mark.parametrize(("data", "bad"), _fail_fast_params())
@pytest.mark.parametrize("shape", ["one-frame", "fragments"])
async def test_invalid_text_fails_fast(
    autojump_clock: MockClock, data: bytes, bad: int, shape: str
) -> None:
    """Only the bytes up to the offending one are sent; the rest never comes (6.4.x)."""
    async with serve() as server:
        peer = await server.connect()
        sent = data[: bad + 1]
        if shape == "one-frame":
            # The frame announces 100 more bytes than will ever arrive.
            padded = data + b"x" * 100
            whole = frame(TEXT, padded)
            await peer.send(whole[: len(whole) - len(padded) + len(sent)])
        else:
            # A valid first fragment, then the rest in a fragment that is not final.
            await peer.send(
                frame(TEXT, sent[:bad], fin=False), frame(CONTINUATION, sent[bad:], fin=False)
            )
        await peer.expect_close(1007)


@pytest.mark.parametrize("data", list(CUT_SHORT.values()), ids=ids_of(CUT_SHORT))
async def test_text_cut_short_is_accepted_until_the_message_ends(
    autojump_clock: MockClock, data: bytes
) -> None:
    """An incomplete sequence may still be completed by the next fragment: no early
    failure; the final (empty) fragment then makes it invalid."""
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(TEXT, data, fin=False))
        await peer.expect_nothing()  # Autobahn's first wait times out
        await peer.send(frame(CONTINUATION, b""))
        await peer.expect_close(1007)


@pytest.mark.parametrize(
    ("first", "second", "third"),
    [
        (KOSME, h("f490"), h("8080") + b"edited"),  # 6.4.1: the 2nd frame makes it invalid
        (KOSME + h("f4"), h("90"), h("8080") + b"edited"),  # 6.4.2: just the offending byte
    ],
    ids=["6.4.1", "6.4.2"],
)
async def test_6_4_fragments_with_pauses(
    autojump_clock: MockClock, first: bytes, second: bytes, third: bytes
) -> None:
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(TEXT, first, fin=False))
        await peer.expect_nothing()  # Autobahn's first wait times out
        await peer.send(frame(CONTINUATION, second, fin=False))
        await peer.expect_close(1007)  # before the third frame was even sent
        await peer.send(frame(CONTINUATION, third))


@pytest.mark.parametrize("split", [len(KOSME), len(KOSME) + 1], ids=["6.4.3", "6.4.4"])
async def test_6_4_one_frame_in_chops_with_pauses(autojump_clock: MockClock, split: int) -> None:
    data = KOSME + h("f4908080") + b"edited"
    whole = frame(TEXT, data)
    head = len(whole) - len(data) + split  # header and mask key, then the valid part
    async with serve() as server:
        peer = await server.connect()
        await peer.send(whole[:head])
        await peer.expect_nothing()  # Autobahn's first wait times out
        await peer.send(whole[head : head + (4 if split == len(KOSME) else 1)])
        await peer.expect_close(1007)


async def test_6_2_3_valid_text_split_inside_code_points(autojump_clock: MockClock) -> None:
    data = "Hello-µ@ßöäüàá-UTF-8!!".encode()
    async with serve() as server:
        peer = await server.connect()
        await peer.send(frame(TEXT, data[:7], fin=False), frame(CONTINUATION, data[7:]))
        assert await peer.receive() == Text(data)
        await peer.close()
