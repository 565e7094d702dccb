"""Incoming transfers: partials that resume from their last recorded length, verified at the end.

Each unfinished original, held original, smaller copy or sealed original
coming in is a file under ``partial/<kind>/<id>`` and a catalog row with its
recorded length.  Between chunks the file stays open with a running SHA-256,
so ``finish_partial`` need not read it back; only a verified, fsynced and
renamed file ever counts (``storage.files``).  What ``batched_partials`` may
cost on a crash is said in ``sync``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from protocol.store import HeldRecord, ImageRecord, Incoming, Where
from storage.card_smaller import drop_superseded
from storage.catalog import SqliteCatalog
from storage.errors import HashMismatch, NotFound, StoreError
from storage.files import CHUNK, CardFolder, fsync_dir, hash_file, unlink
from storage.room import RoomLedger
from storage.sealed_form import SealedOriginals

PARTIALS_OPEN: Final = 8  # incoming partials kept open between their chunks


@dataclass(eq=False)
class _OpenPartial:
    """An incoming partial between its chunks: the open file, the running SHA-256 of every
    byte in it, how many of them the catalog records and how many are fsynced."""

    file: io.FileIO
    length: int
    recorded: int
    synced: int
    digest: hashlib._Hash
    new: bool  # its directory entry is not fsynced yet


class IncomingPartials:
    """The card's incoming partials; the card calls it under its lock."""

    def __init__(
        self, folder: CardFolder, catalog: SqliteCatalog, room: RoomLedger, sealed: SealedOriginals,
        *, grew: Callable[[int], None],
    ) -> None:
        self._folder = folder
        self._catalog = catalog
        self._room = room
        self._sealed = sealed
        self._grew = grew
        self._open_partials: dict[tuple[str, Incoming], _OpenPartial] = {}
        self.batching = 0  # > 0 inside the card's batched_partials

    def close(self) -> None:
        """Record what the open partials hold and close their files (the card is closing)."""
        try:
            self.sync()
        finally:
            for op in self._open_partials.values():
                op.file.close()
            self._open_partials.clear()

    def _partial_length(self, image_id: str, kind: Incoming) -> int:
        op = self._open_partials.get((image_id, kind))
        return op.length if op is not None else self._catalog.partial_length(image_id, kind)

    def partial_offset(self, image_id: str, kind: Incoming) -> int:
        return self._partial_length(image_id, kind)

    def _open_partial(self, key: tuple[str, Incoming], have: int) -> _OpenPartial:
        """The partial's open file, positioned at ``have``, with the hash of what it holds."""
        op = self._open_partials.get(key)
        if op is not None:
            return op
        if len(self._open_partials) >= PARTIALS_OPEN:  # the one written longest ago
            oldest = next(iter(self._open_partials))
            self.sync()
            self._open_partials.pop(oldest).file.close()
        path = self._folder.partial_file(*key)
        new = not path.exists()
        f = io.FileIO(path, "x+" if new else "r+")
        try:
            digest = hashlib.sha256()
            left = have
            while left:  # a partial resumed after a restart: hash what it kept, once
                block = f.read(min(CHUNK, left))
                if not block:
                    raise StoreError(f"partial {key[1].value} {key[0][:12]} is shorter than {have} bytes")
                digest.update(block)
                left -= len(block)
            f.truncate(have)
        except BaseException:
            f.close()
            raise
        op = _OpenPartial(f, have, have, have, digest, new)
        self._open_partials[key] = op
        return op

    def sync(self, *, hard: bool = True) -> None:
        """Record every open partial's written length in the catalog.

        ``hard``: fsync the files first and commit power-safe, so the lengths hold through
        a power cut.  Soft (the end of a ``batched_partials`` block): one commit that holds
        through a crash of the process, no fsync; after a power cut the catalog may name
        an older length (the file is trimmed to it) or a newer one than the disk kept (a
        shorter file is taken at its length; a torn tail fails the final hash, and the
        partial is sent again).  Either way only progress is lost, never a picture: an
        original counts only after ``finish_partial`` fsyncs, renames and commits it.
        """
        unrecorded = [op for op in self._open_partials.values() if op.recorded != op.length]
        unsynced = [op for op in self._open_partials.values()
                    if hard and (op.synced != op.length or op.new)]
        if not unrecorded and not unsynced:
            return
        try:
            for op in unsynced:
                os.fsync(op.file.fileno())
            for key in [k for k, op in self._open_partials.items() if op in unsynced and op.new]:
                fsync_dir(self._folder.partial_file(*key).parent)
            self._catalog.set_partials(
                {key: op.length for key, op in self._open_partials.items()
                 if op in unrecorded or op in unsynced}, durable=hard)
        except BaseException:
            for key, op in list(self._open_partials.items()):  # back to what is recorded
                if op in unrecorded or op in unsynced:
                    self._room.give(op.length - op.recorded)
                    if key[1] is Incoming.HELD:
                        self._room.fill(key[0], op.recorded)
                    with contextlib.suppress(OSError):
                        op.file.truncate(op.recorded)
                    op.file.close()
                    del self._open_partials[key]
            raise
        for op in self._open_partials.values():
            op.recorded = op.length
            if hard:
                op.synced, op.new = op.length, False

    def _close_partial(self, image_id: str, kind: Incoming) -> tuple[int, str | None]:
        """Close the partial's file if open: its length, and its hash when it was open."""
        op = self._open_partials.pop((image_id, kind), None)
        if op is None:
            return self._catalog.partial_length(image_id, kind), None
        op.file.close()
        return op.length, op.digest.hexdigest()

    def write_partial(self, image_id: str, kind: Incoming, offset: int, data: bytes) -> None:
        key = (image_id, kind)
        self._folder.partial_file(image_id, kind)  # a peer's id is checked before anything else
        have = self._partial_length(image_id, kind)
        if offset != have:
            raise StoreError(f"partial {kind.value} {image_id[:12]} is at {have} bytes, not {offset}")
        held = kind is Incoming.HELD
        covered = self._room.covered(image_id, len(data)) if held else 0
        self._room.need(len(data), covered=covered, what=f"a chunk of {image_id[:12]}")
        op = self._open_partial(key, have)
        try:
            view = memoryview(data)
            while view:
                view = view[op.file.write(view) or 0:]
        except OSError:
            op.file.truncate(offset)  # a real disk full: leave the partial as it was
            op.file.seek(offset)
            raise
        op.length += len(data)
        op.digest.update(data)
        self._room.take(len(data))
        if held:
            self._room.fill(image_id, op.length)
        if not self.batching:
            self.sync()

    def finish_partial(
        self, image_id: str, kind: Incoming, digest: str, now: float, *, owner: str | None = None
    ) -> None:
        path = self._folder.partial_file(image_id, kind)
        record = self._catalog.image(image_id)
        if kind is Incoming.HELD and owner is None:
            raise StoreError("a held original needs its owner's device id")
        if kind is not Incoming.HELD and record is None:
            raise NotFound(f"picture {image_id[:12]} is not in the catalog; its thumbnail must come first")
        op = self._open_partials.get((image_id, kind))
        if op is not None:
            os.fsync(op.file.fileno())  # before the rename that makes it count (_place)
        length, actual = self._close_partial(image_id, kind)
        if actual is None:  # not written since the card opened: hash what the file holds
            actual = hash_file(path) if path.exists() else hashlib.sha256().hexdigest()
        if actual != digest or (kind is Incoming.ORIGINAL and record and length != record.size):
            self._drop_partial(image_id, kind, length)
            raise HashMismatch(
                f"the {kind.value} received for {image_id[:12]} hashes to {actual[:12]}, "
                f"not {digest[:12]}; it was discarded and must be sent again"
            )
        if not path.exists():
            path.write_bytes(b"")
        if kind is Incoming.SEALED:
            assert record is not None
            if record.where is Where.LOCAL:
                self._drop_partial(image_id, kind, length)
                return
            self._finish_sealed(image_id, path, length, digest, record, now)
        elif kind is Incoming.ORIGINAL:
            assert record is not None
            if record.where is Where.LOCAL:
                self._drop_partial(image_id, kind, length)
                return
            self._folder.place(path, self._folder.original_file(image_id))
            with self._catalog.transaction():
                self._catalog.delete_partial(image_id, kind)
                self._catalog.set_where(image_id, Where.LOCAL, original_at=now)
            drop_superseded(self._catalog, self._folder, self._room, image_id)
        elif kind is Incoming.HELD:
            assert owner is not None
            old = self._catalog.held(image_id)
            self._folder.place(path, self._folder.held / image_id)
            with self._catalog.transaction():
                self._catalog.delete_partial(image_id, kind)
                self._catalog.delete_reservation(image_id)
                self._catalog.insert_held(HeldRecord(image_id, owner, length, now, digest))
            self._room.unpromise(image_id)
            self._room.fill(image_id, 0)
            self._room.give(old.size if old else 0)
        else:
            old_size = self._catalog.smaller().get(image_id, 0)
            self._folder.place(path, self._folder.smaller / image_id)
            with self._catalog.transaction():
                self._catalog.delete_partial(image_id, kind)
                self._catalog.insert_smaller(image_id, length, now)
            self._room.give(old_size)

    def discard_partial(self, image_id: str, kind: Incoming) -> None:
        length, _ = self._close_partial(image_id, kind)
        self._drop_partial(image_id, kind, length)

    def _drop_partial(self, image_id: str, kind: Incoming, length: int) -> None:
        self._close_partial(image_id, kind)
        self._catalog.delete_partial(image_id, kind)
        unlink(self._folder.partial_file(image_id, kind))
        self._room.give(length)
        if kind is Incoming.HELD:
            self._room.fill(image_id, 0)

    def _finish_sealed(self, image_id: str, path: Path, length: int, digest: str,
                       record: ImageRecord, now: float) -> None:
        """A sealed original home from its holder: verify, open record by record, keep LOCAL."""
        try:
            temp, size = self._sealed.open_home(path, length, digest, record, grew=self._grew)
        except HashMismatch:
            self._drop_partial(image_id, Incoming.SEALED, length)
            raise
        self._folder.place(temp, self._folder.original_file(image_id))
        with self._catalog.transaction():
            self._catalog.delete_partial(image_id, Incoming.SEALED)
            self._catalog.set_where(image_id, Where.LOCAL, original_at=now)
        unlink(path)
        self._room.take(size - length)
        drop_superseded(self._catalog, self._folder, self._room, image_id)
