"""permessage-deflate (RFC 7692) for the server side, as a wsproto ``Extension``.

wsproto ships an implementation, but as a server we need three things it does not do:

- **bounded inflation**: wsproto inflates each frame without a limit, so a few kilobytes of
  compressed zeros become gigabytes in memory before any size check could run. Here the
  inflated size of a message is counted *while* inflating and stops at the message limit.
- **offer negotiation**: pick the first acceptable offer of several, and decline offers with
  unknown, duplicated or out-of-range parameters (RFC 7692 5.1, 7.1).
- **small memory per connection**: zlib's defaults cost ~256 KiB per compressor; we compress
  with a 4 KiB window and memLevel 5 (compressing with a smaller window than the peer allows
  is always valid), create the zlib objects lazily, and never compress tiny messages.
"""

from __future__ import annotations

import sys
import zlib
from typing import Final

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

_TAIL: Final = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: removed by the sender, added back here
# Our compressor's window (2**12 = 4 KiB) and memory level: ~32 KiB per connection instead
# of zlib's default ~256 KiB, for a slightly worse ratio.
COMPRESS_WINDOW_BITS: Final = 12
COMPRESS_MEM_LEVEL: Final = 5
COMPRESS_LEVEL: Final = 6
# Messages shorter than this are sent uncompressed (allowed per message, RFC 7692 6):
# deflate's framing would make them longer and costs CPU for nothing.
MIN_COMPRESS_SIZE: Final = 128

_FLAG_PARAMS: Final = frozenset({"server_no_context_takeover", "client_no_context_takeover"})


def parse_offer(offer: str) -> dict[str, str | None] | None:
    """Parameters of one offer (``name; p1; p2=v``), or ``None`` if malformed/duplicated."""
    parts = [part.strip() for part in offer.split(";")]
    params: dict[str, str | None] = {}
    for part in parts[1:]:
        if not part:
            return None
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if key in params:
            return None  # RFC 7692 7: a parameter may appear once
        params[key] = value.strip().strip('"') if sep else None
    return params


def _window_bits(value: str | None) -> int | None:
    if value is None or not value.isdigit() or value != str(int(value)):
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


class PerMessageDeflate(Extension):
    """Server-side permessage-deflate with a hard limit on inflated message size."""

    name = "permessage-deflate"

    def __init__(self, max_message_size: int) -> None:
        self._max_size = max_message_size
        self._enabled = False
        self.server_no_context_takeover = False
        self.client_no_context_takeover = False
        self.server_max_window_bits = 15  # what the peer allows us
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._inbound_compressed: bool | None = None  # this message has RSV1 set
        self._in_control_frame = False
        # A frame of the current message is complete and more are due. (wsproto may ask
        # about one frame's header twice, when its masking key came in a later read.)
        self._fragmented = False
        self._inflated = 0  # bytes inflated for the current message

    def enabled(self) -> bool:
        return self._enabled

    def offer(self) -> bool | str:  # pragma: no cover - we never act as a client
        return True

    def finalize(self, offer: str) -> None:  # pragma: no cover - client side only
        raise NotImplementedError("server-side extension")

    def accept(self, offer: str) -> bool | str | None:
        """Accept the first acceptable offer; decline the rest (and malformed ones)."""
        if self._enabled:
            return None
        params = parse_offer(offer)
        if params is None:
            return None
        response = []
        window_bits = 15
        for key, value in params.items():
            if key in _FLAG_PARAMS:
                if value is not None:
                    return None
                response.append(key)
            elif key == "server_max_window_bits":
                bits = _window_bits(value)
                # zlib cannot produce raw deflate with an 8-bit window: decline such offers.
                if bits is None or bits < 9:
                    return None
                window_bits = bits
                response.append(f"server_max_window_bits={bits}")
            elif key == "client_max_window_bits":
                # A hint that the client may limit its window; our 15-bit inflater reads any.
                if value is not None and _window_bits(value) is None:
                    return None
            else:
                return None  # unknown parameter
        self.server_max_window_bits = window_bits  # (only now: a declined offer sets nothing)
        self.server_no_context_takeover = "server_no_context_takeover" in params
        self.client_no_context_takeover = "client_no_context_takeover" in params
        self._enabled = True
        return "; ".join(response)

    # -- inbound -----------------------------------------------------------------------

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR  # RSV1 only on the first frame of a message
        if self._fragmented and (opcode is Opcode.TEXT or opcode is Opcode.BINARY):
            # A new message inside an unfinished one (RFC 6455 5.4): said here, before its
            # bytes reach the open message's inflater and fail there as a 1007.
            return CloseReason.PROTOCOL_ERROR
        # Control frames may sit between the fragments of a message: they must not touch
        # the message's state (wsproto's own extension resets it there).
        self._in_control_frame = opcode.iscontrol()
        if self._inbound_compressed is None and not self._in_control_frame:
            self._inbound_compressed = rsv.rsv1
            self._inflated = 0
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if self._in_control_frame or not self._inbound_compressed:
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if self._in_control_frame:
            return None
        self._fragmented = not fin
        if not fin:
            return None
        compressed, self._inbound_compressed = self._inbound_compressed, None
        if not compressed:
            return None
        result = self._inflate(_TAIL)
        decompressor = self._decompressor
        # A sender may end each message with a final block instead of a sync flush (RFC 7692
        # 7.2.3.4): its DEFLATE stream is then over and the next message starts a new one.
        if self.client_no_context_takeover or (decompressor is not None and decompressor.eof):
            self._decompressor = None
        return result

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        if self._decompressor is None:
            # 15 bits reads anything the client compressed, whatever window it chose.
            self._decompressor = zlib.decompressobj(-15)
        room = self._max_size - self._inflated
        try:
            # One byte past the limit tells "exactly at the limit" from "over it".
            # (zlib takes a C ssize_t: a limit like sys.maxsize would overflow it.)
            out = self._decompressor.decompress(data, min(room + 1, sys.maxsize))
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._max_size or self._decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    # -- outbound ----------------------------------------------------------------------

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        # We send every message as a single frame, so the decision is per message.
        if opcode not in (Opcode.TEXT, Opcode.BINARY) or len(data) < MIN_COMPRESS_SIZE:
            return rsv, data
        if self._compressor is None:
            bits = min(COMPRESS_WINDOW_BITS, self.server_max_window_bits)
            self._compressor = zlib.compressobj(
                COMPRESS_LEVEL, zlib.DEFLATED, -bits, COMPRESS_MEM_LEVEL
            )
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if self.server_no_context_takeover:
            self._compressor = None
        return RsvBits(True, rsv.rsv2, rsv.rsv3), out[:-4]
