"""The editor's marks on an in-memory card: the marks methods of ``protocol.store.Store``.

``MemoryMarks`` is to ``sim.memstore.MemoryStore`` what ``storage.card_marks.CardMarks`` is to
the real card, with the same rules (storage.marks): a local change is stamped with this card's
device id and never before the field's last stamp, and marks from another device merge by
last writer wins.  Marks are durable at once, so a simulated crash keeps them.
"""

from __future__ import annotations

from protocol.store import ImageRecord, Stamped, StampedMarks
from storage.errors import InvalidMarks, NotFound
from storage.marks import Marks, check_stamped, marks_of, newer, stamp_changes


class MemoryMarks:
    """The marks part of ``MemoryStore``; it holds ``_marks`` (image id -> field -> mark)."""

    _device_id: str
    _marks: dict[str, dict[str, Stamped]]

    def image(self, image_id: str) -> ImageRecord | None:
        raise NotImplementedError  # MemoryStore's catalog

    def stamped_marks(self, image_id: str) -> dict[str, Stamped]:
        return dict(self._marks.get(image_id, {}))

    def all_stamped_marks(self) -> dict[str, dict[str, Stamped]]:
        return {image_id: dict(marks) for image_id, marks in self._marks.items() if marks}

    def marks(self, image_id: str) -> Marks:
        """The marks an editor sees on one picture of this card; NotFound for others."""
        self._known(image_id)
        return marks_of(self._marks.get(image_id, {}))

    def set_marks(self, image_id: str, *, now: float, **fields: object) -> Marks:
        """Change some marks of one picture, as ``Card.set_marks``: InvalidMarks or NotFound
        and nothing changed, else the new marks."""
        self._known(image_id)
        mine = self._marks.get(image_id, {})
        before = marks_of(mine)
        try:
            after = before.changed(**fields)
        except (TypeError, ValueError) as exc:
            raise InvalidMarks(str(exc)) from exc
        changes = stamp_changes(before, after, mine, now=now, device=self._device_id)
        self._marks.setdefault(image_id, {}).update(changes)
        return after

    def merge_marks(self, image_id: str, theirs: StampedMarks) -> dict[str, Stamped]:
        try:
            check_stamped(theirs)
        except (TypeError, ValueError) as exc:
            raise InvalidMarks(f"marks for {image_id[:12]} refused: {exc}") from exc
        changes = newer(self._marks.get(image_id, {}), theirs)
        if changes:
            self._marks.setdefault(image_id, {}).update(changes)
        return changes

    def _known(self, image_id: str) -> None:
        if self.image(image_id) is None:
            raise NotFound(f"picture {image_id[:12]} is not on this card")
