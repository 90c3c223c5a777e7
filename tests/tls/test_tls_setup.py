"""TLS setup from Config (files, password, ciphers, errors) and the pieces of the tls
extension that Python does not hand us: RFC 4514 names, IANA cipher numbers, the chain."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trio_asgi import Config, ConfigError, Server
from trio_asgi.tls import (
    chain_with_leaf,
    cipher_suite_id,
    load_server_tls,
    rfc4514_subject,
)

from .conftest import TLSFiles, scope_app, tls_server

# -- RFC 4514 ---------------------------------------------------------------------------------


def certificate(name: x509.Name) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


@pytest.mark.parametrize(
    "subject",
    [
        name((NameOID.COMMON_NAME, "alice")),
        name(
            (NameOID.COUNTRY_NAME, "DE"),
            (NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
            (NameOID.LOCALITY_NAME, "Berlin"),
            (NameOID.STREET_ADDRESS, "Unter den Linden 1"),
            (NameOID.ORGANIZATION_NAME, "Example, Inc."),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "R+D"),
            (NameOID.DOMAIN_COMPONENT, "example"),
            (NameOID.USER_ID, "alice"),
            (NameOID.COMMON_NAME, 'Zoë <admin>; "root" \\ x'),
        ),
        name((NameOID.COMMON_NAME, "#hash first"), (NameOID.ORGANIZATION_NAME, " spaces ")),
        name((NameOID.COMMON_NAME, "nul\0inside")),
        x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, "multi"),
                        x509.NameAttribute(NameOID.USER_ID, "valued"),
                    ]
                ),
                x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]),
            ]
        ),
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "ƀmp", _type=x509.name._ASN1Type.BMPString),
                x509.NameAttribute(
                    NameOID.ORGANIZATION_NAME, "univ", _type=x509.name._ASN1Type.UniversalString
                ),
            ]
        ),
    ],
    ids=["cn", "every-short-name-and-specials", "leading-and-trailing", "nul", "rdn", "types"],
)
def test_rfc4514_names_match_cryptography(subject: x509.Name) -> None:
    assert rfc4514_subject(certificate(subject)) == subject.rfc4514_string()


def test_rfc4514_other_attributes_are_dotted_oids_with_hex_values() -> None:
    # RFC 4514 2.4: a type without a short name is written as its OID, and the value as
    # '#' and the hex of its BER encoding (here an IA5String, tag 0x16).
    subject = name((NameOID.EMAIL_ADDRESS, "a@b.c"), (NameOID.COMMON_NAME, "alice"))
    assert rfc4514_subject(certificate(subject)) == (
        "CN=alice,1.2.840.113549.1.9.1=#1605" + b"a@b.c".hex()
    )


def test_rfc4514_of_a_real_client_certificate(ca: trustme.CA) -> None:
    leaf = ca.issue_cert("carol@example.com", common_name="carol")
    pem = leaf.cert_chain_pems[0].bytes()
    expected = x509.load_pem_x509_certificate(pem).subject.rfc4514_string()
    assert rfc4514_subject(ssl.PEM_cert_to_DER_cert(pem.decode())) == expected


def test_rfc4514_rejects_what_is_not_a_certificate() -> None:
    with pytest.raises(ValueError):
        rfc4514_subject(b"\x30\x03\x02\x01\x01")


# -- cipher numbers and the chain -------------------------------------------------------------


def test_cipher_suite_ids_are_iana_numbers() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert cipher_suite_id(context, "TLS_AES_128_GCM_SHA256") == 0x1301
    assert cipher_suite_id(context, "TLS_CHACHA20_POLY1305_SHA256") == 0x1303
    assert cipher_suite_id(context, "ECDHE-RSA-AES128-GCM-SHA256") == 0xC02F
    assert cipher_suite_id(context, "NO-SUCH-CIPHER") is None


def test_chain_always_starts_with_the_client_certificate() -> None:
    # What Python 3.13's get_unverified_chain() may return on a server, with and without
    # the peer's own certificate, and what 3.11 has (nothing).
    assert chain_with_leaf([b"leaf", b"ca"], b"leaf") == [b"leaf", b"ca"]
    assert chain_with_leaf([b"intermediate"], b"leaf") == [b"leaf", b"intermediate"]
    assert chain_with_leaf(None, b"leaf") == [b"leaf"]


# -- loading the files ------------------------------------------------------------------------


def test_context_settings(tls: TLSFiles) -> None:
    server_tls = load_server_tls(Config(**tls.config, ca_certs=tls.ca_file, cert_reqs="optional"))
    assert server_tls is not None
    context = server_tls.context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert load_server_tls(Config()) is None


async def test_encrypted_key_with_its_password(tls: TLSFiles, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(tls.server.private_key_pem.bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    config = {"certfile": tls.certfile, "keyfile": str(encrypted)}
    with pytest.raises(ConfigError, match=r"cannot load certfile .*wrong keyfile_password"):
        Server(scope_app, Config(**config, keyfile_password="wrong"))
    # No password: a clear error (OpenSSL would prompt on the terminal instead).
    with pytest.raises(ConfigError, match=r"the key is encrypted; give keyfile_password"):
        Server(scope_app, Config(**config))
    assert "s3cret" not in repr(Config(**config, keyfile_password="s3cret"))
    async with tls_server(**config, keyfile_password="s3cret") as server:
        status, _ = await server.get(tls.client_context())
    assert status == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"certfile": "/nonexistent.pem"}, "cannot load certfile '/nonexistent.pem' / keyfile"),
        ({"keyfile": "/nonexistent.key"}, "keyfile '/nonexistent.key': No such file"),
        ({"keyfile": "JUNK"}, r"cannot read the PEM data \(wrong keyfile_password, or not"),
        ({"keyfile": "CA"}, "KEY_VALUES_MISMATCH"),
        ({"ciphers": "NO-SUCH-CIPHER"}, "no cipher matches ciphers 'NO-SUCH-CIPHER'"),
        (
            {"ca_certs": "/nonexistent-ca.pem", "cert_reqs": "required"},
            "cannot load ca_certs '/nonexistent-ca.pem'",
        ),
    ],
)
def test_bad_tls_files_are_config_errors(
    tls: TLSFiles, ca: trustme.CA, tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    if changes.get("keyfile") == "CA":  # a key that does not belong to the certificate
        other = tmp_path / "other.key"
        ca.private_key_pem.write_to_path(str(other))
        changes = {"keyfile": str(other)}
    elif changes.get("keyfile") == "JUNK":
        junk = tmp_path / "junk.key"
        junk.write_text("not a key")
        changes = {"keyfile": str(junk)}
    with pytest.raises(ConfigError, match=message):
        Server(scope_app, Config(**{**tls.config, **changes}))
