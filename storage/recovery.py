"""Opening a card after a crash: what an interrupted write left behind is put right.

A file reaches its final name only by rename after fsync, and a catalog row
points at a file only after that (``storage.files``).  So a crash leaves, at
worst, files no row points at, rows whose file someone deleted by hand, and
partials whose tail was written but never recorded; ``recover`` deletes the
first, forgets the second and trims the third, and says what it did.
"""

from __future__ import annotations

import os

from protocol.store import Incoming, Where
from storage.catalog import SqliteCatalog
from storage.files import CardFolder, unlink
from storage.room import RoomLedger


def recover(card: CardFolder, catalog: SqliteCatalog) -> list[str]:
    """Delete files no row points at, drop rows whose file is gone, trim torn partials.

    Returns one line per thing put right, for the card to log and report.
    """
    found: list[str] = []
    for leftover in sorted(card.tmp.iterdir()):
        found.append(f"removed an unfinished write {leftover.name}")
        unlink(leftover)
    local = catalog.local_ids()
    on_disk: set[str] = set()
    for shard in sorted(card.originals.iterdir()):
        if not shard.is_dir():
            found.append(f"removed {shard.name[:12]}, which does not belong in originals/")
            unlink(shard)
            continue
        for file in sorted(shard.iterdir()):
            if file.name in local:
                on_disk.add(file.name)
            else:
                found.append(f"removed original {file.name[:12]}, which the catalog does not list")
                unlink(file)
    for image_id in sorted(local - on_disk):
        # Cannot happen through this class (rows follow files); someone deleted it by hand.
        found.append(f"original {image_id[:12]} is missing from the card: marked absent")
        catalog.set_where(image_id, Where.ABSENT, original_at=None)
    held = {r.image_id for r in catalog.held_originals()}
    smaller = catalog.smaller()
    for folder, known, what in ((card.held, held, "held original"), (card.smaller, set(smaller), "smaller copy")):
        names = {f.name for f in folder.iterdir()}
        for stray in sorted(names - known):
            found.append(f"removed {what} {stray[:12]}, which the catalog does not list")
            unlink(folder / stray)
        for gone in sorted(known - names):
            found.append(f"{what} {gone[:12]} is missing from the card: forgotten")
            if what == "held original":
                catalog.delete_held(gone)
            else:
                catalog.delete_smaller(gone)
    partials = catalog.partials()
    for kind in Incoming:
        for file in sorted((card.partial / kind.value).iterdir()):
            length = partials.get((file.name, kind))
            if length is None:
                found.append(f"removed a partial {kind.value} {file.name[:12]} the catalog does not list")
                unlink(file)
            elif file.stat().st_size != length:
                # Bytes past the last committed length were never promised to anyone.
                found.append(f"trimmed partial {kind.value} {file.name[:12]} to {length} bytes")
                with file.open("r+b") as f:
                    f.truncate(min(length, file.stat().st_size))
                    os.fsync(f.fileno())
                if file.stat().st_size != length:
                    catalog.set_partial(file.name, kind, file.stat().st_size)
    for image_id, kind in partials:
        if not (card.partial / kind.value / image_id).exists():
            catalog.delete_partial(image_id, kind)
    return found


def count_room(catalog: SqliteCatalog, room: RoomLedger) -> None:
    """Count into ``room`` what the catalog lists: the bytes of the card's files, the
    reservations, and the held partials that fill them."""
    room.take(
        catalog.local_bytes()
        + sum(r.size for r in catalog.held_originals())
        + sum(catalog.smaller().values())
        + sum(catalog.partials().values())
    )
    for image_id, size in catalog.reservations().items():
        room.promise(image_id, size)
    for (image_id, kind), length in catalog.partials().items():
        if kind is Incoming.HELD:
            room.fill(image_id, length)
