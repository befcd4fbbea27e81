"""TLS contexts and the computer's self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TlsConfigError", "create_self_signed_certificate", "pinned_context", "server_context"]

#: Exchange's install certificate is valid for five years; ours matches.
CERTIFICATE_LIFETIME = datetime.timedelta(days=5 * 365)


class TlsConfigError(Exception):
    """The certificate or key cannot be loaded; the message says which file and why."""


def create_self_signed_certificate(
    fqdn: str, certificate: Path, private_key: Path, *, extra_names: tuple[str, ...] = ()
) -> None:
    """Write a self-signed certificate for ``fqdn`` (and localhost) with a new P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    unique = dict.fromkeys((fqdn, fqdn.split(".")[0], "localhost", *extra_names))
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in unique]
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    private_key.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(key_bytes)
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(certificate: Path, private_key: Path) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, modern ciphers, the given certificate chain."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ECDHE with AEAD only for TLS 1.2; TLS 1.3 suites are fixed by OpenSSL and all modern.
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(certificate, private_key)
    except FileNotFoundError as error:
        raise TlsConfigError(
            f"certificate file {error.filename} is missing; run 'popgate setup' to create one"
        ) from None
    except (ssl.SSLError, ValueError) as error:
        raise TlsConfigError(
            f"cannot load the certificate {certificate} with key {private_key}: {error}"
        ) from None
    return context


def pinned_context(certificate_pem: str) -> ssl.SSLContext:
    """A client context that trusts exactly this certificate, whoever issued it.

    Hosts of one organization register their own certificates in the directory; the hops
    between them (front end to backend, host to host) accept only the registered one, so a
    secret sent over them cannot go to an impostor. The name is not checked: the certificate
    itself is the identity.
    """
    context = ssl.create_default_context(cadata=certificate_pem)
    context.check_hostname = False
    # A CA-issued certificate is trusted on its own, without its chain.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
