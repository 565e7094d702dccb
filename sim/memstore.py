"""An in-memory card: ``protocol.store.Store`` for the simulator, with the real card's accounting.

Every call is durable on return, so a simulated crash keeps the store as it
is -- except the last partial write, which ``crash`` may tear the way a real
disk loses bytes that were written but not yet synced.

Room is counted by the card's own ledger (``storage.room.RoomLedger``): local
originals, held originals, partials and smaller copies are ``used``; a
reservation counts as ``reserved`` until the held original it promised room to
arrives, and the bytes of that original's partial are taken out of its
reservation rather than counted twice.  A call that would pass the capacity
raises CardFullError and changes nothing.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import io
import operator
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from protocol.messages import MetadataValue
from protocol.store import (
    Decision,
    DispersalState,
    DispersionEntry,
    HashMismatch,
    HeldRecord,
    ImageRecord,
    Incoming,
    NotFound,
    SealedForm,
    Stamped,
    StoreError,
    TransferState,
    Usage,
    UserDecision,
    Where,
)
from sim.memcatalog import MemoryCatalog
from sim.memdispersion import MemoryDispersionList
from sim.memmarks import MemoryMarks
from sim.memsealed import MemorySealedOriginals
from storage.room import RoomLedger

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_first = operator.itemgetter(0)


@dataclass(frozen=True, slots=True)
class _LastWrite:
    """The most recent partial write: the only bytes a crash may tear."""

    image_id: str
    kind: Incoming
    end: int  # partial length right after the write
    length: int  # bytes that write appended


class MemoryStore(MemoryMarks):
    """A card held in dictionaries; passes the same contract tests as ``storage.card.Card``."""

    def __init__(self, device_id: str, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"a card's capacity cannot be negative: {capacity}")
        self._device_id = device_id
        self._room = RoomLedger(capacity, refusal=self._refusal)
        self._catalog = MemoryCatalog()
        self._images = self._catalog.records  # looked up on every frame: no detour
        self._originals: dict[str, bytes] = {}  # LOCAL originals
        self._held: dict[str, tuple[HeldRecord, bytes]] = {}
        self._partials: dict[tuple[str, Incoming], bytearray] = {}
        self._smaller: dict[str, bytes] = {}
        self._reservations: dict[str, int] = {}  # the ledger counts them; this says what they are
        self._dispersion = MemoryDispersionList()
        self._marks: dict[str, dict[str, Stamped]] = {}  # the editor's marks (sim.memmarks)
        # Held originals as the protocol asks for them on hot paths: a tuple kept until they
        # change (None: recompute), so a caller that changes the store while it walks one
        # walks the snapshot, as it would a fresh list.
        self._held_keys: list[str] = []  # held image ids, sorted
        self._held_sorted: tuple[HeldRecord, ...] | None = None
        self._transfers: dict[tuple[str, str], tuple[TransferState, int | None, int | None]] = {}
        self._decisions: dict[str, UserDecision] = {}
        self._sealed = MemorySealedOriginals(device_id, self._originals, self._images)
        self._last_write: _LastWrite | None = None
        # The protocol looks a picture up a few times per frame: the dict's own bound get
        # answers without a Python call (same contract as the method below).
        self.image = self._images.get  # type: ignore[method-assign, assignment]
        self.decision = self._decisions.get  # type: ignore[method-assign, assignment]

    # --- room ------------------------------------------------------------------------

    def resize(self, capacity: int) -> None:
        """The card swapped for one of ``capacity`` bytes, pictures kept (a test's "offloaded")."""
        self._room.capacity = capacity

    @property
    def device_id(self) -> str:
        return self._device_id

    def usage(self) -> Usage:
        return self._room.usage()

    def _refusal(self, size: int, free: int, _what: str) -> str:
        return (
            f"the card has {free} bytes free and {size} more are needed "
            f"(capacity {self._room.capacity}); free an original or disperse some"
        )

    # --- the catalog -------------------------------------------------------------------

    def image(self, image_id: str) -> ImageRecord | None:
        return self._images.get(image_id)

    def images(self) -> Iterable[ImageRecord]:
        """Every picture in the catalog, ordered by (origin, seq)."""
        return self._catalog.in_order()

    def images_after(self, origin: str, seq: int) -> Iterable[ImageRecord]:
        """Pictures of ``origin`` with a sequence number above ``seq``, in order."""
        return self._catalog.after(origin, seq)

    def seen(self) -> Mapping[str, int]:
        """Per origin, the highest seq such that every thumbnail 1..seq is here (0 after a gap at 1)."""
        return self._catalog.seen()

    def add_thumbnail(self, record: ImageRecord, now: float) -> bool:
        """Record a peer's thumbnail and metadata (``where`` ABSENT); False if already known."""
        if record.image_id in self._images:
            return False
        self._catalog.insert(
            dataclasses.replace(record, where=Where.ABSENT, thumbnail_at=now, original_at=None)
        )
        return True

    def add_local(
        self,
        data: bytes,
        *,
        name: str,
        now: float,
        mime: str = "image/jpeg",
        capture_time: float | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        thumbnail: bytes = b"",
    ) -> ImageRecord:
        """Store a picture captured or imported here: LOCAL, ours, next sequence number.

        A picture already in the catalog is not added twice: its record is
        returned (and its original kept, if it was not here).  CardFullError if the
        original does not fit.
        """
        image_id = hashlib.sha256(data).hexdigest()
        known = self._images.get(image_id)
        if known is not None and known.where is Where.LOCAL:
            return known
        self._room.need(len(data))
        if known is not None:
            record = dataclasses.replace(known, where=Where.LOCAL, original_at=now)
        else:
            record = ImageRecord(
                image_id=image_id,
                origin=self._device_id,
                seq=self._catalog.next_seq(self._device_id),
                name=name,
                size=len(data),
                mime=mime,
                capture_time=capture_time,
                metadata=dict(metadata or {}),
                thumbnail=thumbnail,
                where=Where.LOCAL,
                thumbnail_at=None,
                original_at=now,
            )
        self._catalog.insert(record)
        self._originals[image_id] = bytes(data)
        self._room.take(len(data))
        return record

    # --- originals ---------------------------------------------------------------------

    def read_original(self, image_id: str, offset: int, length: int) -> bytes:
        """Bytes of a LOCAL original; raises NotFound otherwise."""
        data = self._originals.get(image_id)
        if data is None:
            raise NotFound(f"the original of {image_id[:12]} is not on this card")
        return _slice(data, offset, length)

    def original_bytes(self, image_id: str) -> bytes | None:
        """The whole LOCAL original, for the simulator's invariant checks."""
        return self._originals.get(image_id)

    def smaller_bytes(self, image_id: str) -> bytes | None:
        """The smaller copy received for ``image_id``, if any."""
        return self._smaller.get(image_id)

    def smaller_copy(self, image_id: str, max_side: int | None, quality: int | None) -> bytes:
        """A recompressed JPEG of a LOCAL original (FIG. 10, S64-S65); StoreError if not a picture."""
        data = self.read_original(image_id, 0, len(self._originals.get(image_id, b"")))
        from PIL import Image, ImageOps, UnidentifiedImageError  # only this method needs Pillow

        try:
            with Image.open(io.BytesIO(data)) as picture:
                if max_side is not None:
                    picture.draft("RGB", (max_side, max_side))
                image = ImageOps.exif_transpose(picture).convert("RGB")
            if max_side is not None:
                image.thumbnail((max_side, max_side))
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality if quality is not None else 85)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise StoreError(
                f"cannot make a smaller copy of {image_id[:12]}: it is not a picture "
                f"Pillow can read ({exc}); send the original instead"
            ) from exc
        return out.getvalue()

    def free_original(self, image_id: str, now: float) -> None:
        """Delete our LOCAL original and mark it DISPERSED; needs a STORED dispersion entry."""
        record = self._images.get(image_id)
        if record is None or record.where is not Where.LOCAL:
            raise NotFound(f"the original of {image_id[:12]} is not on this card")
        if not any(e.state is DispersalState.STORED for e in self.dispersion(image_id)):
            raise StoreError(
                f"will not free {image_id[:12]}: no holder has confirmed storing it yet"
            )
        self._room.give(len(self._originals.pop(image_id)))
        self._catalog.put(dataclasses.replace(record, where=Where.DISPERSED))

    # --- sealed originals (issue 7, sim/memsealed.py) ------------------------------------

    def sealed_form(self, image_id: str) -> SealedForm:
        return self._sealed.form(image_id)

    def read_sealed(self, image_id: str, offset: int, length: int) -> bytes:
        return self._sealed.read(image_id, offset, length)

    def open_sealed(self, image_id: str, offset: int, sealed: bytes) -> bytes:
        return self._sealed.open(image_id, offset, sealed)

    def picture_key(self, image_id: str, *, create: bool = False) -> bytes | None:
        return self._sealed.picture_key(image_id, create=create)

    # --- incoming transfers (resumable) ------------------------------------------------

    def partial_offset(self, image_id: str, kind: Incoming) -> int:
        """Bytes of an unfinished incoming transfer already durable (0 if none)."""
        return len(self._partials.get((image_id, kind), b""))

    def write_partial(self, image_id: str, kind: Incoming, offset: int, data: bytes) -> None:
        """Append at ``offset`` (must equal partial_offset); CardFullError if it would not fit."""
        if not _HEX64.match(image_id):
            raise StoreError(f"{image_id!r} is not an image id")  # as a card, which names files so
        have = self.partial_offset(image_id, kind)
        if offset != have:
            raise StoreError(
                f"write at offset {offset} of {image_id[:12]} ({kind}) but {have} bytes are "
                "stored; resume from partial_offset"
            )
        if not data:
            return
        held = kind is Incoming.HELD
        # The bytes of a held original land in room already promised to it.
        self._room.need(len(data), covered=self._room.covered(image_id, len(data)) if held else 0)
        self._partials.setdefault((image_id, kind), bytearray()).extend(data)
        self._room.take(len(data))
        if held:
            self._room.fill(image_id, have + len(data))
        self._last_write = _LastWrite(image_id, kind, have + len(data), len(data))

    def finish_partial(
        self, image_id: str, kind: Incoming, digest: str, now: float, *, owner: str | None = None
    ) -> None:
        """Verify the SHA-256 of the whole partial, then keep it where ``kind`` says.

        ORIGINAL: the catalog row becomes LOCAL.  HELD: a HeldRecord for ``owner``
        (its reservation is used up).  SMALLER: kept beside the catalog row.
        HashMismatch (partial discarded) when the digest is wrong.
        """
        # A transfer that never wrote a byte is an empty partial (an empty original is possible).
        partial = self._partials.get((image_id, kind), bytearray())
        record = self._images.get(image_id)
        if kind is Incoming.HELD and owner is None:
            raise StoreError(f"a held original ({image_id[:12]}) needs its owner")
        if kind is not Incoming.HELD and record is None:
            raise NotFound(f"{image_id[:12]} is not in the catalog: its thumbnail never arrived")
        wrong_size = (
            kind is Incoming.ORIGINAL and record is not None and len(partial) != record.size
        )
        if wrong_size or hashlib.sha256(partial).hexdigest() != digest:
            self.discard_partial(image_id, kind)
            raise HashMismatch(
                f"the {len(partial)} bytes received for {image_id[:12]} ({kind}) do not hash "
                f"to {digest[:12]}; they were discarded, ask for them again"
            )
        data = bytes(partial)
        if kind is Incoming.SEALED and record is not None and record.where is not Where.LOCAL:
            try:
                data = self._sealed.open_home(image_id, digest, data)
            except HashMismatch:
                self.discard_partial(image_id, kind)
                raise
        self.discard_partial(image_id, kind)  # its bytes are counted again where they land
        if kind in (Incoming.ORIGINAL, Incoming.SEALED):
            assert record is not None
            if record.where is Where.LOCAL:
                return  # we had it already: the copy just received is dropped
            self._originals[image_id] = data
            self._catalog.put(dataclasses.replace(record, where=Where.LOCAL, original_at=now))
            copy = self._smaller.pop(image_id, None)  # the original is here: its stand-in goes
            self._room.give(0 if copy is None else len(copy))
        elif kind is Incoming.HELD:
            assert owner is not None
            self.unreserve(image_id)
            old = self._held.get(image_id)
            self._room.give(0 if old is None else len(old[1]))
            if old is None:
                bisect.insort(self._held_keys, image_id)
            self._held[image_id] = (HeldRecord(image_id, owner, len(data), now, digest), data)
            self._held_sorted = None
        else:
            old_copy = self._smaller.get(image_id)
            self._room.give(0 if old_copy is None else len(old_copy))
            self._smaller[image_id] = data
        self._room.take(len(data))

    def discard_partial(self, image_id: str, kind: Incoming) -> None:
        """Drop an unfinished transfer (nothing happens if there is none)."""
        partial = self._partials.pop((image_id, kind), None)
        if partial is not None:
            self._room.give(len(partial))
            if kind is Incoming.HELD:
                self._room.fill(image_id, 0)

    # --- originals held for others ------------------------------------------------------

    def reserve(self, image_id: str, size: int) -> None:
        """Promise ``size`` bytes to an incoming held original (replacing an earlier promise)."""
        if size < 0:
            raise StoreError(f"cannot reserve a negative size ({size}) for {image_id[:12]}")
        self._room.check_promise(image_id, size, what=f"holding {image_id[:12]}")
        self._room.promise(image_id, size)
        self._reservations[image_id] = size

    def unreserve(self, image_id: str) -> None:
        self._room.unpromise(image_id)
        self._reservations.pop(image_id, None)

    def held(self, image_id: str) -> HeldRecord | None:
        entry = self._held.get(image_id)
        return None if entry is None else entry[0]

    def held_originals(self) -> Iterable[HeldRecord]:
        if self._held_sorted is None:
            entries = map(self._held.__getitem__, self._held_keys)
            self._held_sorted = tuple(map(_first, entries))
        return self._held_sorted

    def read_held(self, image_id: str, offset: int, length: int) -> bytes:
        entry = self._held.get(image_id)
        if entry is None:
            raise NotFound(f"this card holds no original {image_id[:12]}")
        return _slice(entry[1], offset, length)

    def release_held(self, image_id: str) -> None:
        """Delete a held original (nothing happens if it is not held)."""
        entry = self._held.pop(image_id, None)
        if entry is not None:
            self._room.give(len(entry[1]))
            keys = self._held_keys
            del keys[bisect.bisect_left(keys, image_id)]
            self._held_sorted = None

    # --- the dispersion list ------------------------------------------------------------

    def dispersion(self, image_id: str) -> list[DispersionEntry]:
        return self._dispersion.of(image_id)

    def dispersion_list(self) -> Iterable[DispersionEntry]:
        return self._dispersion.snapshot()

    def set_dispersion(self, image_id: str, holder: str, state: DispersalState, now: float) -> None:
        if image_id not in self._images:
            raise NotFound(f"picture {image_id[:12]} is not in the catalog")
        self._dispersion.set(DispersionEntry(image_id, holder, state, now))

    def remove_dispersion(self, image_id: str, holder: str) -> None:
        self._dispersion.remove(image_id, holder)

    # --- per-peer transfer state ----------------------------------------------------------

    def transfer_state(self, peer: str, image_id: str) -> TransferState:
        entry = self._transfers.get((peer, image_id))
        return TransferState.UNTRANSMITTED if entry is None else entry[0]

    def transfer_request(self, peer: str, image_id: str) -> tuple[int | None, int | None]:
        """The (max_side, quality) last set with the transfer state, (None, None) if none."""
        entry = self._transfers.get((peer, image_id))
        return (None, None) if entry is None else (entry[1], entry[2])

    def set_transfer_state(
        self,
        peer: str,
        image_id: str,
        state: TransferState,
        *,
        max_side: int | None = None,
        quality: int | None = None,
    ) -> None:
        self._transfers[(peer, image_id)] = (state, max_side, quality)

    # --- our own user's decisions -------------------------------------------------------

    def decision(self, image_id: str) -> UserDecision | None:
        return self._decisions.get(image_id)

    def decisions(self) -> Iterable[UserDecision]:
        return [self._decisions[image_id] for image_id in sorted(self._decisions)]

    def set_decision(
        self,
        image_id: str,
        decision: Decision,
        now: float,
        *,
        max_side: int | None = None,
        quality: int | None = None,
    ) -> None:
        self._decisions[image_id] = UserDecision(image_id, decision, max_side, quality, now)

    def clear_decision(self, image_id: str) -> None:
        self._decisions.pop(image_id, None)

    def recount(self) -> Usage:
        """Usage counted from scratch (tests check the running totals against it)."""
        used = (
            sum(map(len, self._originals.values()))
            + sum(len(data) for _, data in self._held.values())
            + sum(map(len, self._partials.values()))
            + sum(map(len, self._smaller.values()))
        )
        reserved = sum(
            max(0, size - len(self._partials.get((i, Incoming.HELD), b"")))
            for i, size in self._reservations.items()
        )
        return Usage(capacity=self._room.capacity, used=used, reserved=reserved)

    # --- the simulator's crash ------------------------------------------------------------

    def crash(self, rng: random.Random) -> int:
        """Simulate power loss: the last partial write may lose a random tail; bytes torn.

        Everything else was durable on return and stays.  Only the most recent
        write_partial can tear (a real card fsyncs each write before the next
        call returns, so nothing older is at risk), and only if that partial is
        still exactly as the write left it.
        """
        last, self._last_write = self._last_write, None
        if last is None or rng.random() < 0.5:
            return 0
        partial = self._partials.get((last.image_id, last.kind))
        if partial is None or len(partial) != last.end:
            return 0
        torn = rng.randint(1, last.length)
        del partial[last.end - torn :]
        if not partial:
            del self._partials[(last.image_id, last.kind)]
        self._room.give(torn)
        if last.kind is Incoming.HELD:
            self._room.fill(last.image_id, len(partial))
        return torn


def _slice(data: bytes, offset: int, length: int) -> bytes:
    if offset < 0 or length < 0:
        raise StoreError(f"cannot read {length} bytes at offset {offset}")
    return data[offset : offset + length]
