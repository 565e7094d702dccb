"""What the desk page shows, kept in memory: one tile per picture, with its mark (FIG. 13-18).

The board is loaded once from the card and then kept current by node events;
every change bumps a version so the page can ask "what changed since v?".
Reading the card happens in ``read_facts``, which the desk runs through
``Runtime.call`` (a worker thread, under the node lock), never on the trio thread.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mesh.control import sealed_no_key
from mesh.desk_strips import Point, parts_in, strip_json
from mesh.device_names import shown, shown_names
from protocol import events as ev
from protocol.store import DispersalState, Incoming, StoreError, TransferState, Where
from storage.card import Card
from storage.card_smaller import SmallerCopy
from storage.marks import DEFAULT_COLOR_LABELS, Marks

NO_MARKS = Marks()
COPY_HEAD = 256 * 1024  # at most this much of a smaller copy is read for its frame size

# The information under a thumbnail (FIG. 17B, 18): EXIF keys as storage.metadata names them.
SHOWN_METADATA = (
    "make", "model", "lens", "exposure_text", "f_number", "iso", "metering_mode",
    "focal_length", "width", "height", "capture_time_text",
    "photographer", "ftp_account",  # an FTP camera's account names them (mesh/ftp.py)
    "pair",  # a RAW and its JPEG share it (storage/pairs.py)
    "duration",  # a movie's, in seconds (its strip shows it, FIG. 15A)
)


class Mark:
    """A thumbnail's mark, strongest first (FIG. 13B, 14A, 14B)."""

    LOCAL = "local"  # captured or imported on this very card
    RECEIVED = "received"  # the original arrived and was verified
    TRANSFERRING = "transferring"  # bytes are arriving now (with progress)
    SMALLER = "smaller"  # a smaller, recompressed copy arrived instead of the original
    DISPERSED = "dispersed"  # ours, its original is with the holders named
    HELD = "held"  # we hold this original for its owner
    REFUSED = "refused"  # "not necessary": its original will not be pulled
    REQUESTED = "requested"  # reserved for transfer: asked for first
    THUMBNAIL = "thumbnail"  # only the thumbnail and metadata are here


@dataclass(frozen=True, slots=True)
class CopyFacts:
    """A smaller copy on the card (FIG. 10, S64-S65): a reduced JPEG, never the original."""

    size: int  # bytes
    width: int | None  # pixels, from its frame header; None when it cannot be read
    height: int | None
    kept: bool  # kept on purpose: it stays once the original is here (issue 17)

    def as_json(self) -> dict[str, Any]:
        edge = None if self.width is None or self.height is None else max(self.width, self.height)
        return {"size": self.size, "width": self.width, "height": self.height,
                "long_edge": edge, "kept": self.kept}


@dataclass(frozen=True, slots=True)
class Facts:
    """What the card says about one picture (no thumbnail bytes: the page fetches those apart)."""

    image_id: str
    origin: str
    seq: int
    name: str
    size: int
    mime: str
    capture_time: float | None
    metadata: Mapping[str, Any]
    where: Where
    thumbnail_at: float | None
    original_at: float | None
    decision: TransferState  # our own user's request or refusal (Store.decision)
    holders: tuple[str, ...]  # dispersion-list holders that confirmed STORED
    held_for: str | None  # owner, when this card holds the original for it
    smaller: CopyFacts | None = None  # the smaller copy this card keeps (FIG. 10, S64-S65)
    sealed: bool = False  # held sealed for its owner, and no key for it here (issue 7)
    marks: Marks = NO_MARKS  # the editor's rating, colour class, tag and captions (issue 19)
    strip: tuple[Point, ...] = ()  # a movie's strip frames (FIG. 15A), mesh/desk_strips.py
    partial: int = 0  # bytes of its original already on the card from an earlier stream


def read_facts(card: Card, me: str, ids: Iterable[str] | None = None) -> list[Facts]:
    """The facts of ``ids`` (every picture when None); unknown ids are left out."""
    if ids is None:
        records = card.images()
    else:
        records = [r for r in (card.image(i) for i in dict.fromkeys(ids)) if r is not None]
    held = {h.image_id: h for h in card.held_originals()}
    smaller = card.smaller_details()
    holders: dict[str, list[str]] = {}
    for entry in card.dispersion_list():
        if entry.state is DispersalState.STORED:
            holders.setdefault(entry.image_id, []).append(entry.holder)
    # Our own user's choices (FIG. 13B "not necessary", FIG. 14A "transfer") live apart
    # from what peers asked of us.
    decided = {d.image_id: TransferState(d.decision.value) for d in card.decisions()}
    marks = card.all_marks() if ids is None else {r.image_id: card.marks(r.image_id) for r in records}
    out = []
    for r in records:
        decision = decided.get(r.image_id, TransferState.UNTRANSMITTED)
        movie = r.mime.startswith("video/")
        strip = tuple(card.strip_points(r.image_id)) if movie else ()
        partial = card.partial_offset(r.image_id, Incoming.ORIGINAL) if strip and r.where is Where.ABSENT else 0
        holding = held.get(r.image_id)
        copy = smaller.get(r.image_id)
        out.append(
            Facts(
                image_id=r.image_id, origin=r.origin, seq=r.seq, name=r.name, size=r.size,
                mime=r.mime, capture_time=r.capture_time,
                metadata={k: r.metadata[k] for k in SHOWN_METADATA if k in r.metadata},
                where=r.where, thumbnail_at=r.thumbnail_at, original_at=r.original_at,
                decision=decision, holders=tuple(holders.get(r.image_id, ())),
                held_for=None if holding is None else holding.owner,
                smaller=None if copy is None else copy_facts(card, copy),
                # Only its owner can read it (protocol/readout.py says so too).
                sealed=holding is not None and sealed_no_key(holding, r),
                marks=marks.get(r.image_id, NO_MARKS), strip=strip, partial=partial,
            )
        )
    return out


def copy_facts(card: Card, copy: SmallerCopy) -> CopyFacts:
    """A smaller copy with its pixel size, read from its JPEG frame header."""
    from storage.previews import Unusable, jpeg_frame  # Pillow loads with it: not at start-up

    frame = None
    for length in (COPY_HEAD // 16, COPY_HEAD):  # the frame header follows EXIF and profile
        try:
            frame = jpeg_frame(card.read_smaller(copy.image_id, 0, length))
        except (StoreError, Unusable):
            break
        if frame is not None:
            break
    width, height = (None, None) if frame is None else (frame.width, frame.height)
    return CopyFacts(copy.size, width, height, copy.kept)


@dataclass(slots=True)
class Tile:
    facts: Facts
    version: int
    progress: tuple[str, int, int] | None = None  # (peer, done, total) of an incoming stream
    note: str = ""  # the last refusal or failure reason, for the tooltip
    bytes_in: int = 0  # of its original on the card: the last progress, else the card's partial

    def strip_in(self) -> int:
        """How many of a movie's strip frames have their part on the card (FIG. 15B)."""
        f = self.facts
        if f.where is Where.LOCAL:
            return len(f.strip)
        return parts_in(f.strip, self.bytes_in, f.size)

    def mark(self, me: str) -> str:
        f = self.facts
        if f.where is Where.LOCAL:
            return Mark.LOCAL if f.origin == me else Mark.RECEIVED
        if self.progress is not None:
            return Mark.TRANSFERRING
        if f.smaller is not None:
            return Mark.SMALLER
        if f.where is Where.DISPERSED:
            return Mark.DISPERSED
        if f.held_for is not None:
            return Mark.HELD
        if f.decision is TransferState.REFUSED:
            return Mark.REFUSED
        if f.decision is TransferState.REQUESTED:
            return Mark.REQUESTED
        return Mark.THUMBNAIL


class Board:
    """Every tile by image id, with a version per change; mutated on the trio thread only."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.epoch = secrets.token_hex(8)  # versions count from 0 again after a restart
        self.version = 0
        self.tiles: dict[str, Tile] = {}
        self.names: dict[str, str] = {}  # device id -> its name, as its Hello or pin says
        self._shown: dict[str, str] = {}  # device id -> what a person reads (shown_names)
        self.connected: set[str] = set()
        self.labels: dict[int, str] = dict(DEFAULT_COLOR_LABELS)  # colour class -> its label
        self._by_version: OrderedDict[str, None] = OrderedDict()  # ids, oldest change first

    def name(self, device_id: str, name: str) -> None:
        """A device's name, from its pin or its Hello."""
        if self.names.get(device_id) != name:
            self.names[device_id] = name
            self._shown = shown_names(self.names)

    def shown(self, device_id: str) -> str:
        """A device as a person reads it: its name, with its short id only where two names
        collide, or its short id alone when no name is known (mesh/device_names.py)."""
        return shown(self._shown, device_id)

    def _touch(self, image_id: str) -> int:
        self.version += 1
        self._by_version[image_id] = None
        self._by_version.move_to_end(image_id)
        return self.version

    def update(self, facts: Iterable[Facts]) -> list[Facts]:
        """Take in what the card says; the facts of the pictures new to the board."""
        new = []
        for f in facts:
            tile = self.tiles.get(f.image_id)
            if tile is None:
                self.tiles[f.image_id] = Tile(f, self._touch(f.image_id), bytes_in=f.partial)
                new.append(f)
            elif tile.facts != f:
                tile.facts = f
                if tile.progress is None:  # no stream says more than the card
                    tile.bytes_in = f.partial
                if f.where is not Where.ABSENT:
                    tile.progress = None
                if f.where is Where.LOCAL:
                    tile.note = ""  # here: why it was refused or waited no longer matters
                tile.version = self._touch(f.image_id)
        return new

    def status_changed(self) -> None:
        """Something only the status shows changed (the colour labels): the next batch of
        changes carries it, with one tile sent again."""
        if self.tiles:
            image_id = next(iter(self.tiles))
            self.tiles[image_id].version = self._touch(image_id)

    def progress(self, image_id: str, peer: str, done: int, total: int) -> None:
        tile = self.tiles.get(image_id)
        if tile is not None:
            # Kept at 100% until the stream's end is reported (verified, stored): see FINISHED.
            tile.progress = (peer, done, total)
            tile.bytes_in = done
            tile.version = self._touch(image_id)

    def stopped(self, image_id: str, note: str = "") -> None:
        """An incoming stream ended (arrived, refused, failed): no more progress to show."""
        tile = self.tiles.get(image_id)
        if tile is not None and (tile.progress is not None or note):
            tile.progress = None
            tile.note = note or tile.note
            tile.version = self._touch(image_id)

    def peer_gone(self, peer: str) -> None:
        self.connected.discard(peer)
        for image_id, tile in self.tiles.items():
            if tile.progress is not None and tile.progress[0] == peer:
                tile.progress = None
                tile.version = self._touch(image_id)

    def changed_since(self, version: int) -> list[Tile]:
        out = []
        for image_id in reversed(self._by_version):
            tile = self.tiles[image_id]
            if tile.version <= version:
                break
            out.append(tile)
        return out

    def newest_first(self, origin: str | None = None) -> list[Tile]:
        tiles = [t for t in self.tiles.values() if origin is None or t.facts.origin == origin]
        tiles.sort(key=_newest_first)
        return tiles

    def transferring(self) -> int:
        return sum(1 for t in self.tiles.values() if t.progress is not None)

    def tile_json(self, tile: Tile) -> dict[str, Any]:
        f = tile.facts
        return {
            "id": f.image_id,
            "origin": f.origin,
            "seq": f.seq,
            "name": f.name,
            "size": f.size,
            "mime": f.mime,
            "time": f.capture_time,
            "arrived": f.thumbnail_at,
            "original_at": f.original_at,
            "meta": dict(f.metadata),
            "mark": tile.mark(self.me),
            "progress": None if tile.progress is None else [tile.progress[1], tile.progress[2]],
            "holders": [self.shown(h) for h in f.holders],
            "held_for": None if f.held_for is None else self.shown(f.held_for),
            "sealed": f.sealed,
            "smaller": None if f.smaller is None else f.smaller.as_json(),
            "note": tile.note,
            "marks": f.marks.as_json(),
            "strip": strip_json(f.strip, tile.strip_in()),
            "v": tile.version,
        }

    def status_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        origins: dict[str, int] = {}
        for tile in self.tiles.values():
            mark = tile.mark(self.me)
            counts[mark] = counts.get(mark, 0) + 1
            origins[tile.facts.origin] = origins.get(tile.facts.origin, 0) + 1
        return {
            "version": self.version,
            "epoch": self.epoch,
            "me": {"id": self.me, "name": self.shown(self.me)},
            "total": len(self.tiles),
            "transferring": counts.get(Mark.TRANSFERRING, 0),
            "marks": counts,
            "labels": {str(n): text for n, text in sorted(self.labels.items())},
            "cameras": [
                {"id": o, "name": self.shown(o), "count": n,
                 "connected": o in self.connected, "me": o == self.me}
                for o, n in sorted(origins.items(), key=lambda item: self.shown(item[0]).casefold())
            ],
        }


def _newest_first(tile: Tile) -> tuple[float, str, int]:
    f = tile.facts
    when = f.capture_time if f.capture_time is not None else (f.thumbnail_at or f.original_at or 0.0)
    return (-when, f.origin, -f.seq)


# Events after which a tile's facts must be read again from the card.
REREAD = (
    ev.ThumbnailArrived, ev.StripArrived, ev.OriginalArrived, ev.TransferRefused, ev.RequestPending,
    ev.Dispersed, ev.HeldStored, ev.Released, ev.Collected, ev.CollectFailed,
    ev.MarksArrived,  # another desk's marks (issue 19, protocol/marks.py)
)


# Events that end an incoming stream: its progress is no longer shown.
FINISHED = (
    ev.OriginalArrived, ev.TransferRefused, ev.HeldStored, ev.Collected, ev.CollectFailed,
    ev.ReadOutDone, ev.ReadOutFailed, ev.RequestPending,  # pending again: the card filled
)


def image_of(event: ev.NodeEvent) -> str | None:
    image_id = getattr(event, "image_id", None)
    return image_id if isinstance(image_id, str) else None
