"""The editor's marks on a card (issue 19): ratings, colour classes, tags, captions, labels.

``CardMarks`` is the part of ``storage.card.Card`` that keeps them: each change is stamped
with the time and this card's device id, field by field, so that marks made on another
device merge in by last writer wins (``storage.marks.merge``) and no newer mark is lost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager

from storage.catalog import SqliteCatalog
from storage.errors import InvalidMarks, NotFound
from storage.marks import (
    Marks,
    Stamped,
    StampedMarks,
    check_color_class,
    check_label,
    check_stamped,
    labels_of,
    marks_of,
    newer,
    stamp_changes,
)


class CardMarks:
    """The marks methods of ``Card``; each runs under the card's lock and commits before it returns."""

    _catalog: SqliteCatalog
    _device_id: str

    def _guard(self) -> AbstractContextManager[None]:
        raise NotImplementedError  # Card's lock, held by an open card

    def marks(self, image_id: str) -> Marks:
        """The marks on one picture of this card (``Marks()`` if none); NotFound for others."""
        with self._guard():
            self._known(image_id)
            return marks_of(self._catalog.stamped_marks(image_id))

    def all_marks(self) -> dict[str, Marks]:
        """Every marked picture's marks, by image id (unmarked pictures are left out)."""
        with self._guard():
            return {i: marks_of(s) for i, s in self._catalog.all_stamped_marks().items()}

    def set_marks(self, image_id: str, *, now: float | None = None, **fields: object) -> Marks:
        """Change some marks of one picture (``rating=4, tagged=True``); the new marks.
        InvalidMarks (nothing changed) for a bad value, NotFound for an unknown picture."""
        with self._guard():
            return self._set(image_id, time.time() if now is None else now, fields)

    def _set(self, image_id: str, now: float, fields: dict[str, object]) -> Marks:
        self._known(image_id)
        mine = self._catalog.stamped_marks(image_id)
        before = marks_of(mine)
        try:
            after = before.changed(**fields)
        except (TypeError, ValueError) as exc:
            raise InvalidMarks(str(exc)) from exc
        self._catalog.put_marks(image_id, stamp_changes(before, after, mine, now=now,
                                                        device=self._device_id))
        return after

    def all_stamped_marks(self) -> dict[str, dict[str, Stamped]]:
        """Every marked picture's stamped marks, by image id."""
        with self._guard():
            return self._catalog.all_stamped_marks()

    def set_marks_of(self, ids: Sequence[str], *, now: float | None = None,
                     **fields: object) -> dict[str, Marks]:
        """``set_marks`` on several pictures in one commit: all of them, or (InvalidMarks,
        NotFound) none.  The new marks by image id."""
        with self._guard(), self._catalog.transaction():
            return {i: self._set(i, time.time() if now is None else now, fields) for i in ids}

    def stamped_marks(self, image_id: str) -> dict[str, Stamped]:
        """One picture's marks as they travel: field -> value with its (time, device) stamp."""
        with self._guard():
            return self._catalog.stamped_marks(image_id)

    def merge_marks(self, image_id: str, theirs: StampedMarks) -> dict[str, Stamped]:
        """Merge marks from another device by last writer wins; the fields that changed here.
        A picture not (yet) in the catalog keeps them too: they may come before its thumbnail."""
        try:
            check_stamped(theirs)
        except (TypeError, ValueError) as exc:
            raise InvalidMarks(f"marks for {image_id[:12]} refused: {exc}") from exc
        with self._guard():
            changes = newer(self._catalog.stamped_marks(image_id), theirs)
            self._catalog.put_marks(image_id, changes)
            return changes

    def color_labels(self) -> dict[int, str]:
        """The label of each colour class 1-8: Photo Mechanic's default unless renamed."""
        with self._guard():
            return labels_of((n, str(s.value)) for n, s in self._catalog.color_labels().items())

    def set_color_label(self, number: int, text: str, *, now: float | None = None) -> None:
        """Rename colour class ``number`` (1-8); InvalidMarks for a bad number or label."""
        try:
            check_color_class(number)
            check_label(text)
        except ValueError as exc:
            raise InvalidMarks(str(exc)) from exc
        with self._guard():
            last = self._catalog.color_labels().get(number)
            at = time.time() if now is None else now
            if last is not None and at <= last.at:
                at = math.nextafter(last.at, math.inf)  # after the last change, as set_marks
            self._catalog.put_color_label(number, Stamped(text, at, self._device_id))

    def stamped_color_labels(self) -> dict[int, Stamped]:
        with self._guard():
            return self._catalog.color_labels()

    def _known(self, image_id: str) -> None:
        if self._catalog.image(image_id) is None:
            raise NotFound(f"picture {image_id[:12]} is not on this card")


