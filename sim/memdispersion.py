"""The in-memory card's dispersion list: where each of its originals went, and in what state.

Kept flat, with its keys sorted as entries come and go, so that the snapshot the protocol
asks for on hot paths is one C-level pass instead of a sort of every image's holders.  A
snapshot is a tuple, kept until the list changes: a caller that changes the list while it
walks one walks the snapshot, as it would a fresh list.
"""

from __future__ import annotations

import bisect

from protocol.store import DispersionEntry


class MemoryDispersionList:
    """Entries by (image id, holder); each holder of a picture at most once."""

    def __init__(self) -> None:
        self._by_image: dict[str, dict[str, DispersionEntry]] = {}  # image -> holder -> entry
        self._flat: dict[tuple[str, str], DispersionEntry] = {}
        self._keys: list[tuple[str, str]] = []  # (image id, holder), sorted
        self._sorted: tuple[DispersionEntry, ...] | None = None

    def of(self, image_id: str) -> list[DispersionEntry]:
        """The entries of one picture, by holder."""
        entries = self._by_image.get(image_id)
        if not entries:
            return []
        if len(entries) == 1:  # the usual case (one replica): nothing to sort
            return list(entries.values())
        return [entries[holder] for holder in sorted(entries)]

    def snapshot(self) -> tuple[DispersionEntry, ...]:
        """Every entry, by image id and holder."""
        if self._sorted is None:
            self._sorted = tuple(map(self._flat.__getitem__, self._keys))
        return self._sorted

    def set(self, entry: DispersionEntry) -> None:
        """Add the entry, or replace the one for the same picture and holder."""
        self._by_image.setdefault(entry.image_id, {})[entry.holder] = entry
        key = (entry.image_id, entry.holder)
        if key not in self._flat:
            bisect.insort(self._keys, key)
        self._flat[key] = entry
        self._sorted = None

    def remove(self, image_id: str, holder: str) -> None:
        """Drop the entry (nothing happens if there is none)."""
        entries = self._by_image.get(image_id)
        if entries is not None and entries.pop(holder, None) is not None:
            key = (image_id, holder)
            del self._flat[key]
            keys = self._keys
            del keys[bisect.bisect_left(keys, key)]
            self._sorted = None
            if not entries:
                del self._by_image[image_id]
