"""Taking a picture in: a capture or import copied, hashed, extracted and adopted by the card.

A file's copy, hash and extraction run outside the card's lock, so the card
serves its peers while a large file comes in; the lock is taken to check room,
look the hash up and adopt the copy.  A picture is durable (original fsynced
and renamed, catalog row committed) before ``add_original`` returns, unless the
caller asked for ``deferred_sync`` (the offline bulk import).  A source that
vanishes, is replaced, shrinks or is written to while it is copied is refused
with that reason (``ImportRejected``).
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from protocol.fields import checker
from protocol.messages import Limits, MetadataItem, MetadataValue
from protocol.store import ImageRecord, Where
from storage.card_smaller import drop_superseded
from storage.catalog import SqliteCatalog
from storage.errors import CardFullError, ImportRejected
from storage.files import CHUNK, CardFolder, hash_file, unlink
from storage.movies import StripFrame
from storage.room import RoomLedger


class Extraction(Protocol):
    """What import learns of a picture (``storage.thumbnails.Extracted`` has these fields)."""

    @property
    def thumbnail(self) -> bytes: ...
    @property
    def thumbnail_source(self) -> str: ...
    @property
    def mime(self) -> str: ...
    @property
    def capture_time(self) -> float | None: ...
    @property
    def metadata(self) -> Mapping[str, MetadataValue]: ...
    @property
    def strip(self) -> Sequence[StripFrame]: ...


@dataclass(frozen=True, slots=True)
class GivenExtraction:
    """An extraction supplied by the caller (``add_local``): nothing is decoded."""

    thumbnail: bytes = b""
    thumbnail_source: str = "given"
    mime: str = "image/jpeg"
    capture_time: float | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    strip: Sequence[StripFrame] = ()


def display_name(name: str) -> str:
    """A file name fit to show and to send: no directories, no control characters, bounded."""
    base = re.split(r"[/\\]", name)[-1]
    clean = "".join("_" if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in base)
    clean = clean.strip()[: Limits.MAX_NAME]
    return clean or "unnamed"


_METADATA_VALUE_OK: Final = checker(MetadataItem)


def clean_metadata(metadata: Mapping[str, object]) -> dict[str, MetadataValue]:
    """Metadata within the wire limits: scalar values, finite floats, bounded keys and text."""
    out: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if len(out) >= Limits.MAX_METADATA_KEYS:
            break
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            continue
        if isinstance(value, str):
            value = str(value)[: Limits.MAX_METADATA_VALUE]
        if _METADATA_VALUE_OK(value) is None:  # the wire's own declaration of a value
            out[key] = value  # type: ignore[assignment]  # checked as a MetadataItem
    return out


class Intake:
    """How pictures come into one card; ``guard()`` holds the card's lock (and checks it is open)."""

    def __init__(
        self, folder: CardFolder, catalog: SqliteCatalog, room: RoomLedger, device_id: str, *,
        guard: Callable[[], AbstractContextManager[None]], lock: AbstractContextManager[Any],
    ) -> None:
        self._folder = folder
        self._catalog = catalog
        self._room = room
        self._device_id = device_id
        self._guard = guard
        self._lock = lock
        self.sync_every = 0  # > 0 inside the card's deferred_sync
        self._unsynced = 0

    def grew(self, size: int) -> None:
        """A file being copied in grew past its size: the room is checked again."""
        self._room.need(size, what="a file that grew while it was imported")

    def _grew_unlocked(self, size: int) -> None:
        with self._lock:
            self.grew(size)

    def start_deferred(self, every: int) -> None:
        self.sync_every, self._unsynced = every, 0

    def add_original(
        self,
        source: Path | bytes,
        *,
        name: str,
        now: float,
        extracted: Extraction | Callable[[Path], Extraction],
        adopt: bool = False,
        digest: str | None = None,
    ) -> tuple[ImageRecord, bool]:
        """Store a picture taken or imported here as LOCAL; (record, False) if it was known.

        ``extracted`` may be a function, called on the stored copy only for new pictures.
        ``adopt``: ``source`` is a file nobody writes again (an FTP upload handed over), on
        the card's filesystem: it is hard-linked into the card instead of copied (copied when
        it cannot be); its own name stays for the caller to remove.  ``digest``, with ``adopt``:
        the file's SHA-256, hashed by the caller as its bytes arrived (an FTP upload), so a
        linked file is not read again; the caller vouches for it (a peer checks it anyway).
        CardFullError leaves nothing behind.  A picture known only by thumbnail gets its original.
        The record is durable (original fsynced, catalog row committed) when this returns,
        unless inside ``deferred_sync``.

        A file's copy, hash and extraction run outside the card's lock: the card serves
        every other call (a peer's handshake, chunk reads) while a large file is copied.
        The lock (``guard``) is taken only to check room, to look the hash up and to adopt
        the copy.
        """
        if isinstance(source, bytes):
            with self._guard():
                digest = hashlib.sha256(source).hexdigest()
                known = self._catalog.image(digest)
                if known is not None and known.where is Where.LOCAL:
                    return known, False
                self._room.need(len(source), what=f"{display_name(name)!r}")
                temp, digest, size = self._folder.write_temp([source], len(source), grew=self.grew)
                try:
                    return self._adopt(temp, digest, size, name=name, now=now,
                                       extracted=extracted)
                finally:
                    unlink(temp)
        size = source.stat().st_size
        full: CardFullError | None = None
        with self._guard():
            try:
                self._room.need(size, what=f"{display_name(name)!r}")
            except CardFullError as exc:
                full = exc
        if full is not None:
            # A duplicate needs no room: look before refusing (reads the file once more).
            digest = hash_file(source)
            with self._guard():
                known = self._catalog.image(digest)
            if known is not None and known.where is Where.LOCAL:
                return known, False
            raise full
        linked = self._folder.link_temp(source, digest=digest) if adopt else None
        if linked is not None:
            temp, digest, copied, before = linked
            if copied > size:
                try:
                    self._grew_unlocked(copied)
                except BaseException:
                    unlink(temp)
                    raise
            size = copied
        else:
            with source.open("rb") as f:
                before = os.fstat(f.fileno())
                temp, digest, size = self._folder.write_temp(
                    iter(lambda: f.read(CHUNK), b""), size, grew=self._grew_unlocked
                )
        try:
            _same_source(source, before, size)
            facts = extracted
            if callable(extracted):
                with self._guard():
                    known = self._catalog.image(digest)
                if known is None:  # only a new picture needs its thumbnail made
                    facts = extracted(temp)
            with self._guard():
                # Room again: another import may have taken it while this file was copied.
                if (k := self._catalog.image(digest)) is None or k.where is not Where.LOCAL:
                    self._room.need(size, what=f"{display_name(name)!r}")
                return self._adopt(temp, digest, size, name=name, now=now, extracted=facts)
        finally:
            unlink(temp)

    def _adopt(
        self, temp: Path, digest: str, size: int, *, name: str, now: float,
        extracted: Extraction | Callable[[Path], Extraction],
    ) -> tuple[ImageRecord, bool]:
        known = self._catalog.image(digest)
        if known is not None and known.where is Where.LOCAL:
            return known, False
        final = self._folder.original_file(digest)
        if known is not None:  # its thumbnail and metadata came from a peer: keep them
            self._folder.place(temp, final)
            self._catalog.set_where(digest, Where.LOCAL, original_at=now)
            self._room.take(size)
            drop_superseded(self._catalog, self._folder, self._room, digest)
            record = self._catalog.image(digest)
            assert record is not None
            return record, False
        facts = extracted(temp) if callable(extracted) else extracted
        self._folder.place(temp, final)
        record = ImageRecord(
            image_id=digest,
            origin=self._device_id,
            seq=self._catalog.next_seq(self._device_id),
            name=display_name(name),
            size=size,
            mime=facts.mime[:128] or "application/octet-stream",
            capture_time=facts.capture_time,
            metadata=clean_metadata(facts.metadata),
            thumbnail=facts.thumbnail,
            where=Where.LOCAL,
            thumbnail_at=None,
            original_at=now,
        )
        try:
            self._catalog.insert_image(
                record, thumbnail_source=facts.thumbnail_source, strip=facts.strip
            )
        except BaseException:
            unlink(final)
            raise
        self._room.take(size)
        self._added()
        return record, True

    def _added(self) -> None:
        if self.sync_every:
            self._unsynced += 1
            if self._unsynced >= self.sync_every:
                self._catalog.sync()
                self._unsynced = 0


def _same_source(source: Path, before: os.stat_result, copied: int) -> None:
    """ImportRejected when ``source`` changed, shrank or vanished while it was copied."""
    try:
        after = os.stat(source)
    except FileNotFoundError:
        raise ImportRejected("it vanished while it was being imported") from None
    if (after.st_ino, after.st_dev) != (before.st_ino, before.st_dev):
        raise ImportRejected("it was replaced by another file while it was being imported")
    if after.st_size != copied or after.st_size != before.st_size:
        raise ImportRejected(
            f"it changed size while it was being imported ({before.st_size} bytes, then "
            f"{after.st_size}; {copied} read): truncated or still being written"
        )
    if after.st_mtime_ns != before.st_mtime_ns:
        raise ImportRejected("it was written to while it was being imported")
