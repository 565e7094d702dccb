"""``protocol.sealing.Sealer`` with the cryptography library: AES-256-GCM records, X25519 key wrap.

Records: AES-256-GCM under the per-picture key, the record index as nonce, the picture id,
index and last-record flag as associated data (protocol/sealing.py fixes the layout).
AES-GCM because cameras and laptops alike have AES instructions (bench/crypto.py measures
it); without them ChaCha20-Poly1305 would be the choice, behind the same interface.

Key wrap, for one recipient: a fresh ephemeral X25519 key pair; the shared secret with the
recipient's exchange key goes through HKDF-SHA256 (salt: both public keys; info: the
picture id) to a one-time key that seals the picture key with ChaCha20-Poly1305.  The
wrapped key is ``version (1) | ephemeral public key (32) | sealed key (48)``: 81 bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.sealing import (
    KEY_SIZE,
    RECORD,
    SEALED_RECORD,
    TAG,
    WRAP_VERSION,
    SealingError,
    plain_size,
    record_aad,
    record_nonce,
    record_span,
    records,
    sealed_size,
)

_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
_WRAP_NONCE: Final = bytes(12)  # the wrapping key is used once, for one key
WRAPPED_SIZE: Final = 1 + 32 + KEY_SIZE + TAG


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"a picture key has {KEY_SIZE} bytes, not {len(key)}")


def _wrapping_key(shared: bytes, ephemeral: bytes, recipient: bytes, image_id: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=ephemeral + recipient,
        info=b"cammesh picture key v1\0" + bytes.fromhex(image_id),
    ).derive(shared)


class Sealing:
    """Seals originals with per-picture keys, and wraps/unwraps those keys (see module doc).

    ``private_key`` is this device's X25519 exchange key (mesh.identity gives it).
    ``ephemeral`` makes the one-time key of each wrap: fresh randomness, unless a test or
    the simulator (sim/keys.py) needs the same bytes every run.
    """

    def __init__(
        self,
        private_key: x25519.X25519PrivateKey,
        *,
        ephemeral: Callable[[], x25519.X25519PrivateKey] = x25519.X25519PrivateKey.generate,
    ) -> None:
        self._private = private_key
        self._ephemeral = ephemeral
        self.public_key: bytes = private_key.public_key().public_bytes(*_RAW)

    def new_key(self) -> bytes:
        return AESGCM.generate_key(bit_length=8 * KEY_SIZE)

    # --- records ---------------------------------------------------------------------

    def seal_record(self, key: bytes, image_id: str, index: int, plain: bytes, *,
                    last: bool) -> bytes:
        _check_key(key)
        if len(plain) > RECORD or (not last and len(plain) != RECORD):
            raise ValueError(f"record {index} has {len(plain)} bytes; only the last may be short")
        return AESGCM(key).encrypt(record_nonce(index), plain, record_aad(image_id, index, last))

    def open_record(self, key: bytes, image_id: str, index: int, sealed: bytes, *,
                    last: bool) -> bytes:
        _check_key(key)
        try:
            return AESGCM(key).decrypt(record_nonce(index), sealed,
                                       record_aad(image_id, index, last))
        except InvalidTag as exc:
            raise SealingError(
                f"record {index} of {image_id[:12]} failed authentication: it was changed, "
                "moved, cut short or sealed with another key; collect it from another holder"
            ) from exc

    # --- whole originals -------------------------------------------------------------

    def seal(self, key: bytes, image_id: str, original: bytes) -> bytes:
        size = len(original)
        return read_sealed(key, image_id, size, lambda o, n: original[o:o + n], 0,
                           sealed_size(size))

    def open(self, key: bytes, image_id: str, sealed: bytes) -> bytes:
        _check_key(key)
        try:
            size = plain_size(len(sealed))
        except ValueError as exc:
            raise SealingError(f"sealed {image_id[:12]} has a size no original seals to: {exc}") from exc
        return open_sealed(key, image_id, size, 0, sealed)

    # --- key wrap ----------------------------------------------------------------------

    def wrap(self, key: bytes, image_id: str, recipient: bytes) -> bytes:
        _check_key(key)
        ephemeral = self._ephemeral()
        ephemeral_public = ephemeral.public_key().public_bytes(*_RAW)
        shared = ephemeral.exchange(x25519.X25519PublicKey.from_public_bytes(recipient))
        wrapping = _wrapping_key(shared, ephemeral_public, recipient, image_id)
        sealed = ChaCha20Poly1305(wrapping).encrypt(_WRAP_NONCE, key, bytes.fromhex(image_id))
        return bytes([WRAP_VERSION]) + ephemeral_public + sealed

    def unwrap(self, wrapped: bytes, image_id: str) -> bytes:
        if len(wrapped) != WRAPPED_SIZE or wrapped[0] != WRAP_VERSION:
            raise SealingError(
                f"the wrapped key of {image_id[:12]} is {len(wrapped)} bytes of version "
                f"{wrapped[:1].hex() or 'none'}; this device reads {WRAPPED_SIZE} bytes of "
                f"version {WRAP_VERSION}: upgrade the older device"
            )
        ephemeral_public = wrapped[1:33]
        try:
            shared = self._private.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral_public))
        except ValueError as exc:  # an all-zero shared secret: a low-order point
            raise SealingError(f"the wrapped key of {image_id[:12]} is malformed: {exc}") from exc
        wrapping = _wrapping_key(shared, ephemeral_public, self.public_key, image_id)
        try:
            return ChaCha20Poly1305(wrapping).decrypt(_WRAP_NONCE, wrapped[33:],
                                                      bytes.fromhex(image_id))
        except InvalidTag as exc:
            raise SealingError(
                f"the key of {image_id[:12]} was not wrapped for this device, or was changed"
            ) from exc



# --- sealed originals on a card: sealed on the fly, never stored sealed by their owner -----

ReadPlain = Callable[[int, int], bytes]  # (offset, length) -> plaintext bytes of the original


def sealed_digest(key: bytes, image_id: str, size: int, read: ReadPlain) -> str:
    """SHA-256 of the sealed form of a ``size``-byte original, sealed a record at a time."""
    _check_key(key)
    digest, step = hashlib.sha256(), 16 * SEALED_RECORD  # whole records, 16 at a time
    for offset in range(0, sealed_size(size), step):
        digest.update(read_sealed(key, image_id, size, read, offset, step))
    return digest.hexdigest()


def read_sealed(key: bytes, image_id: str, size: int, read: ReadPlain,
                offset: int, length: int, cache: dict[int, bytes] | None = None) -> bytes:
    """``length`` bytes at ``offset`` of the sealed form (the same bytes every time: the
    nonce is the record index, so a resumed dispersal continues the same stream).

    ``cache``, the caller's for one picture, keeps the last record sealed: chunks do not
    fall on records, and the record a chunk ends in is where the next one starts.
    """
    _check_key(key)
    total = sealed_size(size)
    if not 0 <= offset <= total or length < 0:
        raise ValueError(f"sealed bytes {offset}+{length} of a {total}-byte sealed original")
    end = min(total, offset + length)
    if end <= offset:
        return b""
    first, last = offset // SEALED_RECORD, (end - 1) // SEALED_RECORD
    count, aead = records(size), AESGCM(key)
    start_plain = first * RECORD
    plain = memoryview(read(start_plain, min(size, (last + 1) * RECORD) - start_plain))
    pieces = []
    for i in range(first, last + 1):
        piece = cache.get(i) if cache is not None else None
        if piece is None:
            at = (i - first) * RECORD
            piece = aead.encrypt(record_nonce(i), plain[at:at + RECORD],
                                 record_aad(image_id, i, i == count - 1))
        pieces.append(piece)
    if cache is not None:
        cache.clear()
        cache[last] = pieces[-1]
    sealed = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    start = offset - first * SEALED_RECORD
    return sealed[start:start + end - offset]


def open_sealed(key: bytes, image_id: str, size: int, offset: int, sealed: bytes) -> bytes:
    """The plaintext of whole sealed records from sealed ``offset`` (a record boundary).

    Only the original's last record may be short.  SealingError if a record was changed,
    moved or cut, or ``offset``/``sealed`` do not fall on records.
    """
    _check_key(key)
    index, rest = divmod(offset, SEALED_RECORD)
    count = records(size)
    if rest or offset + len(sealed) > sealed_size(size):
        raise SealingError(f"sealed bytes {offset}+{len(sealed)} of {image_id[:12]} are not "
                           "whole records of it")
    aead, view, out, pos = AESGCM(key), memoryview(sealed), [], 0
    while pos < len(sealed):
        span = record_span(index, size)[1]
        piece = view[pos:pos + span]
        if len(piece) != span:
            raise SealingError(f"record {index} of {image_id[:12]} is cut short")
        try:
            out.append(aead.decrypt(record_nonce(index), piece,
                                    record_aad(image_id, index, index == count - 1)))
        except InvalidTag as exc:
            raise SealingError(
                f"record {index} of {image_id[:12]} failed authentication: it was changed, "
                "moved or cut short; collect it from another holder"
            ) from exc
        pos += span
        index += 1
    return b"".join(out)
