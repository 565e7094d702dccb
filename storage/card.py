"""The card: a folder of originals named by their SHA-256, and the catalog that lists them.

``Card`` implements ``protocol.store.Store``: every call is durable when it returns and
changes nothing when it raises; the one exception is the chunks written inside
``batched_partials`` (see there for what a crash can cost).  The card holds the lock and
hands each call to the part that owns it:

    storage.files        the folder's layout, and how a file reaches its name intact
    storage.recovery     what ``Card.open`` puts right after a crash (``Card.recovered``)
    storage.room         the room ledger: bytes used, bytes promised, CardFullError
    storage.intake       a capture or an import: copied, hashed, extracted, adopted
    storage.partials     incoming transfers, resumed and verified
    storage.sealed_form  picture keys, and the sealed form holders get (issue 7)
    storage.settings     name, role, capacity and reserve;  storage.catalog: the SQLite catalog
    storage.card_marks   the editor's marks and colour labels (issue 19)
    storage.card_smaller smaller copies from peers, dropped once the original is here (issue 17)
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from protocol.messages import MetadataValue
from protocol.store import (
    Decision,
    DispersalState,
    ImageRecord,
    Incoming,
    SealedForm,
    TransferState,
    Usage,
    Where,
)
from storage.card_marks import CardMarks
from storage.card_smaller import CardSmaller
from storage.catalog import SqliteCatalog
from storage.errors import (
    AmbiguousId,
    NotFound,
    StoreError,
)
from storage.files import (
    CardFolder,
    iter_card_files,
    lock_card,
    read_range,
    unlink,
)
from storage.intake import (
    Extraction,
    GivenExtraction,
    Intake,
    clean_metadata,
    display_name,
)
from storage.movies import StripFrame
from storage.partials import IncomingPartials
from storage.recovery import count_room, recover
from storage.room import RoomLedger
from storage.sealed_form import SealedOriginals
from storage.settings import check_settings, default_reserve, existing_catalog, new_catalog
from storage.sizes import format_size
from storage.smaller import smaller_jpeg

# Names other modules import from here; they live where the card's parts are made.
__all__ = ["Card", "Extraction", "GivenExtraction", "check_settings", "clean_metadata",
           "default_reserve", "display_name", "iter_card_files"]

log = logging.getLogger("cammesh.card")

_HEX = re.compile(r"[0-9a-f]{1,64}\Z")
P = ParamSpec("P")
R = TypeVar("R")


def _locked(method: Callable[Concatenate[Card, P], R]) -> Callable[Concatenate[Card, P], R]:
    """One call at a time, from whichever thread; a closed card refuses every call."""

    def call(self: Card, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            if self._closed:
                raise StoreError(f"the card {self.path} is closed; open it again to use it")
            return method(self, *args, **kwargs)

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


def _from_catalog(method: Callable[Concatenate[SqliteCatalog, P], R]) -> Callable[Concatenate[Card, P], R]:
    """A Store call that the catalog answers as it is, made under the card's lock."""

    def call(self: Card, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self._catalog, *args, **kwargs)

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return _locked(call)


class Card(CardMarks, CardSmaller):
    """A card folder opened for use; create with ``Card.create``, open with ``Card.open``."""

    def __init__(self, path: Path, catalog: SqliteCatalog) -> None:
        """Use ``Card.create`` or ``Card.open``."""
        self.path = path
        self._catalog = catalog
        self._lock = threading.Lock()
        self._closed = False
        settings = catalog.settings()
        self._device_id = settings["device_id"]
        self.name, self.role = settings["name"], settings["role"]
        self.capacity, self.reserve_bytes = int(settings["capacity"]), int(settings["reserve"])
        self._room = RoomLedger(self.capacity, reserve=self.reserve_bytes, refusal=self._refusal)
        self._folder = CardFolder(path)
        self._sealed = SealedOriginals(self._folder, catalog, self._device_id, self._local)
        self.recovered: list[str] = []
        self._lock_fd: int | None = None
        self._intake = Intake(self._folder, catalog, self._room, self._device_id,
                              guard=self._guard, lock=self._lock)
        self._partials = IncomingPartials(self._folder, catalog, self._room, self._sealed,
                                          grew=self._intake.grew)

    # --- opening and closing ---------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path | str,
        *,
        device_id: str,
        name: str,
        capacity: int,
        role: str = "camera",
        reserve: int | None = None,
    ) -> Card:
        """Make a new, empty card in ``path`` (created if need be); CardExists if one is there."""
        path = Path(path)
        return cls._start(path, new_catalog(path, device_id=device_id, name=name,
                                            capacity=capacity, role=role, reserve=reserve))

    @classmethod
    def open(cls, path: Path | str) -> Card:
        """Open an existing card, cleaning up (and reporting) what an interrupted write left."""
        path = Path(path)
        return cls._start(path, existing_catalog(path))

    @classmethod
    def _start(cls, path: Path, catalog: SqliteCatalog) -> Card:
        card = cls(path, catalog)
        try:
            card._lock_fd = lock_card(path)
            card._folder.make()
            card._recover()
        except BaseException:
            catalog.close()
            if card._lock_fd is not None:
                os.close(card._lock_fd)
            raise
        return card

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._partials.close()
                except OSError as exc:  # the recorded lengths stay; the rest is sent again
                    log.warning("card %s: could not sync the incoming partials: %s", self.path, exc)
                self._catalog.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)  # releases the card for the next process
                    self._lock_fd = None

    def __enter__(self) -> Card:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recover(self) -> None:
        """Put right what an interrupted write left (``storage.recovery``), and say so."""
        self.recovered = recover(self._folder, self._catalog)
        for line in self.recovered:
            log.warning("card %s: %s", self.path, line)
        count_room(self._catalog, self._room)

    # --- room --------------------------------------------------------------------------
    @property
    def device_id(self) -> str:
        return self._device_id

    @_locked
    def usage(self) -> Usage:
        return self._room.usage()

    def _refusal(self, size: int, free: int, what: str) -> str:
        return (
            f"card {self.name!r} is full: {what} needs {format_size(size)} but only "
            f"{format_size(free)} of {format_size(self.capacity)} is free; disperse or "
            "delete pictures, or use a card with more capacity"
        )

    # --- local capture -----------------------------------------------------------------
    def add_original(
        self,
        source: Path | bytes,
        *,
        name: str,
        now: float,
        extracted: Extraction | Callable[[Path], Extraction],
        adopt: bool = False,
        digest: str | None = None,
    ) -> tuple[ImageRecord, bool]:
        """Store a picture taken or imported here as LOCAL: ``Intake.add_original``."""
        return self._intake.add_original(source, name=name, now=now, extracted=extracted,
                                         adopt=adopt, digest=digest)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """The card's lock, held by an open card."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the card {self.path} is closed; open it again to use it")
            yield

    @contextmanager
    def deferred_sync(self, *, every: int = 64) -> Iterator[None]:
        """For bulk import: pictures added inside survive a crash of the process at once, and a
        power cut once ``every`` more were added or the block ends.  Never for captures whose
        bytes exist nowhere else; a power cut before the sync only un-imports files that are
        still at their source (their originals are stray files, removed on the next open).
        """
        with self._lock:
            self._catalog.set_deferred(True)
            self._intake.start_deferred(every)
        try:
            yield
        finally:
            with self._lock:
                if not self._closed:
                    self._catalog.sync()
                    self._catalog.set_deferred(False)
                self._intake.sync_every = 0

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
        """Store ``data`` as a picture captured here (the same call shape as MemoryStore's)."""
        facts = GivenExtraction(thumbnail, "given", mime, capture_time, dict(metadata or {}))
        record, _ = self.add_original(data, name=name, now=now, extracted=facts)
        return record

    @_locked
    def original_path(self, image_id: str) -> Path:
        """Where a LOCAL original is, for local readers; NotFound otherwise."""
        self._local(image_id)
        return self._folder.original_file(image_id)

    @_locked
    def resolve(self, prefix: str) -> str:
        """The one image id starting with ``prefix``; NotFound or AmbiguousId otherwise."""
        prefix = prefix.strip().lower()
        if not _HEX.match(prefix):
            raise NotFound(f"{prefix!r} is not an image id: ids are hexadecimal (see `cammesh ls`)")
        ids = self._catalog.ids_starting(prefix)
        if not ids:
            raise NotFound(f"no picture on this card has an id starting with {prefix!r}")
        if len(ids) > 1:
            raise AmbiguousId(f"more than one picture has an id starting with {prefix!r}; give more characters")
        return ids[0]

    # Per image id, how its thumbnail was made (embedded, decoded, raw-preview, placeholder).
    thumbnail_sources = _from_catalog(SqliteCatalog.thumbnail_sources)

    # --- movie strips (FIG. 15-16): storage-level, outside the protocol's Store ----------
    # The strip of keyframe thumbnails kept for a movie, poster first; [] for a still.
    strip = _from_catalog(SqliteCatalog.strip)

    @_locked
    def set_strip(self, image_id: str, strip: Sequence[StripFrame]) -> None:
        """Keep ``strip`` for a picture the catalog lists (a strip a peer sent with its
        thumbnail); it replaces any strip kept before.  NotFound for an unknown picture."""
        if self._catalog.image(image_id) is None:
            raise NotFound(f"picture {image_id[:12]} is not in the catalog; its thumbnail must come first")
        self._catalog.set_strip(image_id, strip)

    # Each strip frame's (time, byte offset, kind), without the JPEGs (the desk's marks).
    strip_points = _from_catalog(SqliteCatalog.strip_points)
    # Per image id that has a strip, the number of its frames.
    strip_lengths = _from_catalog(SqliteCatalog.strip_lengths)

    @_locked
    def strips_missing(self) -> list[str]:
        """Other devices' movies offered with a strip this card never got (StripShelf)."""
        return self._catalog.strips_missing(self._device_id)

    # --- the catalog -------------------------------------------------------------------
    image = _from_catalog(SqliteCatalog.image)
    images = _from_catalog(SqliteCatalog.images)
    images_after = _from_catalog(SqliteCatalog.images_after)

    @_locked
    def seen(self) -> dict[str, int]:
        seen: dict[str, int] = {}
        for origin, seq in self._catalog.seqs():
            top = seen.setdefault(origin, 0)
            if seq == top + 1:
                seen[origin] = seq
        return seen

    @_locked
    def add_thumbnail(self, record: ImageRecord, now: float) -> bool:
        if self._catalog.image(record.image_id) is not None:
            return False
        self._catalog.insert_image(
            ImageRecord(
                image_id=record.image_id, origin=record.origin, seq=record.seq, name=record.name,
                size=record.size, mime=record.mime, capture_time=record.capture_time,
                metadata=dict(record.metadata), thumbnail=record.thumbnail, where=Where.ABSENT,
                thumbnail_at=now, original_at=None, wrapped_key=record.wrapped_key,
            ),
            thumbnail_source="peer",
        )
        return True

    # --- originals ---------------------------------------------------------------------
    def _local(self, image_id: str) -> ImageRecord:
        record = self._catalog.image(image_id)
        if record is None or record.where is not Where.LOCAL:
            raise NotFound(f"picture {image_id[:12]} has no original on this card")
        return record

    @_locked
    def read_original(self, image_id: str, offset: int, length: int) -> bytes:
        self._local(image_id)
        return read_range(self._folder.original_file(image_id), offset, length)

    @_locked
    def smaller_copy(self, image_id: str, max_side: int | None, quality: int | None) -> bytes:
        record = self._local(image_id)
        return smaller_jpeg(self._folder.original_file(image_id), record.name, max_side, quality)

    @_locked
    def free_original(self, image_id: str, now: float) -> None:
        record = self._local(image_id)
        if not any(e.state is DispersalState.STORED for e in self._catalog.dispersion(image_id)):
            raise StoreError(
                f"picture {image_id[:12]} has no holder that confirmed storing it; "
                "its original stays on the card until one does"
            )
        # The row changes first: a crash before the unlink leaves a stray file, never a lost one.
        self._catalog.set_where(image_id, Where.DISPERSED, original_at=None)
        unlink(self._folder.original_file(image_id))
        self._room.give(record.size)

    # --- sealed originals: what holders get (issue 7, storage.sealed_form) ---------
    @_locked
    def sealed_form(self, image_id: str) -> SealedForm:
        return self._sealed.form(image_id)

    @_locked
    def read_sealed(self, image_id: str, offset: int, length: int) -> bytes:
        return self._sealed.read(image_id, offset, length)

    @_locked
    def open_sealed(self, image_id: str, offset: int, sealed: bytes) -> bytes:
        return self._sealed.open(image_id, offset, sealed)

    @_locked
    def picture_key(self, image_id: str, *, create: bool = False) -> bytes | None:
        return self._sealed.key(image_id, create=create)

    # --- incoming transfers ------------------------------------------------------------
    @_locked
    def partial_offset(self, image_id: str, kind: Incoming) -> int:
        return self._partials.partial_offset(image_id, kind)

    @_locked
    def write_partial(self, image_id: str, kind: Incoming, offset: int, data: bytes) -> None:
        self._partials.write_partial(image_id, kind, offset, data)

    @_locked
    def finish_partial(
        self, image_id: str, kind: Incoming, digest: str, now: float, *, owner: str | None = None
    ) -> None:
        self._partials.finish_partial(image_id, kind, digest, now, owner=owner)

    @_locked
    def discard_partial(self, image_id: str, kind: Incoming) -> None:
        self._partials.discard_partial(image_id, kind)

    @contextmanager
    def batched_partials(self) -> Iterator[None]:
        """Chunks written inside are recorded together when the block ends, in one catalog
        commit and without an fsync, not with an fsync and a power-safe commit per chunk.

        For a caller that lets nothing depending on those chunks leave the process before
        the block ends (the runtime wraps one ``receive_data`` call in it; the frames that
        call queues are sent only after it returns).  A crash of the process inside the
        block loses only the chunks of this block: the partial is trimmed back to its
        recorded length on the next open, and the transfer resumes from there.  A power
        cut can cost more progress, never a picture (``IncomingPartials.sync``).
        """
        with self._lock:
            self._partials.batching += 1
        try:
            yield
        finally:
            with self._lock:
                self._partials.batching -= 1
                if not self._partials.batching and not self._closed:
                    self._partials.sync(hard=False)

    # --- originals held for others -----------------------------------------------------
    @_locked
    def reserve(self, image_id: str, size: int) -> None:
        if size < 0:
            raise StoreError(f"cannot reserve {size} bytes")
        self._room.check_promise(image_id, size, what=f"holding {image_id[:12]}")
        self._catalog.set_reservation(image_id, size)
        self._room.promise(image_id, size)

    @_locked
    def unreserve(self, image_id: str) -> None:
        self._catalog.delete_reservation(image_id)
        self._room.unpromise(image_id)

    held = _from_catalog(SqliteCatalog.held)
    held_originals = _from_catalog(SqliteCatalog.held_originals)

    @_locked
    def read_held(self, image_id: str, offset: int, length: int) -> bytes:
        if self._catalog.held(image_id) is None:
            raise NotFound(f"this card holds no original {image_id[:12]} for anyone")
        return read_range(self._folder.held / image_id, offset, length)

    @_locked
    def release_held(self, image_id: str) -> None:
        record = self._catalog.held(image_id)
        if record is None:
            return
        self._catalog.delete_held(image_id)
        unlink(self._folder.held / image_id)
        self._room.give(record.size)

    # --- the dispersion list -----------------------------------------------------------
    dispersion = _from_catalog(SqliteCatalog.dispersion)
    dispersion_list = _from_catalog(SqliteCatalog.dispersion_list)

    @_locked
    def set_dispersion(self, image_id: str, holder: str, state: DispersalState, now: float) -> None:
        if self._catalog.image(image_id) is None:
            raise NotFound(f"picture {image_id[:12]} is not in the catalog")
        self._catalog.set_dispersion(image_id, holder, state, now)

    remove_dispersion = _from_catalog(SqliteCatalog.remove_dispersion)

    # --- per-peer transfer state -------------------------------------------------------
    transfer_state = _from_catalog(SqliteCatalog.transfer_state)
    # The (max_side, quality) ``peer`` asked for with its last request.
    transfer_request = _from_catalog(SqliteCatalog.transfer_request)

    @_locked
    def set_transfer_state(
        self, peer: str, image_id: str, state: TransferState, *,
        max_side: int | None = None, quality: int | None = None,
    ) -> None:
        self._catalog.set_transfer_state(peer, image_id, state, max_side, quality)

    # --- our own user's decisions -----------------------------------------------------
    decision = _from_catalog(SqliteCatalog.decision)
    decisions = _from_catalog(SqliteCatalog.decisions)

    @_locked
    def set_decision(
        self, image_id: str, decision: Decision, now: float, *,
        max_side: int | None = None, quality: int | None = None,
    ) -> None:
        self._catalog.set_decision(image_id, decision, now, max_side, quality)

    clear_decision = _from_catalog(SqliteCatalog.clear_decision)
