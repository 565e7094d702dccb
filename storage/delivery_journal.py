"""The delivery journal: which pictures went (or are going) to which agency server.

Its own small SQLite file in the card folder (``delivery.sqlite``), never the catalog: the
catalog is the mesh's, this is one desk's outward traffic.  One row per (picture, target);
a row is made once, so a picture is queued for a target once, and once ``delivered`` it is
never sent there again, across restarts (issue 19).  ``sent`` is how many bytes of the
file the server had last time we looked, so an upload resumes where it stopped.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

JOURNAL_NAME: Final = "delivery.sqlite"
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS deliveries (
    image_id TEXT NOT NULL,
    target TEXT NOT NULL,
    remote_name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'delivered')),
    size INTEGER,
    sent INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    queued_at REAL NOT NULL,
    next_try_at REAL NOT NULL,
    delivered_at REAL,
    PRIMARY KEY (image_id, target),
    UNIQUE (target, remote_name)
);
"""


class DeliveryState(StrEnum):
    QUEUED = "queued"  # chosen (tagged, or rated enough); nothing sent yet
    SENDING = "sending"  # the upload began; ``sent`` bytes are on the server
    DELIVERED = "delivered"  # complete under its final name on the server


@dataclass(frozen=True, slots=True)
class Delivery:
    """One picture's delivery to one target."""

    image_id: str
    target: str
    remote_name: str
    state: DeliveryState
    size: int | None
    sent: int
    attempts: int
    error: str | None
    queued_at: float
    next_try_at: float
    delivered_at: float | None


class DeliveryJournal:
    """The journal file; every method is one transaction, safe to call from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a delivery recorded stays recorded
        self._db.executescript(SCHEMA)

    @classmethod
    def beside(cls, card_path: Path) -> DeliveryJournal:
        return cls(card_path / JOURNAL_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _row(self, row: sqlite3.Row) -> Delivery:
        return Delivery(**{**dict(row), "state": DeliveryState(row["state"])})

    def queue(self, image_id: str, target: str, name: str, now: float) -> bool:
        """Queue ``image_id`` for ``target`` under ``name`` (made unique among the target's
        names); False when it was queued before, whatever became of it."""
        stem, dot, ext = name.rpartition(".")
        stem, ext = (stem, dot + ext) if dot and stem else (name, "")
        with self._lock:
            if self._db.execute("SELECT 1 FROM deliveries WHERE image_id = ? AND target = ?",
                                (image_id, target)).fetchone():
                return False
            candidate, n = name, 1
            while self._db.execute("SELECT 1 FROM deliveries WHERE target = ? AND remote_name = ?",
                                   (target, candidate)).fetchone():
                n += 1
                candidate = f"{stem}-{n}{ext}"
            self._db.execute(
                "INSERT INTO deliveries (image_id, target, remote_name, state, queued_at, "
                "next_try_at) VALUES (?, ?, ?, 'queued', ?, ?)",
                (image_id, target, candidate, now, now))
            return True

    def withdraw(self, image_id: str, target: str) -> bool:
        """Forget a delivery nothing of which was sent yet (the editor untagged the picture);
        False, keeping it, once it began."""
        with self._lock:
            gone = self._db.execute("DELETE FROM deliveries WHERE image_id = ? AND target = ? "
                                    "AND state = 'queued' AND sent = 0", (image_id, target))
            return gone.rowcount > 0

    def get(self, image_id: str, target: str) -> Delivery | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM deliveries WHERE image_id = ? AND target = ?",
                                   (image_id, target)).fetchone()
        return None if row is None else self._row(row)

    def entries(self, target: str) -> list[Delivery]:
        """Every delivery to ``target``, in the order they were queued."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM deliveries WHERE target = ? "
                                    "ORDER BY queued_at, rowid", (target,)).fetchall()
        return [self._row(r) for r in rows]

    def due(self, target: str, now: float) -> Delivery | None:
        """The next delivery not yet done whose retry time has come (oldest first)."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM deliveries WHERE target = ? AND state != 'delivered' "
                "AND next_try_at <= ? ORDER BY next_try_at, queued_at, rowid LIMIT 1",
                (target, now)).fetchone()
        return None if row is None else self._row(row)

    def next_due_at(self, target: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_try_at) FROM deliveries WHERE target = ? "
                                   "AND state != 'delivered'", (target,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def sending(self, image_id: str, target: str, *, size: int, sent: int) -> None:
        """The upload is under way: ``sent`` of ``size`` bytes are on the server."""
        self._set(image_id, target, "state = 'sending', size = ?, sent = ?", (size, sent))

    def failed(self, image_id: str, target: str, reason: str, *, retry_at: float) -> None:
        """An attempt failed (a refused login, a dropped link...): try again at ``retry_at``."""
        self._set(image_id, target, "attempts = attempts + 1, error = ?, next_try_at = ?",
                  (reason, retry_at))

    def delivered(self, image_id: str, target: str, now: float) -> None:
        self._set(image_id, target,
                  "state = 'delivered', sent = COALESCE(size, sent), error = NULL, delivered_at = ?",
                  (now,))

    def _set(self, image_id: str, target: str, assignments: str, values: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(f"UPDATE deliveries SET {assignments} WHERE image_id = ? AND target = ?",
                             (*values, image_id, target))
