"""Identity: a key pair and self-signed certificate on the card; the device id is its SHA-256."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh.errors import IdentityError
from mesh.identity import Identity, device_id_of, identity_dir, short_id_of


def test_create_then_load_gives_the_same_identity(tmp_path: Path) -> None:
    made = Identity.create(tmp_path, name="camera A")
    loaded = Identity.load(tmp_path)
    assert loaded == made
    assert loaded.name == "camera A"
    assert re.fullmatch(r"[0-9a-f]{64}", loaded.device_id)
    assert loaded.device_id == hashlib.sha256(loaded.cert_der).hexdigest()
    assert loaded.device_id == device_id_of(loaded.cert_der)
    assert loaded.cert_path.parent == identity_dir(tmp_path)


def test_key_files_are_private(tmp_path: Path) -> None:
    ident = Identity.create(tmp_path, name="cam")
    for path in (ident.key_path, ident.exchange_key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # nothing left behind under temporary names
    assert sorted(p.name for p in identity_dir(tmp_path).iterdir()) == [
        "device.crt", "device.key", "exchange.key",
    ]


def test_certificate_is_its_own_ca_and_valid_for_any_camera_clock(tmp_path: Path) -> None:
    ident = Identity.create(tmp_path, name="cam")
    cert = x509.load_der_x509_certificate(ident.cert_der)
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_before_utc.year == 1970
    assert cert.not_valid_after_utc.year == 9999


def test_two_devices_differ_even_with_one_name(tmp_path: Path) -> None:
    a = Identity.create(tmp_path / "a", name="cam")
    b = Identity.create(tmp_path / "b", name="cam")
    assert a.device_id != b.device_id
    ca = x509.load_der_x509_certificate(a.cert_der)
    cb = x509.load_der_x509_certificate(b.cert_der)
    assert ca.subject != cb.subject  # OpenSSL looks trust anchors up by subject


def test_short_id_is_a_short_display_form(tmp_path: Path) -> None:
    ident = Identity.create(tmp_path, name="cam")
    assert re.fullmatch(r"[A-Z2-7]{4}-[A-Z2-7]{4}", ident.short_id)
    assert ident.short_id == short_id_of(ident.device_id)


def test_exchange_key_travels_in_the_certificate(tmp_path: Path) -> None:
    ident = Identity.create(tmp_path, name="cam")
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert ident.public_key().public_bytes(*raw) == (
        ident.exchange_private_key().public_key().public_bytes(*raw)
    )


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    Identity.create(tmp_path, name="cam")
    with pytest.raises(IdentityError, match="already exists"):
        Identity.create(tmp_path, name="cam")


def test_create_recovers_from_a_crash_before_the_certificate(tmp_path: Path) -> None:
    Identity.create(tmp_path, name="cam")
    (identity_dir(tmp_path) / "device.crt").unlink()  # the crash: keys written, cert not
    with pytest.raises(IdentityError, match="cammesh init"):
        Identity.load(tmp_path)
    again = Identity.create(tmp_path, name="cam")
    assert Identity.load(tmp_path) == again


def test_load_refuses_a_key_that_does_not_match(tmp_path: Path) -> None:
    Identity.create(tmp_path / "a", name="cam")
    other = Identity.create(tmp_path / "b", name="cam")
    (identity_dir(tmp_path / "a") / "device.key").write_bytes(other.key_path.read_bytes())
    with pytest.raises(IdentityError, match="does not match"):
        Identity.load(tmp_path / "a")


@pytest.mark.parametrize("name", ["", "x" * 65, "tab\there"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(IdentityError, match="device name"):
        Identity.create(tmp_path, name=name)
