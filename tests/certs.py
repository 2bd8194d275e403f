"""Self-signed certificates for the tests' AMS stand-ins, made with `cryptography`.

An implementation independent of the daemon's (rcgen, x509-parser), so fingerprints computed
here check the daemon's rather than repeat them.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Identity:
    """An AMS unit's client certificate and key."""

    name: str
    cert_pem: str
    key_pem: str

    @property
    def fingerprint(self) -> str:
        der = x509.load_pem_x509_certificate(self.cert_pem.encode()).public_bytes(
            serialization.Encoding.DER
        )
        return hashlib.sha256(der).hexdigest()

    def write(self, directory: Path) -> tuple[Path, Path]:
        cert = directory / f"{self.name.replace('/', '-')}.crt"
        key = directory / f"{self.name.replace('/', '-')}.key"
        cert.write_text(self.cert_pem)
        key.write_text(self.key_pem)
        key.chmod(0o600)
        return cert, key


def make_identity(name: str, sans: tuple[str, ...] = ()) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    return Identity(
        name=name,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
