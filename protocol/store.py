"""The storage interface the protocol needs, defined here so that protocol/ imports no storage.

``storage.card.Card`` implements it on a real card (files + SQLite); ``sim``
has an in-memory twin.  Both pass ``tests/contract/test_store_contract.py``.

Contract, for every method: it is synchronous; when it returns, what it
changed is durable (one transaction, files fsynced); when it raises, nothing
changed.  Ids are 64-character lowercase hex SHA-256 strings.  Names that came
from a peer are never used as paths.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from protocol.errors import CammeshError
from protocol.messages import MetadataValue


class StoreError(CammeshError):
    """A storage operation the protocol asked for could not be done."""


class CardFullError(StoreError):
    """The write would pass the card's capacity; nothing was written."""


class NotFound(StoreError):
    """No such image, original, partial or held original on this card."""


class HashMismatch(StoreError):
    """Received bytes do not hash to what was promised; the partial was discarded."""


class Where(enum.StrEnum):
    """Where a picture's original is, from this card's point of view."""

    LOCAL = "local"  # a complete, verified copy is on this card
    DISPERSED = "dispersed"  # we own it; holders on the dispersion list have it
    ABSENT = "absent"  # we only have its thumbnail and metadata


class TransferState(enum.StrEnum):
    """Per-peer, per-picture state of what we sent (DESIGN.md; the catalog keeps it)."""

    UNTRANSMITTED = "untransmitted"
    THUMBNAIL_SENT = "thumbnail_sent"
    REQUESTED = "requested"
    ORIGINAL_SENT = "original_sent"
    REFUSED = "refused"


class DispersalState(enum.StrEnum):
    """One dispersion-list entry's life: asked, accepted, stored (durable at the holder)."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    STORED = "stored"
    COLLECTING = "collecting"


class Decision(enum.StrEnum):
    """Our own user's decision about a picture's original (FIG. 13B: asked for, "not necessary")."""

    REQUESTED = "requested"  # wanted on this card (a peer's picture, or ours brought home)
    REFUSED = "refused"  # not needed: never pulled


class Incoming(enum.StrEnum):
    """Where a finished incoming transfer lands."""

    ORIGINAL = "original"  # our own catalog's original (sync, read-out, collection back)
    HELD = "held"  # held for another owner (dispersal)
    SMALLER = "smaller"  # a recompressed copy of a picture we have the thumbnail of
    SEALED = "sealed"  # one of our own originals back from a holder, sealed: opened, then LOCAL


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One picture in the catalog: its thumbnail and metadata, and where its original is."""

    image_id: str
    origin: str
    seq: int
    name: str
    size: int
    mime: str
    capture_time: float | None
    metadata: Mapping[str, MetadataValue]
    thumbnail: bytes
    where: Where
    thumbnail_at: float | None = None  # when the thumbnail arrived (None: made here)
    original_at: float | None = None  # when the original arrived or was stored here
    wrapped_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """An original this card holds for another device."""

    image_id: str
    owner: str
    size: int
    stored_at: float
    digest: str  # SHA-256 of the bytes held (sealed: not the image id); verified on store


@dataclass(frozen=True, slots=True)
class SealedForm:
    """How one of our originals travels to holders: sealed with its own key (issue 7, FIG. 20).

    ``size`` and ``digest`` (SHA-256) are of the sealed bytes; a holder verifies and
    answers STORED with ``digest``, and a collection is checked against it.
    """

    size: int
    digest: str


@dataclass(frozen=True, slots=True)
class UserDecision:
    """A decision of this device's user, durable so that it outlives a restart."""

    image_id: str
    decision: Decision
    max_side: int | None  # a smaller copy was asked for (FIG. 10, S64-S65)
    quality: int | None
    decided_at: float


@dataclass(frozen=True, slots=True)
class DispersionEntry:
    """A dispersion-list row: which holder has (or is getting) which of our originals."""

    image_id: str
    holder: str
    state: DispersalState
    updated_at: float


@dataclass(frozen=True, slots=True)
class Usage:
    """Room on the card, in bytes.  ``free`` = capacity - used - reserved, never negative."""

    capacity: int
    used: int
    reserved: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used - self.reserved)


# --- the editor's marks (issue 19): one stamped value per field, merged by last writer wins ---

MarkValue = int | bool | str | tuple[str, ...] | None
"""A mark's value: a rating or colour class, the tag, a caption field, the keywords; None unset."""


def canonical_mark(value: MarkValue) -> str:
    """A mark's value as canonical JSON: how the catalog keeps it, and what ties are broken on."""
    return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Stamped:
    """One field's value with the stamp of its last change: (time, device id)."""

    value: MarkValue
    at: float
    device: str

    def order(self) -> tuple[float, str, str]:
        """What last writer wins compares: time, then device id, then the value itself."""
        return (self.at, self.device, canonical_mark(self.value))


StampedMarks = Mapping[str, Stamped]
"""A picture's marks as they travel: field name -> its last change (unset fields absent)."""


def selected(stamped: StampedMarks) -> bool:
    """An editor's select: tagged, or rated one star or more (its original is pulled first)."""
    tagged, rating = stamped.get("tagged"), stamped.get("rating")
    return (tagged is not None and tagged.value is True) or (
        rating is not None and type(rating.value) is int and rating.value >= 1
    )


class Store(Protocol):
    """What the node logic may ask of a card.  Every call is durable on return."""

    @property
    def device_id(self) -> str: ...

    def usage(self) -> Usage: ...

    # --- the catalog -----------------------------------------------------------
    def image(self, image_id: str) -> ImageRecord | None: ...

    def images(self) -> Iterable[ImageRecord]:
        """Every picture in the catalog, ordered by (origin, seq)."""
        ...

    def images_after(self, origin: str, seq: int) -> Iterable[ImageRecord]:
        """Pictures of ``origin`` with a sequence number above ``seq``, in order."""
        ...

    def seen(self) -> Mapping[str, int]:
        """Per origin, the highest seq such that every thumbnail 1..seq is in the catalog.

        Every origin with a picture in the catalog is named (0 when its seq 1 is missing).
        """
        ...

    def add_thumbnail(self, record: ImageRecord, now: float) -> bool:
        """Record a peer's thumbnail and metadata (``where`` ABSENT); False if already known."""
        ...

    # --- originals ---------------------------------------------------------------
    def read_original(self, image_id: str, offset: int, length: int) -> bytes:
        """Bytes of a LOCAL original; raises NotFound otherwise."""
        ...

    def smaller_copy(self, image_id: str, max_side: int | None, quality: int | None) -> bytes:
        """A recompressed JPEG of a LOCAL original (FIG. 10, S64-S65)."""
        ...

    def free_original(self, image_id: str, now: float) -> None:
        """Delete our LOCAL original and mark it DISPERSED; thumbnail and metadata stay.

        Raises StoreError unless the dispersion list has at least one STORED entry for it.
        """
        ...

    # --- sealed originals (holders get ciphertext they cannot open) -------------------
    def sealed_form(self, image_id: str) -> SealedForm:
        """The sealed form of one of our pictures' originals.

        The first call for a LOCAL original makes its per-picture key and keeps it (with
        the sealed size and digest) beside the dispersion list; later calls return the
        same form, also once the original was freed.  NotFound if neither exists.
        """
        ...

    def read_sealed(self, image_id: str, offset: int, length: int) -> bytes:
        """Bytes of the sealed form of a LOCAL original (``sealed_form`` made its key)."""
        ...

    def open_sealed(self, image_id: str, offset: int, sealed: bytes) -> bytes:
        """The plaintext of whole sealed records starting at sealed ``offset``.

        ``offset`` is a record boundary; ``sealed`` is whole records (only the picture's
        last may be short).  HashMismatch if any record fails authentication.
        """
        ...

    def picture_key(self, image_id: str, *, create: bool = False) -> bytes | None:
        """The per-picture key of one of our pictures (None: none made yet).

        ``create`` makes and keeps one (durably) if there is none; NotFound unless the
        picture is in the catalog and this card's own.
        """
        ...

    # --- incoming transfers (resumable) ---------------------------------------------
    def partial_offset(self, image_id: str, kind: Incoming) -> int:
        """Bytes of an unfinished incoming transfer already durable (0 if none)."""
        ...

    def write_partial(self, image_id: str, kind: Incoming, offset: int, data: bytes) -> None:
        """Append at ``offset`` (must equal partial_offset); CardFullError if it would not fit."""
        ...

    def finish_partial(
        self, image_id: str, kind: Incoming, digest: str, now: float, *, owner: str | None = None
    ) -> None:
        """Verify the SHA-256 of the whole partial, then make it durable where ``kind`` says.

        A transfer that wrote no byte finishes an empty partial (a zero-byte original).

        ORIGINAL: the catalog row becomes LOCAL with ``original_at = now``.
        HELD: a HeldRecord for ``owner``.  SMALLER: kept beside the catalog row.
        SEALED: ``digest`` must be our sealed form's; the bytes are opened with the
        picture's key and must hash to the image id; then as ORIGINAL.
        Raises HashMismatch (partial discarded) when the digest is wrong.
        """
        ...

    def discard_partial(self, image_id: str, kind: Incoming) -> None: ...

    # --- originals held for others ----------------------------------------------------
    def reserve(self, image_id: str, size: int) -> None:
        """Promise ``size`` bytes to an incoming held original; CardFullError if no room."""
        ...

    def unreserve(self, image_id: str) -> None: ...

    def held(self, image_id: str) -> HeldRecord | None: ...

    def held_originals(self) -> Iterable[HeldRecord]: ...

    def read_held(self, image_id: str, offset: int, length: int) -> bytes: ...

    def release_held(self, image_id: str) -> None:
        """Delete a held original (its owner collected it for good)."""
        ...

    # --- the dispersion list ----------------------------------------------------------
    def dispersion(self, image_id: str) -> list[DispersionEntry]: ...

    def dispersion_list(self) -> Iterable[DispersionEntry]: ...

    def set_dispersion(
        self, image_id: str, holder: str, state: DispersalState, now: float
    ) -> None: ...

    def remove_dispersion(self, image_id: str, holder: str) -> None: ...

    # --- per-peer transfer state ------------------------------------------------------
    def transfer_state(self, peer: str, image_id: str) -> TransferState: ...

    def set_transfer_state(
        self,
        peer: str,
        image_id: str,
        state: TransferState,
        *,
        max_side: int | None = None,
        quality: int | None = None,
    ) -> None: ...

    # --- our own user's decisions -----------------------------------------------------
    def decision(self, image_id: str) -> UserDecision | None:
        """What our user decided about this picture's original (None: nothing yet)."""
        ...

    def decisions(self) -> Iterable[UserDecision]:
        """Every decision of our user, ordered by image id."""
        ...

    def set_decision(
        self,
        image_id: str,
        decision: Decision,
        now: float,
        *,
        max_side: int | None = None,
        quality: int | None = None,
    ) -> None:
        """Record (or replace) our user's decision about a picture's original."""
        ...

    def clear_decision(self, image_id: str) -> None:
        """Forget our user's decision (done with; nothing happens if there is none)."""
        ...

    # --- the editor's marks (protocol/marks.py carries them between devices) -----------
    def stamped_marks(self, image_id: str) -> dict[str, Stamped]:
        """One picture's marks, field -> its last change ({} if none; any image id)."""
        ...

    def all_stamped_marks(self) -> dict[str, dict[str, Stamped]]:
        """Every marked picture's stamped marks, by image id (also pictures not catalogued)."""
        ...

    def merge_marks(self, image_id: str, theirs: StampedMarks) -> dict[str, Stamped]:
        """Merge another device's marks by last writer wins (per field the greatest
        ``Stamped.order``); the fields that changed here.  A picture not in the catalog
        keeps them too (they may come before its thumbnail).  StoreError, nothing changed,
        if a value is not a mark the card can keep (out of range, control characters).
        """
        ...


# --- movie strips (FIG. 15-16), beside the contract ---------------------------------------------


@dataclass(frozen=True, slots=True)
class StripFrame:
    """One thumbnail of a movie's strip: when it is, where it is playable from, why chosen.

    ``offset`` is the byte offset in the movie file of the keyframe packet (None when the
    container does not say); ``kind`` is "interval" or "scene"."""

    time: float
    offset: int | None
    kind: str
    jpeg: bytes


@runtime_checkable
class StripShelf(Protocol):
    """A store that also keeps movies' strips (``storage.card.Card``; the simulator's does not).

    A node whose store is one names the ``strip`` capability in its Hello and sends and
    keeps strips (protocol/strips.py); with any other store it does neither."""

    def strip(self, image_id: str) -> list[StripFrame]:
        """The strip kept for a picture, poster first; [] for a still or an unknown picture."""
        ...

    def set_strip(self, image_id: str, strip: Sequence[StripFrame]) -> None:
        """Keep ``strip`` for a picture the catalog lists (replacing one kept before)."""
        ...

    def strips_missing(self) -> list[str]:
        """Other devices' movies whose offer said they have a strip (metadata
        ``strip_frames``) that this card keeps none of: a link broke before it came."""
        ...
