"""The in-memory card's sealed side: its picture keys and the sealed form of its originals.

As ``storage.sealed_form`` is for the real card (issue 7, SECURITY.md): a dispersed
original leaves sealed with a key of its own, and the holder keeps ciphertext it cannot
read.  The simulator's keys come from the ids, not from ``os.urandom``: one seed, one trace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from protocol.sealing import SealingError, sealed_size
from protocol.store import HashMismatch, ImageRecord, NotFound, SealedForm
from storage import sealing


class MemorySealedOriginals:
    """Keys and sealed forms of one MemoryStore, reading its ``originals`` and ``images``."""

    def __init__(
        self, device_id: str, originals: Mapping[str, bytes], images: Mapping[str, ImageRecord]
    ) -> None:
        self._device_id = device_id
        self._originals = originals  # the store's LOCAL originals, read, never written here
        self._images = images
        self._keys: dict[str, bytes] = {}  # our pictures' keys
        self._forms: dict[str, SealedForm] = {}  # and their sealed forms, once sealed

    def form(self, image_id: str) -> SealedForm:
        known = self._forms.get(image_id)
        if known is not None:
            return known
        data = self._originals.get(image_id)
        if data is None:
            raise NotFound(f"the original of {image_id[:12]} is not on this card")
        key = self._keys.get(image_id) or self._make_key(image_id)
        form = SealedForm(
            sealed_size(len(data)),
            sealing.sealed_digest(key, image_id, len(data), _reader(data)),
        )
        self._forms[image_id] = form
        return form

    def _make_key(self, image_id: str) -> bytes:
        key = hashlib.sha256(f"sim key {self._device_id} {image_id}".encode()).digest()
        self._keys[image_id] = key
        return key

    def _key(self, image_id: str) -> bytes:
        known = self._keys.get(image_id)
        if known is None:
            raise NotFound(f"picture {image_id[:12]} has no key on this card; nothing was sealed")
        return known

    def read(self, image_id: str, offset: int, length: int) -> bytes:
        key = self._key(image_id)
        data = self._originals.get(image_id)
        if data is None:
            raise NotFound(f"the original of {image_id[:12]} is not on this card")
        return sealing.read_sealed(key, image_id, len(data), _reader(data), offset, length)

    def open(self, image_id: str, offset: int, sealed: bytes) -> bytes:
        key, record = self._key(image_id), self._images.get(image_id)
        if record is None:
            raise NotFound(f"{image_id[:12]} is not in the catalog")
        try:
            return sealing.open_sealed(key, image_id, record.size, offset, sealed)
        except SealingError as exc:
            raise HashMismatch(str(exc)) from exc

    def picture_key(self, image_id: str, *, create: bool = False) -> bytes | None:
        known = self._keys.get(image_id)
        if known is not None or not create:
            return known
        record = self._images.get(image_id)
        if record is None or record.origin != self._device_id:
            raise NotFound(f"picture {image_id[:12]} is not one of this card's own")
        return self._make_key(image_id)

    def open_home(self, image_id: str, digest: str, sealed: bytes) -> bytes:
        """A sealed original home again, opened and checked; HashMismatch if it is not ours."""
        key, form = self._keys.get(image_id), self._forms.get(image_id)
        try:
            if key is None or form is None or form.digest != digest:
                raise SealingError("it is not the sealed form this card made")
            size = self._images[image_id].size
            data = sealing.open_sealed(key, image_id, size, 0, sealed)
        except (SealingError, ValueError) as exc:
            raise HashMismatch(f"the sealed original of {image_id[:12]} was refused: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != image_id:
            raise HashMismatch(f"{image_id[:12]} opened to bytes that are not that picture")
        return data


def _reader(data: bytes) -> sealing.ReadPlain:
    return lambda offset, length: data[offset : offset + length]
