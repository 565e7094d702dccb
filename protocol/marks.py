"""The editor's marks between devices (issue 19): a mark set anywhere reaches every device.

One picture's marks, one link, for this machine:

  step      input                         what follows
  --------  ----------------------------  ---------------------------------------------------
  ready     the peer's Catalog, both       our MarksDigest: per bucket of image ids (their
            Hellos naming "marks"          first byte), a hash of every stamped mark we hold
  digest    the peer's MarksDigest         a Marked for each picture of ours in every bucket
            (once per link)                whose hash differs; the peer does the same with
                                           ours, so after one exchange both hold the merge
  marked    our user changed marks         a Marked of the picture's stamped marks to every
            (Node.marked)                  ready peer naming "marks"
  arrived   a peer's Marked                merged by last writer wins (the card keeps, per
                                           field, the greatest (time, device id, value));
                                           the fields that changed here: MarksArrived, and
                                           a Marked of them to every other ready peer naming
                                           "marks" (FIG. 21, as thumbnails are relayed)

A picture our marks make a select (tagged, or rated a star or more) is told to the pulls
(``Selected``), which pull its original before the rest (a camera's tagged frames first).

The merge is commutative, associative and idempotent, and a device relays only what changed
it, so marks made on two desks while they were apart agree once any path joins them again,
and no newer mark is lost.  A node names ``marks`` in its Hello when ``NodeConfig.share_marks``
(the real node does; the simulator only in its marks scenarios, so that earlier traces stay
as they were); a peer naming none is sent nothing of this.  Marks from a peer we named no capability
to, a second digest on one link, or marks the card refuses, are a RemoteProtocolError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Final

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.effects import Effect, Machine, Selected
from protocol.errors import RemoteProtocolError
from protocol.messages import MARK_FIELDS, Limits, Marked, MarksDigest, Message
from protocol.peer import Link
from protocol.store import Stamped, StampedMarks, Store, StoreError, canonical_mark, selected

CAPABILITY = "marks"

BUCKETS: Final = 256  # an image id's first byte
BUCKET_HASH: Final = Limits.MARK_DIGEST // BUCKETS  # bytes of each bucket's hash

Route = Callable[[Link, Any, float], None]  # as the node's routing table holds them

_EMPTY_BUCKET = bytes(BUCKET_HASH)

# A mark's time is the editor's clock (seconds since the epoch): one past this (the year 2242)
# is a lie that would win every later merge, and the next edit's stamp just after it would
# overflow to infinity, which no wire carries (the review of issue 19).
MAX_MARK_TIME: Final = float(2**33)


def bucket_of(image_id: str) -> int:
    """Which digest bucket a picture's marks count in: its id's first byte."""
    return int(image_id[:2], 16)


def digest(marks: Mapping[str, StampedMarks]) -> bytes:
    """Every bucket's hash of the stamped marks in it, or b"" when there are none.

    Two devices holding the same marks compute the same bytes: pictures in id order, fields
    in name order, each value as canonical JSON and each time by its exact ``repr``.
    """
    if not any(marks.values()):
        return b""
    hashers: dict[int, hashlib._Hash] = {}
    for image_id in sorted(marks):
        bucket = bucket_of(image_id)
        for name, mark in sorted(marks[image_id].items()):
            if bucket not in hashers:
                hashers[bucket] = hashlib.sha256()
            value, at = canonical_mark(mark.value), float(mark.at)
            hashers[bucket].update(f"{image_id}\0{name}\0{value}\0{at!r}\0{mark.device}\n".encode())
    return b"".join(
        hashers[n].digest()[: BUCKET_HASH] if n in hashers else _EMPTY_BUCKET
        for n in range(BUCKETS)
    )


def _at(buckets: bytes, n: int) -> bytes:
    """Bucket ``n``'s hash in a digest (an empty digest: every bucket empty)."""
    step = BUCKET_HASH
    return buckets[n * step : (n + 1) * step] if buckets else _EMPTY_BUCKET


def marked_message(image_id: str, stamped: StampedMarks) -> Marked | None:
    """The Marked message carrying ``stamped`` (fields in ``MARK_FIELDS`` order); None if none."""
    names = [name for name in MARK_FIELDS if name in stamped]
    if not names:
        return None
    return Marked(
        image_id=image_id,
        fields=tuple(names),
        values=tuple(stamped[n].value for n in names),
        times=tuple(float(stamped[n].at) for n in names),
        devices=tuple(stamped[n].device for n in names),
    )


class SharedMarks(Machine):
    """Carries the editor's marks between devices (see the module's table)."""

    def __init__(self, store: Store, config: NodeConfig, links: Mapping[str, Link]) -> None:
        super().__init__(store, config, links)
        self._answered: dict[str, Link] = {}  # peer -> the link on which we answered its digest
        self._unknown: set[str] | None = None  # pictures with marks our catalog lacks (lazily)

    # Marks are kept for a picture the catalog does not know yet (they may come before its
    # thumbnail), but only for this many: past it, a peer inventing ids floods the card.
    max_unknown: int = 10_000

    @property
    def capabilities(self) -> tuple[str, ...]:
        """What our Hello names: ``marks`` when this node shares them."""
        return (CAPABILITY,) if self.config.share_marks else ()

    def takes_marks(self, link: Link) -> bool:
        """We share marks and the peer's Hello named the capability."""
        return (
            self.config.share_marks
            and link.hello is not None
            and CAPABILITY in link.hello.capabilities
        )

    def routes(self, apply: Callable[[list[Effect]], None]) -> dict[type[Message], Route]:
        """The node's routing-table entries for our messages: each one's effects to ``apply``."""
        return {
            MarksDigest: lambda link, msg, now: apply(self.on_digest(link, msg)),
            Marked: lambda link, msg, now: apply(self.on_marked(link, msg)),
        }

    # --- inputs -----------------------------------------------------------------------------

    def link_ready(self, link: Link) -> list[Effect]:
        """The peer's catalog arrived: our digest, so that each side sends what the other lacks."""
        if self.takes_marks(link):
            self._out.send(link.peer_id, MarksDigest(digest(self.store.all_stamped_marks())))
        return self._out.take()

    def marked(self, image_id: str) -> list[Effect]:
        """Our user changed the marks of ``image_id`` (the card holds them): they go to every peer."""
        stamped = self.store.stamped_marks(image_id)
        if selected(stamped):
            self._out.tell(Selected(image_id))
        msg = marked_message(image_id, stamped)
        if msg is not None:
            for link in self.links.values():
                if link.ready and self.takes_marks(link):
                    self._out.send(link.peer_id, msg)
        return self._out.take()

    def on_digest(self, link: Link, msg: MarksDigest) -> list[Effect]:
        """Send the peer our marks of every bucket its digest disagrees with, once a link."""
        self._refuse_unless_shared(link, "a marks digest")
        if self._answered.get(link.peer_id) is link:
            raise RemoteProtocolError(
                "a second marks digest on one link (each side sends one, when the link is ready)",
                code="unexpected",
            )
        self._answered[link.peer_id] = link
        mine = self.store.all_stamped_marks()
        ours = digest(mine)
        if ours == msg.buckets:
            return self._out.take()

        differ = {n for n in range(BUCKETS) if _at(ours, n) != _at(msg.buckets, n)}
        for image_id in sorted(mine):
            if bucket_of(image_id) in differ and (out := marked_message(image_id, mine[image_id])):
                self._out.send(link.peer_id, out)
        return self._out.take()

    def on_marked(self, link: Link, msg: Marked) -> list[Effect]:
        """Merge a peer's marks; what changed here goes on to our other peers (FIG. 21)."""
        self._refuse_unless_shared(link, f"marks for {msg.image_id[:12]}")
        theirs = {
            name: Stamped(value, at, device)
            for name, value, at, device in zip(
                msg.fields, msg.values, msg.times, msg.devices, strict=True
            )
        }
        if any(at > MAX_MARK_TIME for at in msg.times):
            raise RemoteProtocolError(
                f"marks for {msg.image_id[:12]} stamped after the year 2242", code="bad-marks")
        if self.store.image(msg.image_id) is None:
            self._count_unknown(msg.image_id)
        try:
            changes = self.store.merge_marks(msg.image_id, theirs)
        except StoreError as exc:
            raise RemoteProtocolError(
                f"marks for {msg.image_id[:12]} that no card keeps: {exc}", code="bad-marks"
            ) from exc
        relay = marked_message(msg.image_id, changes)
        if relay is None:
            return self._out.take()  # nothing newer than ours: nothing to tell anyone
        self._out.emit(ev.MarksArrived(link.peer_id, msg.image_id, relay.fields))
        if selected(self.store.stamped_marks(msg.image_id)):
            self._out.tell(Selected(msg.image_id))
        for other in self.links.values():
            if other is not link and other.ready and self.takes_marks(other):
                self._out.send(other.peer_id, relay)
        return self._out.take()

    def _count_unknown(self, image_id: str) -> None:
        """Room for the marks of one more picture our catalog lacks, or the peer floods us."""
        if self._unknown is None:
            self._unknown = self._count_unknown_now()
        if image_id in self._unknown:
            return
        if len(self._unknown) >= self.max_unknown:  # some may have arrived since: count again
            self._unknown = self._count_unknown_now()
        if len(self._unknown) >= self.max_unknown:
            raise RemoteProtocolError(
                f"marks for {len(self._unknown)} pictures no catalog here knows, and more come:"
                " a peer inventing pictures floods the card", code="too-many-marks")
        self._unknown.add(image_id)

    def _count_unknown_now(self) -> set[str]:
        """One walk of the card's marks: the pictures among them no catalog entry has."""
        return {i for i in self.store.all_stamped_marks() if self.store.image(i) is None}

    def _refuse_unless_shared(self, link: Link, what: str) -> None:
        if not self.takes_marks(link):
            raise RemoteProtocolError(
                f"{what}, but marks were never offered on this link (no {CAPABILITY!r} "
                "capability in both Hellos)",
                code="unexpected",
            )
