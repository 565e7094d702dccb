"""The card: a folder of originals named by their SHA-256, and the catalog that lists them.

``Card`` implements ``protocol.store.Store``: every call is durable when it
returns and changes nothing when it raises; the one exception is the chunks
written inside ``batched_partials`` (see there for what a crash can cost).  Layout of a card folder::

    catalog.sqlite        the catalog (and its -wal/-shm files)
    originals/ab/ab12...  our originals, by image id, byte-identical
    held/<id>             originals held for other owners (dispersal)
    smaller/<id>          recompressed copies received for our thumbnails
    partial/<kind>/<id>   unfinished incoming transfers
    tmp/                  files being written; anything here after a crash is a leftover

A file reaches its final name only by rename after fsync, and the directory is
fsynced after the rename; a catalog row points at a file only after that.  So
a crash leaves, at worst, files that no row points at, which ``Card.open``
deletes and reports in ``Card.recovered``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Concatenate, Final, ParamSpec, TypeVar

from protocol.messages import Limits, MetadataValue
from protocol.store import (
    Decision,
    DispersalState,
    DispersionEntry,
    HeldRecord,
    ImageRecord,
    Incoming,
    SealedForm,
    TransferState,
    Usage,
    UserDecision,
    Where,
)
from storage.catalog import CATALOG_NAME, Catalog
from storage.errors import (
    AmbiguousId,
    CardExists,
    NotACard,
    NotFound,
    StoreError,
)
from storage.files import (
    HEX64,
    CardFolder,
    fsync_dir,
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
from storage.recovery import count_used, recover
from storage.room import RoomLedger
from storage.sealed_form import SealedOriginals
from storage.sizes import format_size

# Names other modules import from here; they live where the card's parts are made.
__all__ = ["Card", "Extraction", "GivenExtraction", "check_settings", "clean_metadata",
           "default_reserve", "display_name", "iter_card_files"]

log = logging.getLogger("cammesh.card")

ROLES: Final = ("camera", "desk")
_HEX = re.compile(r"[0-9a-f]{1,64}\Z")
def default_reserve(capacity: int) -> int:
    """Room kept back for the catalog and thumbnails: 1% of the card, at most 256 MiB."""
    return min(capacity // 100, 256 * 2**20)


def check_settings(*, name: str, capacity: int, role: str, reserve: int | None) -> int:
    """Raise StoreError unless these make a usable card; returns the reserve to use."""
    reserve = default_reserve(capacity) if reserve is None else reserve
    if role not in ROLES:
        raise StoreError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name or len(name) > Limits.MAX_NAME or display_name(name) != name:
        raise StoreError(f"card name {name!r} must be 1 to 255 printable characters, no slashes")
    if capacity <= 0 or not 0 <= reserve < capacity:
        raise StoreError(
            f"a capacity of {capacity} bytes with a reserve of {reserve} leaves no room: the "
            "capacity must be positive and the reserve smaller than it"
        )
    return reserve


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


class Card:
    """A card folder opened for use; create with ``Card.create``, open with ``Card.open``."""

    def __init__(self, path: Path, catalog: Catalog) -> None:
        """Use ``Card.create`` or ``Card.open``."""
        self.path = path
        self._catalog = catalog
        self._lock = threading.Lock()
        self._closed = False
        settings = catalog.settings()
        self._device_id = settings["device_id"]
        self.name = settings["name"]
        self.role = settings["role"]
        self.capacity = int(settings["capacity"])
        self.reserve_bytes = int(settings["reserve"])
        self._room = RoomLedger(self.capacity, reserve=self.reserve_bytes, refusal=self._refusal)
        self._folder = CardFolder(path)
        self._sealed = SealedOriginals(self._folder, catalog, self._device_id, self._local)
        self.recovered: list[str] = []
        self._lock_fd: int | None = None
        self._intake = Intake(self._folder, catalog, self._room, self._device_id,
                              guard=self._guard, grew=self._grew,
                              grew_unlocked=self._grew_unlocked)
        self._partials = IncomingPartials(self._folder, catalog, self._room, self._sealed,
                                          grew=self._grew)

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
        reserve = check_settings(name=name, capacity=capacity, role=role, reserve=reserve)
        if not HEX64.match(device_id):
            raise StoreError(f"device id {device_id!r} is not 64 lowercase hex characters")
        if (path / CATALOG_NAME).exists():
            raise CardExists(f"{path} already holds a card; open it, or choose another folder")
        path.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(path / CATALOG_NAME)
        catalog.set_settings({
            "format": "cammesh-card", "device_id": device_id, "name": name, "role": role,
            "capacity": str(capacity), "reserve": str(reserve),
        })
        fsync_dir(path)
        return cls._start(path, catalog)

    @classmethod
    def open(cls, path: Path | str) -> Card:
        """Open an existing card, cleaning up (and reporting) what an interrupted write left."""
        path = Path(path)
        if not (path / CATALOG_NAME).is_file():
            raise NotACard(f"{path} is not a cammesh card (no {CATALOG_NAME}); create one with `cammesh init`")
        catalog = Catalog(path / CATALOG_NAME)
        if catalog.settings().get("format") != "cammesh-card":
            catalog.close()
            raise NotACard(f"{path} has a catalog but no card settings; it was never initialised")
        return cls._start(path, catalog)

    @classmethod
    def _start(cls, path: Path, catalog: Catalog) -> Card:
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
        self._room.take(count_used(self._catalog))
        for image_id, size in self._catalog.reservations().items():
            self._room.promise(image_id, size)
        for (image_id, kind), length in self._catalog.partials().items():
            if kind is Incoming.HELD:
                self._room.fill(image_id, length)

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

    def _grew(self, size: int) -> None:
        """A file being copied in grew past its size: the room is checked again."""
        self._room.need(size, what="a file that grew while it was imported")

    def _grew_unlocked(self, size: int) -> None:
        with self._lock:
            self._grew(size)

    # --- local capture -----------------------------------------------------------------
    def add_original(
        self,
        source: Path | bytes,
        *,
        name: str,
        now: float,
        extracted: Extraction | Callable[[Path], Extraction],
    ) -> tuple[ImageRecord, bool]:
        """Store a picture taken or imported here as LOCAL (``storage.intake``): (record, False)
        if it was known.  ``extracted`` may be a function, called on the stored copy only for
        new pictures.  CardFull leaves nothing behind.  Durable on return, unless inside
        ``deferred_sync``.  Takes the card's lock only while it checks and adopts."""
        return self._intake.add_original(source, name=name, now=now, extracted=extracted)

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

    @_locked
    def thumbnail_sources(self) -> dict[str, str | None]:
        """Per image id, how its thumbnail was made (embedded, decoded, raw-preview, placeholder)."""
        return self._catalog.thumbnail_sources()

    # --- movie strips (FIG. 15-16): storage-level, outside the protocol's Store ----------
    @_locked
    def strip(self, image_id: str) -> list[StripFrame]:
        """The strip of keyframe thumbnails kept for a movie, poster first; [] for a still."""
        return self._catalog.strip(image_id)

    @_locked
    def set_strip(self, image_id: str, strip: Sequence[StripFrame]) -> None:
        """Keep ``strip`` for a picture the catalog lists (a strip a peer sent with its
        thumbnail); it replaces any strip kept before.  NotFound for an unknown picture."""
        if self._catalog.image(image_id) is None:
            raise NotFound(f"picture {image_id[:12]} is not in the catalog; its thumbnail must come first")
        self._catalog.set_strip(image_id, strip)

    @_locked
    def strip_lengths(self) -> dict[str, int]:
        """Per image id that has a strip, the number of its frames."""
        return self._catalog.strip_lengths()

    # --- the catalog -------------------------------------------------------------------
    @_locked
    def image(self, image_id: str) -> ImageRecord | None:
        return self._catalog.image(image_id)

    @_locked
    def images(self) -> list[ImageRecord]:
        return self._catalog.images()

    @_locked
    def images_after(self, origin: str, seq: int) -> list[ImageRecord]:
        return self._catalog.images_after(origin, seq)

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
        return _recompress(self._folder.original_file(image_id), record.name, max_side, quality)

    # --- smaller copies received from peers (FIG. 10, S64-S65) ---------------------------
    @_locked
    def smaller_copies(self) -> dict[str, int]:
        """The smaller copies this card keeps, finished and verified: image id -> size in bytes."""
        return self._catalog.smaller()

    @_locked
    def read_smaller(self, image_id: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of the smaller copy kept for ``image_id``; NotFound if none is."""
        if image_id not in self._catalog.smaller():
            raise NotFound(f"this card keeps no smaller copy of {image_id[:12]}")
        return read_range(self._folder.smaller / image_id, offset, length)

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

    @_locked
    def held(self, image_id: str) -> HeldRecord | None:
        return self._catalog.held(image_id)

    @_locked
    def held_originals(self) -> list[HeldRecord]:
        return self._catalog.held_originals()

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
    @_locked
    def dispersion(self, image_id: str) -> list[DispersionEntry]:
        return self._catalog.dispersion(image_id)

    @_locked
    def dispersion_list(self) -> list[DispersionEntry]:
        return self._catalog.dispersion_list()

    @_locked
    def set_dispersion(self, image_id: str, holder: str, state: DispersalState, now: float) -> None:
        if self._catalog.image(image_id) is None:
            raise NotFound(f"picture {image_id[:12]} is not in the catalog")
        self._catalog.set_dispersion(image_id, holder, state, now)

    @_locked
    def remove_dispersion(self, image_id: str, holder: str) -> None:
        self._catalog.remove_dispersion(image_id, holder)

    # --- per-peer transfer state -------------------------------------------------------
    @_locked
    def transfer_state(self, peer: str, image_id: str) -> TransferState:
        return self._catalog.transfer_state(peer, image_id)

    @_locked
    def transfer_request(self, peer: str, image_id: str) -> tuple[int | None, int | None]:
        """The (max_side, quality) ``peer`` asked for with its last request."""
        return self._catalog.transfer_request(peer, image_id)

    @_locked
    def set_transfer_state(
        self, peer: str, image_id: str, state: TransferState, *,
        max_side: int | None = None, quality: int | None = None,
    ) -> None:
        self._catalog.set_transfer_state(peer, image_id, state, max_side, quality)

    # --- our own user's decisions -----------------------------------------------------
    @_locked
    def decision(self, image_id: str) -> UserDecision | None:
        return self._catalog.decision(image_id)

    @_locked
    def decisions(self) -> list[UserDecision]:
        return self._catalog.decisions()

    @_locked
    def set_decision(
        self, image_id: str, decision: Decision, now: float, *,
        max_side: int | None = None, quality: int | None = None,
    ) -> None:
        self._catalog.set_decision(image_id, decision, now, max_side, quality)

    @_locked
    def clear_decision(self, image_id: str) -> None:
        self._catalog.clear_decision(image_id)

def _recompress(path: Path, name: str, max_side: int | None, quality: int | None) -> bytes:
    """A JPEG of the picture, at most ``max_side`` on its long side (FIG. 10, S64-S65)."""
    from PIL import Image, ImageOps  # Pillow loads only when a smaller copy is asked for

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if max_side:
                    image.draft("RGB", (max_side, max_side))
                picture = ImageOps.exif_transpose(image) or image
                if max_side:
                    picture.thumbnail((max_side, max_side))
                out = io.BytesIO()
                picture.convert("RGB").save(out, "JPEG", quality=quality or 85)
                return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise StoreError(f"cannot make a smaller copy of {name!r}: {exc}") from exc
