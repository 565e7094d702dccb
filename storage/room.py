"""Room on a card: the one ledger of bytes used and bytes promised, for ``Card`` and its twin.

Used: local originals, held originals, smaller copies and partials.  Reserved:
the card's reserve, plus what each reservation (room promised to a held
original before it streams in) still promises beyond the bytes of that
original's partial, so that those bytes are never counted twice.  A write or a
promise that would pass the capacity raises CardFullError before anything changes.
``storage.card.Card`` and ``sim.memstore.MemoryStore`` both keep their room here.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.store import CardFullError, Usage

# How a card words a refusal: (bytes needed, bytes free, what needed them) -> message.
Refusal = Callable[[int, int, str], str]


class RoomLedger:
    """Capacity, reserve, bytes used and reservations of one card, kept as running totals."""

    __slots__ = ("_arrived", "_outstanding", "_promised", "_refusal", "capacity", "reserve",
                 "used")

    def __init__(self, capacity: int, *, reserve: int = 0, refusal: Refusal) -> None:
        self.capacity = capacity
        self.reserve = reserve
        self.used = 0
        self._refusal = refusal
        self._promised: dict[str, int] = {}  # image id -> bytes reserved for its held original
        self._arrived: dict[str, int] = {}  # image id -> bytes of its held partial so far
        self._outstanding = 0  # sum over reservations of what they still promise

    def usage(self) -> Usage:
        return Usage(capacity=self.capacity, used=self.used,
                     reserved=self.reserve + self._outstanding)

    def need(self, size: int, *, covered: int = 0, what: str = "this write") -> None:
        """CardFullError unless ``size`` more bytes fit, ``covered`` of them in room already promised."""
        free = self.usage().free
        if size - covered > free:
            raise CardFullError(self._refusal(size, free, what))

    def take(self, size: int) -> None:
        """``size`` more bytes are on the card (negative: fewer)."""
        self.used += size

    def give(self, size: int) -> None:
        """``size`` bytes left the card."""
        self.used -= size

    # --- reservations and the held partials that fill them ----------------------------
    def outstanding(self, image_id: str) -> int:
        """What the reservation for ``image_id`` still promises beyond its held partial."""
        size = self._promised.get(image_id)
        if size is None:
            return 0
        return max(0, size - self._arrived.get(image_id, 0))

    def covered(self, image_id: str, size: int) -> int:
        """How many of ``size`` bytes written to ``image_id``'s held partial land in promised room."""
        return min(self.outstanding(image_id), size)

    def check_promise(self, image_id: str, size: int, *, what: str) -> None:
        """CardFullError unless a reservation of ``size`` bytes for ``image_id`` (replacing any) fits."""
        arrived = self._arrived.get(image_id, 0)
        self.need(max(0, size - arrived), covered=self.outstanding(image_id), what=what)

    def promise(self, image_id: str, size: int) -> None:
        """Record a reservation (after ``check_promise``); it replaces an earlier one."""
        before = self.outstanding(image_id)
        self._promised[image_id] = size
        self._outstanding += self.outstanding(image_id) - before

    def unpromise(self, image_id: str) -> None:
        self._outstanding -= self.outstanding(image_id)
        self._promised.pop(image_id, None)

    def fill(self, image_id: str, length: int) -> None:
        """``image_id``'s held partial now holds ``length`` bytes (0: it is gone)."""
        before = self.outstanding(image_id)
        if length:
            self._arrived[image_id] = length
        else:
            self._arrived.pop(image_id, None)
        self._outstanding += self.outstanding(image_id) - before
