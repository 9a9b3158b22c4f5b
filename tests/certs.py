"""Test certificates made at test time (nothing secret is committed).

:func:`make_certs` writes a throw-away certificate authority and a server certificate it signed
for ``localhost`` and ``127.0.0.1`` (plus a self-signed certificate) into a directory, using the
``cryptography`` package. :func:`server_context` and :func:`client_context` build the
``ssl.SSLContext`` objects the TLS tests hand to wsfast.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certs", "make_certs", "server_context", "client_context", "record_default_contexts"]


@dataclass
class Certs:
    """Paths of the PEM files :func:`make_certs` wrote."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    self_signed_cert: Path
    self_signed_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys take microseconds to make; RSA-2048 would cost ~50 ms per test session.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wsfast tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _leaf(
    subject_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> x509.Certificate:
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Python 3.13's default context sets VERIFY_X509_STRICT, which requires the Authority
        # Key Identifier (RFC 5280 4.2.1.1) on certificates a CA issued.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certs(directory: Path) -> Certs:
    """Write a CA, a server certificate it signed and a self-signed one into ``directory``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = _key()
    ca_name = _name("wsfast test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _key()
    server = _leaf(server_key, ca_name, ca_key, now)
    lone_key = _key()
    lone = _leaf(lone_key, _name("localhost"), lone_key, now)
    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    return Certs(
        ca_cert=_write(directory / "ca.pem", ca.public_bytes(pem)),
        server_cert=_write(directory / "server.pem", server.public_bytes(pem)),
        server_key=_write(directory / "server.key", _pem_key(server_key)),
        self_signed_cert=_write(directory / "self-signed.pem", lone.public_bytes(pem)),
        self_signed_key=_write(directory / "self-signed.key", _pem_key(lone_key)),
    )


def server_context(certs: Certs, self_signed: bool = False) -> ssl.SSLContext:
    """A server-side context with the CA-signed (or the self-signed) certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if self_signed:
        context.load_cert_chain(certs.self_signed_cert, certs.self_signed_key)
    else:
        context.load_cert_chain(certs.server_cert, certs.server_key)
    return context


def client_context(certs: Certs | None = None) -> ssl.SSLContext:
    """A verifying client context; it trusts the test CA when ``certs`` is given."""
    context = ssl.create_default_context()
    if certs is not None:
        context.load_verify_locations(certs.ca_cert)
    return context


def record_default_contexts(
    certs: Certs, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0
) -> list[ssl.SSLContext]:
    """Reset wsfast's shared default context; from now on (until ``monkeypatch`` undoes it)
    every ``ssl.create_default_context()`` trusts the test CA, takes ``delay`` seconds more,
    and is appended to the list returned."""
    import wsfast.proxy

    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def create(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        time.sleep(delay)
        context = real(*args, **kwargs)
        context.load_verify_locations(certs.ca_cert)
        made.append(context)
        return context

    monkeypatch.setattr(wsfast.proxy, "_default_ssl_context", None)
    monkeypatch.setattr(ssl, "create_default_context", create)
    return made
