"""TLS: the server's ``SSLContext``, the handshake under a deadline, the ASGI ``tls`` extension.

The handshake runs in each connection's own task (``Server._handle``), never in an accept
loop, so a client that stalls or speaks garbage costs only its own task and descriptor.
Handshake failures are the client's business: they are logged at debug level.

The ``tls`` scope extension (asgiref ``specs/tls.rst``, version 0.2) is computed once per
connection after the handshake. What Python's ``ssl`` module can tell us decides how much of
it is exact:

- ``client_cert_chain``: Python 3.13+ reports the chain the client sent; Python 3.11 and
  3.12 only the client's own certificate, so the list then holds just that one (the spec's
  "first certificate is the client certificate").
- ``client_cert_name``: RFC 4514, computed from the certificate's DER encoding here (Python
  only offers OpenSSL's long attribute names, which are not RFC 4514).
- ``client_cert_error`` is always ``None``: OpenSSL (through Python, which has no verify
  callback) fails the handshake of a client whose certificate does not verify, so no scope
  is ever built for one.
- ``server_cert`` is the first certificate of ``--certfile``; ``None`` with an ``ssl_context``
  from Python, whose certificates Python cannot read back.
"""

from __future__ import annotations

import logging
import re
import ssl
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("trio_asgi.error")

# The wire values of the protocol versions (RFC 8446 and its predecessors), which is what
# the extension's ``tls_version`` reports; ``SSLObject.version()`` only gives names.
TLS_VERSIONS: Final = {
    "TLSv1": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}
ALPN_PROTOCOLS: Final = ["http/1.1"]
# A plain-HTTP request on a TLS port gets a short plain-text answer (what nginx does) instead
# of a connection closed without a word. OpenSSL itself recognises the request (its
# HTTP_REQUEST error, for GET/POST/HEAD/PUT), so the check costs nothing.
PLAIN_HTTP_ANSWER: Final = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 46\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"This port speaks HTTPS: use an https:// URL.\r\n"
)
# Bounds for that answer: writing it, then reading what the client still sends so that
# closing does not reset the connection before the client read the answer.
PLAIN_HTTP_TIMEOUT: Final = 1.0
PLAIN_HTTP_DRAIN_LIMIT: Final = 64 * 1024

_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """What every TLS connection of one server shares."""

    context: ssl.SSLContext
    server_cert: str | None  # PEM, for the tls extension


def load_server_tls(config: Config) -> ServerTLS | None:
    """The server's TLS setup from ``config``; ``None`` when TLS is off.

    Raises ``ConfigError`` (a one-line message) when a file cannot be loaded, the key does
    not match the certificate or its password is wrong, or no cipher matches ``ciphers``.
    """
    if config.ssl_context is not None:
        return ServerTLS(config.ssl_context, None)
    certfile = config.certfile
    if certfile is None:
        return None
    # PROTOCOL_TLS_SERVER, not create_default_context(CLIENT_AUTH): that one would trust
    # the system's CAs for client certificates, so any public certificate would pass mTLS.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Client-initiated renegotiation lets one client make us do handshake work on demand.
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    where = f"certfile {certfile!r}" + (f" / keyfile {config.keyfile!r}" if config.keyfile else "")
    try:
        # Without a password, a callable that refuses: OpenSSL would otherwise prompt for
        # one on the terminal and block the server's start.
        context.load_cert_chain(certfile, config.keyfile, config.keyfile_password or _no_password)
    except _PasswordNeeded:
        raise ConfigError(
            f"cannot load {where}: the key is encrypted; give keyfile_password"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load {where}: {_describe_load_error(exc)}") from None
    if config.ca_certs is not None:
        try:
            context.load_verify_locations(cafile=config.ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load ca_certs {config.ca_certs!r}: {_reason(exc)}") from None
    context.verify_mode = {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[config.cert_reqs]
    if config.ciphers is not None:
        try:
            context.set_ciphers(config.ciphers)
        except ssl.SSLError:
            raise ConfigError(f"no cipher matches ciphers {config.ciphers!r}") from None
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    return ServerTLS(context, _first_certificate(certfile))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


class _PasswordNeeded(Exception):
    pass


def _no_password() -> str:
    raise _PasswordNeeded


def _describe_load_error(exc: BaseException) -> str:
    # OpenSSL reports a wrong password and a file that is no PEM alike, as "PEM lib".
    if isinstance(exc, ssl.SSLError) and "PEM lib" in str(exc):
        return "cannot read the PEM data (wrong keyfile_password, or not a PEM file?)"
    return _reason(exc)


def _first_certificate(path: str) -> str | None:
    """The first certificate in a PEM file (the server's own, before any chain), re-encoded
    the way ``ssl`` encodes the client's so the two look alike."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    match = _PEM_CERTIFICATE.search(text)
    if match is None:
        return None
    try:
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(match.group()))
    except ValueError:
        return None


# -- the handshake ----------------------------------------------------------------------------


async def handshake(stream: trio.SSLStream[Any], seconds: float, peer: object) -> bool:
    """Complete the server side of the handshake within ``seconds``.

    Returns ``False`` (after logging why at debug level) if the client failed it, left or
    was too slow; the caller then closes the stream.
    """
    failed = plain_http = False
    with trio.move_on_after(seconds):
        try:
            await stream.do_handshake()
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            failed = True
            cause = exc.__cause__
            plain_http = isinstance(cause, ssl.SSLError) and cause.reason == "HTTP_REQUEST"
            if plain_http:
                log.debug("plain HTTP request from %s on a TLS port", peer)
            else:
                log.debug("TLS handshake with %s failed: %s", peer, _handshake_error(exc))
    if plain_http:
        await _answer_plain_http(stream.transport_stream)
    elif not failed:
        log.debug("TLS handshake with %s timed out after %gs", peer, seconds)
    return False


def _handshake_error(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLEOFError) or cause is None:
        return "the client closed the connection"
    if isinstance(cause, ssl.SSLError):
        return cause.reason or cause.strerror or str(cause)
    return str(cause) or type(cause).__name__


async def _answer_plain_http(transport: trio.abc.Stream) -> None:
    """Tell a plain-HTTP client, in plain HTTP, that it reached a TLS port."""
    with trio.move_on_after(PLAIN_HTTP_TIMEOUT):
        try:
            await transport.send_all(PLAIN_HTTP_ANSWER)
            if isinstance(transport, trio.abc.HalfCloseableStream):
                await transport.send_eof()
            drained = 0
            while drained < PLAIN_HTTP_DRAIN_LIMIT:
                data = await transport.receive_some(PLAIN_HTTP_DRAIN_LIMIT)
                if not data:
                    break
                drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


# -- the tls scope extension ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSDetails:
    """The ``tls`` extension of one connection (asgiref ``specs/tls.rst`` 0.2)."""

    server_cert: str | None
    client_cert_chain: tuple[str, ...]
    client_cert_name: str | None
    client_cert_error: str | None
    tls_version: int | None
    cipher_suite: int | None

    def scope_extension(self) -> dict[object, object]:
        """A fresh dict for one scope (the app may change it)."""
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": list(self.client_cert_chain),
            "client_cert_name": self.client_cert_name,
            "client_cert_error": self.client_cert_error,
            "tls_version": self.tls_version,
            "cipher_suite": self.cipher_suite,
        }


def tls_details(stream: trio.SSLStream[Any], server_cert: str | None) -> TLSDetails:
    """The extension's values for a stream whose handshake completed."""
    leaf = stream.getpeercert(binary_form=True)
    chain: list[bytes] = []
    if leaf:
        chain = _sent_chain(stream, leaf)
    cipher = stream.cipher()
    return TLSDetails(
        server_cert=server_cert,
        client_cert_chain=tuple(ssl.DER_cert_to_PEM_cert(der) for der in chain),
        client_cert_name=_subject_name(leaf) if leaf else None,
        client_cert_error=None,
        tls_version=TLS_VERSIONS.get(stream.version() or ""),
        cipher_suite=cipher_suite_id(stream.context, cipher[0]) if cipher else None,
    )


def _sent_chain(stream: trio.SSLStream[Any], leaf: bytes) -> list[bytes]:
    """The certificates the client sent, its own first (DER)."""
    if sys.version_info >= (3, 13):  # pragma: no cover - 3.13+; chain_with_leaf is tested
        ssl_object = getattr(stream, "_ssl_object", None)
        get_chain = getattr(ssl_object, "get_unverified_chain", None)
        if get_chain is not None:
            return chain_with_leaf(get_chain(), leaf)
    return [leaf]


def chain_with_leaf(chain: list[bytes] | None, leaf: bytes) -> list[bytes]:
    """``chain`` with the client's certificate first. OpenSSL leaves the peer's own
    certificate out of a server's view of the chain; newer Pythons put it back."""
    certificates = [bytes(der) for der in chain or ()]
    if not certificates or certificates[0] != leaf:
        certificates.insert(0, leaf)
    return certificates


_cipher_ids: weakref.WeakKeyDictionary[ssl.SSLContext, dict[str, int]] = weakref.WeakKeyDictionary()


def cipher_suite_id(context: ssl.SSLContext, name: str) -> int | None:
    """The IANA number of an OpenSSL cipher name (``TLS_AES_128_GCM_SHA256`` → 0x1301).

    ``SSLContext.get_ciphers()`` reports OpenSSL's id for each cipher, whose low 16 bits are
    the IANA code point; the negotiated cipher is always among the context's.
    """
    ids = _cipher_ids.get(context)
    if ids is None:
        ids = {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}
        _cipher_ids[context] = ids
    return ids.get(name)


def _subject_name(der: bytes) -> str | None:
    try:
        return rfc4514_subject(der)
    except (ValueError, IndexError):  # OpenSSL parsed it, so this should not happen
        log.debug("could not read the subject of a client certificate", exc_info=True)
        return None


# -- RFC 4514 names from DER ------------------------------------------------------------------

# RFC 4514 section 3: the attribute types with a short name; any other is written as its
# dotted OID with the value as "#" and the hex of its DER encoding (section 2.4).
_SHORT_NAMES: Final = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
# The ASN.1 string types a DirectoryString (or DC's IA5String) may use, and their encodings.
# TeletexString is read as Latin-1, as OpenSSL does.
_STRING_ENCODINGS: Final = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_OID: Final = 0x06
_EXPLICIT_VERSION: Final = 0xA0


def rfc4514_subject(certificate: bytes) -> str:
    """The subject of a DER certificate as an RFC 4514 string (``CN=alice,O=Example``).

    RDNs come last-first, as RFC 4514 orders them; the attributes of a multi-valued RDN
    are joined with ``+`` in their encoded order.
    """
    _, start, _ = _element(certificate, 0, _SEQUENCE)  # Certificate
    _, position, _ = _element(certificate, start, _SEQUENCE)  # TBSCertificate
    tag, _, end = _element(certificate, position)
    if tag == _EXPLICIT_VERSION:
        position = end
    for _ in range(4):  # serialNumber, signature, issuer, validity
        _, _, position = _element(certificate, position)
    _, start, end = _element(certificate, position, _SEQUENCE)  # subject
    rdns = []
    for rdn_start, rdn_end in _children(certificate, start, end, _SET):
        attributes = []
        for atv_start, _ in _children(certificate, rdn_start, rdn_end, _SEQUENCE):
            _, oid_start, oid_end = _element(certificate, atv_start, _OID)
            value_tag, value_start, value_end = _element(certificate, oid_end)
            oid = _dotted_oid(certificate[oid_start:oid_end])
            attributes.append(
                _attribute(oid, value_tag, certificate, oid_end, value_start, value_end)
            )
        rdns.append("+".join(attributes))
    return ",".join(reversed(rdns))


def _attribute(oid: str, tag: int, data: bytes, tlv_start: int, start: int, end: int) -> str:
    name = _SHORT_NAMES.get(oid)
    encoding = _STRING_ENCODINGS.get(tag)
    if name is not None and encoding is not None:
        try:
            return f"{name}={_escape(data[start:end].decode(encoding))}"
        except UnicodeDecodeError:
            pass
    return f"{name or oid}=#{data[tlv_start:end].hex()}"


def _escape(value: str) -> str:
    """RFC 4514 section 2.4: escape the specials, NUL, a leading space or '#' and a
    trailing space."""
    out = []
    last = len(value) - 1
    for index, char in enumerate(value):
        if char in '"+,;<>\\' or (char == "#" and index == 0):
            out.append("\\" + char)
        elif char == " " and (index == 0 or index == last):
            out.append("\\ ")
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _element(data: bytes, offset: int, expected: int | None = None) -> tuple[int, int, int]:
    """``(tag, content_start, content_end)`` of the DER element at ``offset``."""
    tag = data[offset]
    offset += 1
    if tag & 0x1F == 0x1F:  # high tag number: more tag bytes follow
        while data[offset] & 0x80:
            offset += 1
        offset += 1
    length = data[offset]
    offset += 1
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    end = offset + length
    if end > len(data):
        raise ValueError("truncated DER element")
    if expected is not None and tag != expected:
        raise ValueError(f"expected DER tag {expected:#x}, found {tag:#x}")
    return tag, offset, end


def _children(data: bytes, start: int, end: int, expected: int) -> Iterator[tuple[int, int]]:
    position = start
    while position < end:
        _, child_start, child_end = _element(data, position, expected)
        yield child_start, child_end
        position = child_end


def _dotted_oid(body: bytes) -> str:
    arcs = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])
