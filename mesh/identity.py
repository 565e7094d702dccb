"""This device's identity: an Ed25519 key and a self-signed certificate whose SHA-256 is the device id.

Files live under ``CARD/mesh/`` (``identity_dir``): ``device.key`` (PKCS#8, mode 0600),
``exchange.key`` (X25519, mode 0600) and ``device.crt`` (PEM). The certificate is written
last, so a crash mid-create leaves no certificate and ``create`` can simply run again.

Why Ed25519: OpenSSL 3 accepts it for TLS 1.3 (``ssl`` here is OpenSSL 3.0), keys and
signatures are small and there are no nonce pitfalls. Why a second, X25519 key: per-picture
keys are wrapped for the receiver's public key (DESIGN.md, "Security of pictures"); an
Ed25519 signing key should not double as a key-agreement key, so the X25519 public key rides
in a private, non-critical certificate extension and is therefore pinned with the certificate.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.errors import IdentityError

MESH_DIR = "mesh"
KEY_FILE = "device.key"
CERT_FILE = "device.crt"
EXCHANGE_KEY_FILE = "exchange.key"
MAX_NAME = 64  # the X.509 limit on a common name

# A UUID-derived OID (ITU-T X.667, arc 2.25) needs no registration: it names the
# extension that carries the device's X25519 public key.
EXCHANGE_KEY_OID = x509.ObjectIdentifier("2.25.156090839519377946428062370707155127393")
_OCTET_STRING_32 = b"\x04\x20"  # DER header of a 32-byte OCTET STRING

# Camera clocks are often unset; a certificate that is "not yet valid" in 1970 or
# "expired" in 2040 must not break pairing, so validity spans every plausible clock.
_NOT_BEFORE = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def identity_dir(card: Path) -> Path:
    """Where a card keeps its identity, pins and mesh membership."""
    return Path(card) / MESH_DIR


def device_id_of(cert_der: bytes) -> str:
    """The device id of a certificate: lowercase hex SHA-256 of its DER (64 characters)."""
    return hashlib.sha256(cert_der).hexdigest()


def short_id_of(device_id: str) -> str:
    """A short human form of a device id for display, e.g. ``K7QM-2XPA`` (not unique, not for pinning)."""
    digest = bytes.fromhex(device_id)
    text = base64.b32encode(digest).decode("ascii")[:8]
    return f"{text[:4]}-{text[4:]}"


def exchange_public_key_of(cert_der: bytes) -> x25519.X25519PublicKey:
    """The X25519 key a device's certificate carries, for wrapping per-picture keys to it."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        ext = cert.extensions.get_extension_for_oid(EXCHANGE_KEY_OID)
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise IdentityError(f"certificate carries no cammesh exchange key: {exc}") from exc
    value = ext.value
    assert isinstance(value, x509.UnrecognizedExtension)
    raw = value.value
    if len(raw) != 34 or not raw.startswith(_OCTET_STRING_32):
        raise IdentityError("certificate's cammesh exchange key is malformed")
    return x25519.X25519PublicKey.from_public_bytes(raw[2:])


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write to a temporary name with ``mode``, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _make_certificate(
    name: str, key: ed25519.Ed25519PrivateKey, exchange: x25519.X25519PublicKey
) -> x509.Certificate:
    # A random serialNumber attribute keeps subjects distinct, so OpenSSL never
    # confuses two pinned devices that share a human name.
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cammesh"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, secrets.token_hex(8)),
        ]
    )
    public = key.public_key()
    raw_exchange = exchange.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # ca=True: each self-signed certificate is its own trust anchor in the
    # peer's CA bundle of pinned devices (mesh/tls.py).
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
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
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
        )
        .add_extension(
            x509.UnrecognizedExtension(EXCHANGE_KEY_OID, _OCTET_STRING_32 + raw_exchange),
            critical=False,
        )
    )
    return builder.sign(key, None)


def _pkcs8(key: ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True, slots=True)
class Identity:
    """A device's key pair and certificate on disk; ``device_id`` is the certificate's SHA-256."""

    folder: Path  # the card folder
    name: str
    cert_pem: bytes
    cert_der: bytes
    device_id: str

    @property
    def short_id(self) -> str:
        return short_id_of(self.device_id)

    @property
    def cert_path(self) -> Path:
        return identity_dir(self.folder) / CERT_FILE

    @property
    def key_path(self) -> Path:
        return identity_dir(self.folder) / KEY_FILE

    @property
    def exchange_key_path(self) -> Path:
        return identity_dir(self.folder) / EXCHANGE_KEY_FILE

    @classmethod
    def create(cls, folder: Path, *, name: str) -> Identity:
        """Make a new key pair and certificate under ``folder/mesh``; refuse if one exists."""
        folder = Path(folder)
        if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
            raise IdentityError(
                f"device name {name!r} must be 1 to {MAX_NAME} printable characters"
            )
        where = identity_dir(folder)
        if (where / CERT_FILE).exists():
            raise IdentityError(
                f"{where / CERT_FILE} already exists: this card has an identity "
                "(delete the card's mesh/ folder to start over, which unpairs it)"
            )
        where.mkdir(parents=True, exist_ok=True)
        key = ed25519.Ed25519PrivateKey.generate()
        exchange = x25519.X25519PrivateKey.generate()
        cert = _make_certificate(name, key, exchange.public_key())
        write_atomically(where / EXCHANGE_KEY_FILE, _pkcs8(exchange), mode=0o600)
        write_atomically(where / KEY_FILE, _pkcs8(key), mode=0o600)
        # The certificate last: its presence is what makes the identity exist.
        write_atomically(
            where / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), mode=0o644
        )
        return cls.load(folder)

    @classmethod
    def load(cls, folder: Path) -> Identity:
        """Read the identity under ``folder/mesh``, checking the key matches the certificate."""
        folder = Path(folder)
        where = identity_dir(folder)
        try:
            cert_pem = (where / CERT_FILE).read_bytes()
            key_pem = (where / KEY_FILE).read_bytes()
            exchange_pem = (where / EXCHANGE_KEY_FILE).read_bytes()
        except FileNotFoundError as exc:
            raise IdentityError(
                f"no device identity under {where} ({exc.filename} missing): run `cammesh init`"
            ) from exc
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
            exchange = serialization.load_pem_private_key(exchange_pem, password=None)
        except ValueError as exc:
            raise IdentityError(f"the identity under {where} is unreadable: {exc}") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey) or not isinstance(
            exchange, x25519.X25519PrivateKey
        ):
            raise IdentityError(f"the keys under {where} are not Ed25519/X25519 keys")
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        cert_public = cert.public_key()
        if not isinstance(cert_public, ed25519.Ed25519PublicKey) or (
            cert_public.public_bytes(*raw) != key.public_key().public_bytes(*raw)
        ):
            raise IdentityError(f"{where / KEY_FILE} does not match {where / CERT_FILE}")
        cert_der = cert.public_bytes(serialization.Encoding.DER)
        if exchange_public_key_of(cert_der).public_bytes(*raw) != exchange.public_key().public_bytes(
            *raw
        ):
            raise IdentityError(f"{where / EXCHANGE_KEY_FILE} does not match {where / CERT_FILE}")
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if names else ""
        return cls(
            folder=folder,
            name=name,
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            cert_der=cert_der,
            device_id=device_id_of(cert_der),
        )

    @classmethod
    def exists(cls, folder: Path) -> bool:
        return (identity_dir(Path(folder)) / CERT_FILE).exists()

    def public_key(self) -> x25519.X25519PublicKey:
        """This device's X25519 public key, to which peers wrap per-picture keys (issue 7)."""
        return exchange_public_key_of(self.cert_der)

    def exchange_private_key(self) -> x25519.X25519PrivateKey:
        """The X25519 private key that unwraps per-picture keys sent to this device."""
        key = serialization.load_pem_private_key(self.exchange_key_path.read_bytes(), password=None)
        if not isinstance(key, x25519.X25519PrivateKey):
            raise IdentityError(f"{self.exchange_key_path} is not an X25519 key")
        return key


__all__ = [
    "CERT_FILE",
    "EXCHANGE_KEY_FILE",
    "KEY_FILE",
    "Identity",
    "device_id_of",
    "exchange_public_key_of",
    "identity_dir",
    "short_id_of",
]
