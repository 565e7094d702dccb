"""Smaller copies received from peers (FIG. 10, S64-S65), kept on a card beside its originals.

``CardSmaller`` is the part of ``storage.card.Card`` that lists, reads and keeps them.  A copy
stands in for an original that is not here yet: once the original is (pulled, collected,
imported), ``drop_superseded`` removes the copy in the same call, unless the user keeps it on
purpose (``keep_smaller``, issue 17) — e.g. a 1024 px copy for a web gallery.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass

from protocol.store import Where
from storage.catalog import SqliteCatalog
from storage.errors import NotFound
from storage.files import CardFolder, read_range, unlink
from storage.room import RoomLedger


@dataclass(frozen=True, slots=True)
class SmallerCopy:
    """One smaller copy on this card: its bytes, when it arrived, and whether the user keeps it."""

    image_id: str
    size: int
    stored_at: float
    kept: bool


class CardSmaller:
    """The smaller-copy methods of ``Card``; each runs under the card's lock."""

    _catalog: SqliteCatalog
    _folder: CardFolder
    _room: RoomLedger

    def _guard(self) -> AbstractContextManager[None]:
        raise NotImplementedError  # Card's lock, held by an open card

    def smaller_copies(self) -> dict[str, int]:
        """The smaller copies this card keeps, finished and verified: image id -> size in bytes."""
        with self._guard():
            return self._catalog.smaller()

    def smaller_details(self) -> dict[str, SmallerCopy]:
        """Every smaller copy with its size, arrival time and whether it is kept on purpose."""
        with self._guard():
            return smaller_details(self._catalog)

    def read_smaller(self, image_id: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of the smaller copy kept for ``image_id``; NotFound if none is."""
        with self._guard():
            if self._catalog.smaller_row(image_id) is None:
                raise NotFound(f"this card keeps no smaller copy of {image_id[:12]}")
            return read_range(self._folder.smaller / image_id, offset, length)

    def keep_smaller(self, image_id: str, keep: bool = True) -> SmallerCopy | None:
        """Keep this picture's smaller copy after its original arrives (or, ``keep=False``, let
        it go then — at once if the original is already here: None is returned).  NotFound
        when the card has no smaller copy of it."""
        with self._guard():
            if self._catalog.smaller_row(image_id) is None:
                raise NotFound(
                    f"this card has no smaller copy of {image_id[:12]} to keep; ask for one "
                    "first (`cammesh request ID --max-side PX`, or Transfer with a long edge)"
                )
            self._catalog.set_smaller_kept(image_id, keep)
            drop_superseded(self._catalog, self._folder, self._room, image_id)
            row = self._catalog.smaller_row(image_id)
            return None if row is None else _copy(row)


def smaller_details(catalog: SqliteCatalog) -> dict[str, SmallerCopy]:
    """Every smaller copy a catalog lists (also read by ``cammesh ls`` beside a running node)."""
    return {r["image_id"]: _copy(r) for r in catalog.smaller_rows()}


def drop_superseded(catalog: SqliteCatalog, folder: CardFolder, room: RoomLedger, image_id: str) -> int:
    """Remove the smaller copy of a picture whose original is on the card now, unless it is
    kept; the bytes freed.  The row goes first: a crash between leaves a stray file, which
    ``Card.open`` removes (storage.recovery), never a row without its file."""
    row = catalog.smaller_row(image_id)
    if row is None or row["kept"]:
        return 0
    record = catalog.image(image_id)
    if record is None or record.where is not Where.LOCAL:
        return 0
    catalog.delete_smaller(image_id)
    unlink(folder.smaller / image_id)
    size = int(row["size"])
    room.give(size)
    return size


def _copy(row: sqlite3.Row) -> SmallerCopy:
    return SmallerCopy(row["image_id"], int(row["size"]), float(row["stored_at"]), bool(row["kept"]))
