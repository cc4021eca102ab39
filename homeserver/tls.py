"""A self-signed certificate for development (`homeserver generate-config --self-signed-tls`).

Production servers use a certificate from a real CA: other homeservers verify the federation
listener's certificate against the server name (S2S "Server discovery"; "TLS").

`cryptography` (~7 MB of RSS with its bundled OpenSSL, docs/memory.md) is imported only when a
certificate is built, so `write_new_file` (used for a new signing key) does not load it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

DEV_CERTIFICATE_VALIDITY = datetime.timedelta(days=825)


def build_self_signed_certificate(
    hostnames: Sequence[str],
    ip_addresses: Sequence[str],
    *,
    valid_for: datetime.timedelta = DEV_CERTIFICATE_VALIDITY,
) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key and a certificate for the given names: `(cert_pem, key_pem)`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hostnames and not ip_addresses:
        raise ValueError("a certificate needs at least one host name or IP address")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    common_name = hostnames[0] if hostnames else ip_addresses[0]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + valid_for)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # A self-signed certificate is its own trust anchor: peers that pin it as a CA file
        # need CA:TRUE; keyCertSign goes with it, serverAuth says what it is for.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def write_self_signed_certificate(
    cert_path: Path,
    key_path: Path,
    hostnames: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
) -> None:
    """Write a new certificate and its private key (mode 0600); neither file may exist yet."""
    cert_pem, key_pem = build_self_signed_certificate(hostnames, ip_addresses)
    write_new_file(key_path, key_pem, mode=0o600)
    try:
        write_new_file(cert_path, cert_pem, mode=0o644)
    except OSError:
        key_path.unlink(missing_ok=True)  # leave no key without its certificate
        raise


def write_new_file(path: Path, content: bytes, *, mode: int) -> None:
    """Create `path` with `mode` and write `content`; fails if the file already exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
