"""Our originals in the sealed form their holders get, and the picture keys that open them.

Issue 7 (SECURITY.md): a dispersed original leaves sealed with a fresh key per
picture, kept beside the dispersion list; the holder stores ciphertext it
cannot read.  The card seals on the fly (``form``, ``read``), opens what a
relay passes on (``open``), and opens a collected original record by record
when it comes home (``open_home``).  The record format is ``storage.sealing``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from protocol.sealing import KEY_SIZE, SEALED_RECORD, SealingError, sealed_size
from protocol.store import ImageRecord, SealedForm
from storage import sealing
from storage.catalog import SqliteCatalog
from storage.errors import HashMismatch, NotFound, StoreError
from storage.files import CardFolder, unlink


class SealedOriginals:
    """The sealed side of one card: its picture keys and the sealed form of its originals.

    ``local(image_id)`` is the card's record of a LOCAL original (NotFound otherwise).
    """

    def __init__(
        self, folder: CardFolder, catalog: SqliteCatalog, device_id: str,
        local: Callable[[str], ImageRecord],
    ) -> None:
        self._folder = folder
        self._catalog = catalog
        self._device_id = device_id
        self._local = local
        # The last sealed record of the original being dispersed (see read).
        self._cache: tuple[str, dict[int, bytes]] = ("", {})

    def form(self, image_id: str) -> SealedForm:
        known = self._catalog.picture_key(image_id)
        if known is not None and known[1] is not None:
            return known[1]
        record = self._local(image_id)
        key = self._make_key(image_id) if known is None else known[0]
        with self._folder.original_file(image_id).open("rb") as f:
            digest = sealing.sealed_digest(key, image_id, record.size, _reader(f))
        form = SealedForm(sealed_size(record.size), digest)
        self._catalog.set_sealed_form(image_id, form)
        return form

    def _make_key(self, image_id: str) -> bytes:
        # Durable before any sealed byte or wrapped key leaves: without it they are useless.
        key = os.urandom(KEY_SIZE)
        self._catalog.insert_picture_key(image_id, key)
        return key

    def _key(self, image_id: str) -> bytes:
        known = self._catalog.picture_key(image_id)
        if known is None:
            raise NotFound(f"picture {image_id[:12]} has no key on this card; nothing was sealed")
        return known[0]

    def read(self, image_id: str, offset: int, length: int) -> bytes:
        key, record = self._key(image_id), self._local(image_id)
        if self._cache[0] != image_id:
            self._cache = (image_id, {})
        with self._folder.original_file(image_id).open("rb") as f:
            return sealing.read_sealed(key, image_id, record.size, _reader(f), offset, length,
                                       self._cache[1])

    def open(self, image_id: str, offset: int, sealed: bytes) -> bytes:
        key, record = self._key(image_id), self._catalog.image(image_id)
        if record is None:
            raise NotFound(f"picture {image_id[:12]} is not in the catalog")
        try:
            return sealing.open_sealed(key, image_id, record.size, offset, sealed)
        except SealingError as exc:
            raise HashMismatch(str(exc)) from exc

    def key(self, image_id: str, *, create: bool = False) -> bytes | None:
        known = self._catalog.picture_key(image_id)
        if known is not None:
            return known[0]
        if not create:
            return None
        record = self._catalog.image(image_id)
        if record is None or record.origin != self._device_id:
            raise NotFound(f"picture {image_id[:12]} is not one of this card's own")
        return self._make_key(image_id)

    def open_home(
        self, path: Path, length: int, digest: str, record: ImageRecord, *,
        grew: Callable[[int], None],
    ) -> tuple[Path, int]:
        """A sealed original home from its holder, opened record by record into a fsynced
        temp file: (temp, size).  HashMismatch if it is not the form this card sealed or
        does not open to the picture; the caller then discards the partial."""
        image_id = record.image_id
        known = self._catalog.picture_key(image_id)
        if known is None or known[1] is None or known[1].digest != digest:
            raise HashMismatch(
                f"the sealed original received for {image_id[:12]} is not the one this card "
                "sealed; it was discarded and must be collected again"
            )
        key = known[0]

        def plain() -> Iterator[bytes]:
            with path.open("rb") as f:
                for index in range(-(-length // SEALED_RECORD)):
                    yield sealing.open_sealed(key, image_id, record.size,
                                              index * SEALED_RECORD, f.read(SEALED_RECORD))

        try:
            temp, actual, size = self._folder.write_temp(plain(), record.size, grew=grew)
        except SealingError as exc:
            raise HashMismatch(f"{exc}; it was discarded") from exc
        if actual != image_id or size != record.size:
            unlink(temp)
            raise HashMismatch(
                f"the original opened from its sealed form hashes to {actual[:12]}, not "
                f"{image_id[:12]}; it was discarded and must be collected again"
            )
        return temp, size


def _reader(f: io.BufferedReader) -> sealing.ReadPlain:
    """Reads of one open original, for sealing it record by record."""

    def read(offset: int, length: int) -> bytes:
        f.seek(offset)
        data = f.read(length)
        if len(data) != length:
            raise StoreError(f"the original ended at {offset + len(data)} bytes, before {offset + length}")
        return data

    return read
