"""Per-picture keys (the patent's second encryption system, FIG. 20): the layout and the interface.

Each picture gets a fresh 32-byte key.  Its original is sealed with it in fixed-size
records, so an offset in the plaintext maps to an offset in the sealed bytes by
arithmetic alone (resume, read-out from an offset, chunking keep working), and every
record is authenticated on its own (a holder or a link that changes one byte is caught
at that record, not only at the end).  The key is wrapped for a receiving device's
X25519 exchange key (the one its certificate carries) and travels in the thumbnail offer
(``ThumbnailOffer.wrapped_key``), ahead of the original, so the receiver can unwrap it
before the data arrives.

This module is sans-IO and imports no cryptography: it fixes the sealed layout and the
``Sealer`` interface the node calls.  ``storage.sealing.Sealing`` implements it.
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

from protocol.errors import CammeshError

KEY_SIZE: Final = 32
RECORD: Final = 64 * 1024  # plaintext bytes per sealed record (the last one may be shorter)
TAG: Final = 16  # the AEAD tag each record carries
SEALED_RECORD: Final = RECORD + TAG
WRAP_VERSION: Final = 1


class SealingError(CammeshError):
    """Sealed bytes or a wrapped key failed authentication, or were cut short.

    The bytes were changed (by a holder, a link or a card), belong to another picture or
    record, or were wrapped for another device; nothing of them may be used.
    """


def records(size: int) -> int:
    """Records a plaintext of ``size`` bytes seals into (an empty original is one empty record)."""
    if size < 0:
        raise ValueError(f"a size cannot be negative: {size}")
    return max(1, -(-size // RECORD))


def sealed_size(size: int) -> int:
    """Bytes of the sealed form of a ``size``-byte original."""
    return size + records(size) * TAG


def plain_size(sealed: int) -> int:
    """The original's size from its sealed size; ValueError when no original seals to that size."""
    full, rest = divmod(sealed, SEALED_RECORD)
    if rest == 0 and full > 0:
        return full * RECORD
    if rest < TAG or (full > 0 and rest == TAG):
        raise ValueError(f"{sealed} bytes is not the size of a sealed original")
    return full * RECORD + rest - TAG


def record_span(index: int, size: int) -> tuple[int, int]:
    """(offset, length) in the sealed bytes of record ``index`` of a ``size``-byte original."""
    count = records(size)
    if not 0 <= index < count:
        raise ValueError(f"record {index} of an original with {count} records")
    plain = min(RECORD, size - index * RECORD)
    return index * SEALED_RECORD, plain + TAG


def record_aad(image_id: str, index: int, last: bool) -> bytes:
    """What each record is bound to: its picture, its position, and whether it is the last.

    Binding the position stops records being reordered or moved between pictures; binding
    ``last`` stops a truncation at a record boundary passing as a shorter original.
    """
    return b"cammesh record v1\0" + bytes.fromhex(image_id) + struct.pack(">Q?", index, last)


def record_nonce(index: int) -> bytes:
    """A record's 12-byte nonce: its index.  Safe because every key seals one original only."""
    return struct.pack(">IQ", 0, index)


class Sealer(Protocol):
    """What the node needs from the cryptography (implemented in storage.sealing).

    Keys are 32 random bytes; ``wrap``/``unwrap`` bind the key to its picture id, so a
    wrapped key cannot be replayed for another picture.
    """

    def new_key(self) -> bytes:
        """A fresh random per-picture key."""
        ...

    def seal(self, key: bytes, image_id: str, original: bytes) -> bytes:
        """The sealed form of a whole original (``sealed_size(len(original))`` bytes)."""
        ...

    def open(self, key: bytes, image_id: str, sealed: bytes) -> bytes:
        """The original back from its sealed form; SealingError if anything was changed."""
        ...

    def seal_record(self, key: bytes, image_id: str, index: int, plain: bytes, *,
                    last: bool) -> bytes:
        """One record sealed (for streaming: record ``index`` of the original)."""
        ...

    def open_record(self, key: bytes, image_id: str, index: int, sealed: bytes, *,
                    last: bool) -> bytes:
        """One record opened; SealingError if it was changed, moved or cut."""
        ...

    def wrap(self, key: bytes, image_id: str, recipient: bytes) -> bytes:
        """``key`` wrapped for the device whose raw X25519 public key is ``recipient``."""
        ...

    def unwrap(self, wrapped: bytes, image_id: str) -> bytes:
        """A key wrapped for this device; SealingError if it was not, or was changed."""
        ...
