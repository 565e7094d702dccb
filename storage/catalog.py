"""The card's catalog: one SQLite file in WAL mode, its schema versioned by migrations
(storage.schema).

Every method that changes something is one transaction (``with catalog.transaction():``
groups several).  The catalog holds no lock of its own: ``Card`` serialises calls.

Durability: ``synchronous=FULL``.  In WAL mode NORMAL survives a crash of the
process but may lose the last commits on power loss, and the protocol deletes a
local original as soon as its dispersion-list entry is durable (DESIGN.md,
"Dispersal"): losing that commit after the delete would lose the picture.  FULL
costs one WAL fsync per commit (0.3 ms on an idle disk, 2-4 ms on a busy one).
The one exception is a bulk import (``deferred_sync``): its sources still exist,
so there commits are only process-crash safe (NORMAL) and a checkpoint makes
them power-safe every few dozen pictures and at the end.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from protocol.messages import MetadataValue
from protocol.store import (
    Decision,
    DispersalState,
    DispersionEntry,
    HeldRecord,
    ImageRecord,
    Incoming,
    SealedForm,
    TransferState,
    UserDecision,
    Where,
)
from storage.errors import CatalogTooNew, StoreError
from storage.marks import Stamped, decode_value, encode_value
from storage.movies import StripFrame
from storage.schema import MIGRATIONS

CATALOG_NAME: Final = "catalog.sqlite"

_IMAGE_COLUMNS: Final = (
    "image_id, origin, seq, name, size, mime, capture_time, metadata, thumbnail,"
    " original_where, thumbnail_at, original_at, wrapped_key"
)


def _record(row: sqlite3.Row) -> ImageRecord:
    metadata: Mapping[str, MetadataValue] = json.loads(row["metadata"])
    return ImageRecord(
        image_id=row["image_id"],
        origin=row["origin"],
        seq=row["seq"],
        name=row["name"],
        size=row["size"],
        mime=row["mime"],
        capture_time=row["capture_time"],
        metadata=metadata,
        thumbnail=bytes(row["thumbnail"]),
        where=Where(row["original_where"]),
        thumbnail_at=row["thumbnail_at"],
        original_at=row["original_at"],
        wrapped_key=None if row["wrapped_key"] is None else bytes(row["wrapped_key"]),
    )


class SqliteCatalog:
    """SQL over the card's catalog file; every public change commits before it returns."""

    def __init__(self, path: Path) -> None:
        # check_same_thread=False: the node calls the card from trio's worker threads,
        # one call at a time; Card's lock is what serialises them.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._depth = 0
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"the catalog {path} cannot be read ({exc}); is it a cammesh card?") from exc
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.version
        if version > len(MIGRATIONS):
            raise CatalogTooNew(
                f"the catalog has schema version {version}, this cammesh knows up to "
                f"{len(MIGRATIONS)}: upgrade cammesh to use this card"
            )
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first, so each step runs as its own explicit transaction.
            self._db.executescript(f"BEGIN IMMEDIATE;\n{step}\nPRAGMA user_version={number};\nCOMMIT;")

    def set_deferred(self, deferred: bool) -> None:
        """NORMAL (commits survive a process crash, not yet a power cut) or back to FULL."""
        self._deferred = deferred
        self._db.execute(f"PRAGMA synchronous={'NORMAL' if deferred else 'FULL'}")

    def sync(self) -> None:
        """Make every commit so far power-safe: a checkpoint syncs the WAL, then the database."""
        self._db.execute("PRAGMA wal_checkpoint(FULL)").fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self.transaction():
            return self._db.execute(sql, params)

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
        return row

    # --- the card's own settings --------------------------------------------------
    def settings(self) -> dict[str, str]:
        return {row["key"]: row["value"] for row in self._all("SELECT key, value FROM card")}

    def set_settings(self, values: Mapping[str, str]) -> None:
        with self.transaction():
            for key, value in values.items():
                self._db.execute("INSERT OR REPLACE INTO card (key, value) VALUES (?, ?)", (key, value))

    # --- images -------------------------------------------------------------------
    def insert_image(
        self, record: ImageRecord, *, thumbnail_source: str | None,
        strip: Sequence[StripFrame] = (),
    ) -> None:
        """One new picture, and a movie's strip with it in the same transaction."""
        try:
            with self.transaction():
                self._insert_image(record, thumbnail_source)
                if strip:
                    self._put_strip(record.image_id, strip)
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"picture {record.image_id[:12]} conflicts with the catalog: seq {record.seq} "
                f"of origin {record.origin[:12]} is already another picture"
            ) from exc

    def _insert_image(self, record: ImageRecord, thumbnail_source: str | None) -> None:
        self._db.execute(
            f"INSERT INTO images ({_IMAGE_COLUMNS}, thumbnail_source)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.image_id, record.origin, record.seq, record.name, record.size,
                record.mime, record.capture_time,
                json.dumps(dict(record.metadata), allow_nan=False, sort_keys=True),
                record.thumbnail, record.where.value, record.thumbnail_at,
                record.original_at, record.wrapped_key, thumbnail_source,
            ),
        )

    # --- movie strips -----------------------------------------------------------------
    def _put_strip(self, image_id: str, strip: Sequence[StripFrame]) -> None:
        self._db.execute("DELETE FROM strip_frames WHERE image_id = ?", (image_id,))
        self._db.executemany(
            "INSERT INTO strip_frames (image_id, position, time, byte_offset, kind, jpeg)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(image_id, n, f.time, f.offset, f.kind, f.jpeg) for n, f in enumerate(strip)],
        )

    def set_strip(self, image_id: str, strip: Sequence[StripFrame]) -> None:
        """Replace the strip kept for ``image_id`` (an empty one deletes it)."""
        with self.transaction():
            self._put_strip(image_id, strip)

    def strip(self, image_id: str) -> list[StripFrame]:
        rows = self._all(
            "SELECT time, byte_offset, kind, jpeg FROM strip_frames WHERE image_id = ?"
            " ORDER BY position", (image_id,),
        )
        return [StripFrame(r["time"], r["byte_offset"], r["kind"], bytes(r["jpeg"])) for r in rows]

    def strip_points(self, image_id: str) -> list[tuple[float, int | None, str]]:
        """Each strip frame's (time, byte offset, kind), poster first, without its JPEG."""
        rows = self._all(
            "SELECT time, byte_offset, kind FROM strip_frames WHERE image_id = ?"
            " ORDER BY position", (image_id,),
        )
        return [(float(r["time"]), r["byte_offset"], str(r["kind"])) for r in rows]

    def strips_missing(self, device_id: str) -> list[str]:
        """Movies of other origins than ``device_id`` whose metadata counts strip frames,
        with none kept here; the newest thumbnail first."""
        return [r["image_id"] for r in self._all(
            "SELECT image_id FROM images WHERE mime LIKE 'video/%' AND origin != ?"
            " AND json_extract(metadata, '$.strip_frames') > 0"
            " AND image_id NOT IN (SELECT image_id FROM strip_frames)"
            " ORDER BY thumbnail_at DESC, image_id", (device_id,),
        )]

    def strip_lengths(self) -> dict[str, int]:
        """Per image id that has a strip, how many frames it has."""
        return {r["image_id"]: int(r["n"]) for r in self._all(
            "SELECT image_id, COUNT(*) AS n FROM strip_frames GROUP BY image_id"
        )}

    def image(self, image_id: str) -> ImageRecord | None:
        row = self._one(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE image_id = ?", (image_id,))
        return None if row is None else _record(row)

    def images(self) -> list[ImageRecord]:
        rows = self._all(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY origin, seq")
        return [_record(row) for row in rows]

    def images_after(self, origin: str, seq: int) -> list[ImageRecord]:
        rows = self._all(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE origin = ? AND seq > ? ORDER BY seq",
            (origin, seq),
        )
        return [_record(row) for row in rows]

    def seqs(self) -> list[tuple[str, int]]:
        return [(r["origin"], r["seq"]) for r in self._all("SELECT origin, seq FROM images ORDER BY origin, seq")]

    def next_seq(self, origin: str) -> int:
        row = self._one("SELECT MAX(seq) AS top FROM images WHERE origin = ?", (origin,))
        return 1 if row is None or row["top"] is None else int(row["top"]) + 1

    def ids_starting(self, prefix: str) -> list[str]:
        # prefix is checked to be hex by the caller, so LIKE has no wildcards to escape.
        return [r["image_id"] for r in self._all(
            "SELECT image_id FROM images WHERE image_id LIKE ? ORDER BY image_id LIMIT 2", (prefix + "%",)
        )]

    def set_where(self, image_id: str, where: Where, *, original_at: float | None) -> None:
        self._run(
            "UPDATE images SET original_where = ?, original_at = COALESCE(?, original_at)"
            " WHERE image_id = ?",
            (where.value, original_at, image_id),
        )

    def thumbnail_sources(self) -> dict[str, str | None]:
        return {r["image_id"]: r["thumbnail_source"] for r in self._all(
            "SELECT image_id, thumbnail_source FROM images"
        )}

    def local_ids(self) -> set[str]:
        return {r["image_id"] for r in self._all(
            "SELECT image_id FROM images WHERE original_where = 'local'"
        )}

    def local_bytes(self) -> int:
        row = self._one("SELECT COALESCE(SUM(size), 0) AS n FROM images WHERE original_where = 'local'")
        return 0 if row is None else int(row["n"])

    # --- per-peer transfer state ----------------------------------------------------
    def transfer_state(self, peer: str, image_id: str) -> TransferState:
        row = self._one("SELECT state FROM transfers WHERE peer = ? AND image_id = ?", (peer, image_id))
        return TransferState.UNTRANSMITTED if row is None else TransferState(row["state"])

    def transfer_request(self, peer: str, image_id: str) -> tuple[int | None, int | None]:
        """The (max_side, quality) last asked for, (None, None) when none."""
        row = self._one(
            "SELECT max_side, quality FROM transfers WHERE peer = ? AND image_id = ?", (peer, image_id)
        )
        return (None, None) if row is None else (row["max_side"], row["quality"])

    def set_transfer_state(
        self, peer: str, image_id: str, state: TransferState, max_side: int | None, quality: int | None
    ) -> None:
        self._run(
            "INSERT OR REPLACE INTO transfers (peer, image_id, state, max_side, quality)"
            " VALUES (?, ?, ?, ?, ?)",
            (peer, image_id, state.value, max_side, quality),
        )

    # --- our own user's decisions -----------------------------------------------------
    @staticmethod
    def _decision(row: sqlite3.Row) -> UserDecision:
        return UserDecision(
            row["image_id"], Decision(row["decision"]), row["max_side"], row["quality"],
            row["decided_at"],
        )

    def decision(self, image_id: str) -> UserDecision | None:
        row = self._one("SELECT * FROM decisions WHERE image_id = ?", (image_id,))
        return None if row is None else self._decision(row)

    def decisions(self) -> list[UserDecision]:
        return [self._decision(r) for r in self._all("SELECT * FROM decisions ORDER BY image_id")]

    def set_decision(
        self, image_id: str, decision: Decision, now: float, max_side: int | None,
        quality: int | None,
    ) -> None:
        self._run(
            "INSERT OR REPLACE INTO decisions (image_id, decision, max_side, quality, decided_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (image_id, decision.value, max_side, quality, now),
        )

    def clear_decision(self, image_id: str) -> None:
        self._run("DELETE FROM decisions WHERE image_id = ?", (image_id,))

    # --- the dispersion list ----------------------------------------------------------
    @staticmethod
    def _entry(row: sqlite3.Row) -> DispersionEntry:
        return DispersionEntry(row["image_id"], row["holder"], DispersalState(row["state"]), row["updated_at"])

    def dispersion(self, image_id: str) -> list[DispersionEntry]:
        rows = self._all(
            "SELECT * FROM dispersion WHERE image_id = ? ORDER BY holder", (image_id,)
        )
        return [self._entry(r) for r in rows]

    def dispersion_list(self) -> list[DispersionEntry]:
        return [self._entry(r) for r in self._all("SELECT * FROM dispersion ORDER BY image_id, holder")]

    def set_dispersion(self, image_id: str, holder: str, state: DispersalState, now: float) -> None:
        self._run(
            "INSERT OR REPLACE INTO dispersion (image_id, holder, state, updated_at) VALUES (?, ?, ?, ?)",
            (image_id, holder, state.value, now),
        )

    def remove_dispersion(self, image_id: str, holder: str) -> None:
        self._run("DELETE FROM dispersion WHERE image_id = ? AND holder = ?", (image_id, holder))

    # --- held originals, reservations, smaller copies, partials --------------------------
    def held(self, image_id: str) -> HeldRecord | None:
        row = self._one("SELECT * FROM held WHERE image_id = ?", (image_id,))
        return None if row is None else _held(row)

    def held_originals(self) -> list[HeldRecord]:
        return [_held(r) for r in self._all("SELECT * FROM held ORDER BY image_id")]

    def insert_held(self, record: HeldRecord) -> None:
        self._run(
            "INSERT OR REPLACE INTO held (image_id, owner, size, stored_at, digest)"
            " VALUES (?, ?, ?, ?, ?)",
            (record.image_id, record.owner, record.size, record.stored_at, record.digest),
        )

    # --- per-picture keys of our own originals (kept with the dispersion list) -------------
    def picture_key(self, image_id: str) -> tuple[bytes, SealedForm | None] | None:
        """The key of one of our pictures, and its sealed form once it was first sealed."""
        row = self._one("SELECT * FROM picture_keys WHERE image_id = ?", (image_id,))
        if row is None:
            return None
        form = None
        if row["sealed_digest"] is not None:
            form = SealedForm(int(row["sealed_size"]), row["sealed_digest"])
        return bytes(row["key"]), form

    def insert_picture_key(self, image_id: str, key: bytes) -> None:
        self._run("INSERT INTO picture_keys (image_id, key) VALUES (?, ?)", (image_id, key))

    def set_sealed_form(self, image_id: str, form: SealedForm) -> None:
        self._run(
            "UPDATE picture_keys SET sealed_size = ?, sealed_digest = ? WHERE image_id = ?",
            (form.size, form.digest, image_id),
        )

    def delete_held(self, image_id: str) -> None:
        self._run("DELETE FROM held WHERE image_id = ?", (image_id,))

    def reservations(self) -> dict[str, int]:
        return {r["image_id"]: int(r["size"]) for r in self._all("SELECT * FROM reservations")}

    def set_reservation(self, image_id: str, size: int) -> None:
        self._run("INSERT OR REPLACE INTO reservations (image_id, size) VALUES (?, ?)", (image_id, size))

    def delete_reservation(self, image_id: str) -> None:
        self._run("DELETE FROM reservations WHERE image_id = ?", (image_id,))

    def smaller(self) -> dict[str, int]:
        return {r["image_id"]: int(r["size"]) for r in self._all("SELECT image_id, size FROM smaller")}

    def smaller_rows(self) -> list[sqlite3.Row]:
        """Every smaller copy: image_id, size, stored_at, kept."""
        return self._all("SELECT image_id, size, stored_at, kept FROM smaller ORDER BY image_id")

    def smaller_row(self, image_id: str) -> sqlite3.Row | None:
        return self._one("SELECT image_id, size, stored_at, kept FROM smaller WHERE image_id = ?",
                         (image_id,))

    def insert_smaller(self, image_id: str, size: int, stored_at: float) -> None:
        # A new copy of another size replaces the old one; the user's choice to keep it stays.
        self._run("INSERT INTO smaller (image_id, size, stored_at) VALUES (?, ?, ?) ON CONFLICT "
                  "(image_id) DO UPDATE SET size = excluded.size, stored_at = excluded.stored_at",
                  (image_id, size, stored_at))

    def set_smaller_kept(self, image_id: str, kept: bool) -> None:
        self._run("UPDATE smaller SET kept = ? WHERE image_id = ?", (int(kept), image_id))

    def delete_smaller(self, image_id: str) -> None:
        self._run("DELETE FROM smaller WHERE image_id = ?", (image_id,))

    def partials(self) -> dict[tuple[str, Incoming], int]:
        return {
            (r["image_id"], Incoming(r["kind"])): int(r["length"])
            for r in self._all("SELECT * FROM partials")
        }

    def partial_length(self, image_id: str, kind: Incoming) -> int:
        row = self._one(
            "SELECT length FROM partials WHERE image_id = ? AND kind = ?", (image_id, kind.value)
        )
        return 0 if row is None else int(row["length"])

    def set_partials(self, lengths: dict[tuple[str, Incoming], int], *, durable: bool) -> None:
        """Record several partials' lengths in one commit.  Not ``durable``: the commit
        survives a crash of the process but a power cut may bring back an older length,
        which only makes the peer send those bytes again (Card.batched_partials)."""
        relaxed = not durable and not getattr(self, "_deferred", False)
        if relaxed:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.transaction():
                for (image_id, kind), length in lengths.items():
                    self.set_partial(image_id, kind, length)
        finally:
            if relaxed:
                self._db.execute("PRAGMA synchronous=FULL")

    def set_partial(self, image_id: str, kind: Incoming, length: int) -> None:
        self._run(
            "INSERT OR REPLACE INTO partials (image_id, kind, length) VALUES (?, ?, ?)",
            (image_id, kind.value, length),
        )

    def delete_partial(self, image_id: str, kind: Incoming) -> None:
        self._run("DELETE FROM partials WHERE image_id = ? AND kind = ?", (image_id, kind.value))

    # --- the editor's marks (storage.marks), per field with the stamp of its last change ---
    def stamped_marks(self, image_id: str) -> dict[str, Stamped]:
        return {r["field"]: _stamped(r)
                for r in self._all("SELECT * FROM marks WHERE image_id = ?", (image_id,))}

    def all_stamped_marks(self) -> dict[str, dict[str, Stamped]]:
        """Every picture's stamped marks, for the desk's board and ``cammesh ls``."""
        out: dict[str, dict[str, Stamped]] = {}
        for r in self._all("SELECT * FROM marks"):
            out.setdefault(r["image_id"], {})[r["field"]] = _stamped(r)
        return out

    def put_marks(self, image_id: str, stamped: Mapping[str, Stamped]) -> None:
        """Store these fields' values and stamps in one commit (the caller merged them)."""
        with self.transaction():
            for name, mark in stamped.items():
                self._db.execute(
                    "INSERT OR REPLACE INTO marks (image_id, field, value, changed_at, device)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (image_id, name, encode_value(mark.value), mark.at, mark.device),
                )

    def color_labels(self) -> dict[int, Stamped]:
        return {int(r["class"]): Stamped(r["label"], r["changed_at"], r["device"])
                for r in self._all("SELECT * FROM color_labels")}

    def put_color_label(self, number: int, label: Stamped) -> None:
        self._run("INSERT OR REPLACE INTO color_labels (class, label, changed_at, device)"
                  " VALUES (?, ?, ?, ?)", (number, label.value, label.at, label.device))


def _stamped(row: sqlite3.Row) -> Stamped:
    return Stamped(decode_value(row["field"], row["value"]), row["changed_at"], row["device"])


def _held(row: sqlite3.Row) -> HeldRecord:
    return HeldRecord(row["image_id"], row["owner"], row["size"], row["stored_at"], row["digest"])
