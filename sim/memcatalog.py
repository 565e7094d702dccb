"""The in-memory card's catalog: one record per picture, in the catalog's (origin, seq) order.

Kept ordered as pictures arrive, with each origin's sequence numbers sorted and the highest
one with no gap below it (what ``seen`` reports to peers), so that the snapshots the protocol
asks for on hot paths cost one pass.  A snapshot is a tuple, kept until the catalog changes.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from protocol.store import ImageRecord, StoreError


class MemoryCatalog:
    """``records`` by image id (public: the store's ``image`` is its ``get``)."""

    def __init__(self) -> None:
        self.records: dict[str, ImageRecord] = {}
        self._by_origin: dict[str, dict[int, str]] = {}  # origin -> seq -> image id
        self._seqs: dict[str, list[int]] = {}  # origin -> its seqs, sorted
        self._top: dict[str, int] = {}  # origin -> highest seq with no gap below it
        # The catalog's order, kept as pictures arrive: (origin, seq) keys and their image ids.
        self._order_keys: list[tuple[str, int]] = []
        self._order: list[str] = []
        self._snapshot: tuple[ImageRecord, ...] | None = None  # records in that order

    def in_order(self) -> tuple[ImageRecord, ...]:
        """Every record, ordered by (origin, seq)."""
        if self._snapshot is None:
            self._snapshot = tuple(map(self.records.__getitem__, self._order))
        return self._snapshot

    def after(self, origin: str, seq: int) -> list[ImageRecord]:
        """Records of ``origin`` with a sequence number above ``seq``, in order."""
        by_seq = self._by_origin.get(origin, {})
        seqs = self._seqs.get(origin, [])
        return [self.records[by_seq[s]] for s in seqs[bisect.bisect_right(seqs, seq) :]]

    def seen(self) -> Mapping[str, int]:
        """Per origin, the highest seq such that every record 1..seq is here (0 after a gap at 1)."""
        return dict(self._top)

    def next_seq(self, origin: str) -> int:
        seqs = self._seqs.get(origin)
        return seqs[-1] + 1 if seqs else 1

    def put(self, record: ImageRecord) -> None:
        """Replace a record (its origin and seq unchanged)."""
        self.records[record.image_id] = record
        self._snapshot = None

    def insert(self, record: ImageRecord) -> None:
        """Add a record, or replace the one of the same picture; StoreError if its (origin,
        seq) is another picture's."""
        by_seq = self._by_origin.setdefault(record.origin, {})
        other = by_seq.get(record.seq)
        if other is not None and other != record.image_id:
            raise StoreError(
                f"picture {record.image_id[:12]} conflicts with the catalog: seq {record.seq} "
                f"of origin {record.origin[:12]} is already picture {other[:12]}"
            )
        self._snapshot = None
        if other is None:
            key = (record.origin, record.seq)
            at = bisect.bisect_left(self._order_keys, key)
            self._order_keys.insert(at, key)
            self._order.insert(at, record.image_id)
            bisect.insort(self._seqs.setdefault(record.origin, []), record.seq)
            by_seq[record.seq] = record.image_id
            top = self._top.get(record.origin, 0)
            while top + 1 in by_seq:
                top += 1
            self._top[record.origin] = top
        self.records[record.image_id] = record
