"""Dispersal when a card fills (claims 1-7, 11-17): the owner's side.  The holder's: holding.py.

Above the high-water mark, pick originals (oldest capture first, only our own
complete LOCAL ones) and holders (ready peers with room, desks first, then a stable
per-picture order), ask, stream on accept, and free the original only once
``replicas`` holders answered STORED (the dispersion-list entry is durable first).
Holders are blind (issue 7): an original leaves sealed with its own key
(``Store.sealed_form``), which stays with us beside the list; sizes, offsets and
digests on the wire are the sealed form's, and we free our copy only for that digest.
Repair: a holder gone for good (``repair``) leaves the list where another copy exists,
and each dispersed original then short of ``replicas`` holders is copied to a new
holder, relayed from one that STORED it (told to the collections: ``Relay``).

One (picture, holder) entry of our dispersion list is in one state at a time:

  state       input                                        next state  effects
  ----------  -------------------------------------------  ----------  --------------------------
  NONE        a look above the mark picks this holder      REQUESTED   DisperseRequest
  REQUESTED   DisperseAccept reserving the sealed size     ACCEPTED    DispersalAccepted; the stream
              (a repair's: the relay from another holder)              (Tell Relay)
  REQUESTED   DisperseReject                               NONE        skip it retry_s; DispersalRejected
  ACCEPTED    Stored with our digest, our stream done      STORED      Dispersed once ``replicas`` STORED
  REQUESTED   its link is back                             REQUESTED   DisperseRequest (Release: not LOCAL)
  any, not    our Release leaves                           NONE
  STORED
  STORED      DisperseAccept (a replay)                    STORED      nothing
  STORED      its holder is gone for good                  NONE        (the repair asks another)
              ... and it held the only copy                STORED      RepairFailed
  NONE        DisperseAccept or Stored                     NONE        Release (it frees what it has)
  COLLECTING  Stored (collections.py brings it home)       COLLECTING  nothing

ACCEPTED is answered as REQUESTED is (an accept again; a reject).  A holder that
accepts reserving too little, or stores early or another digest, is cut off
(RemoteProtocolError).  ``TRANSITIONS`` is that table; ``state_of`` reads an entry's
state off the card.  Card writes are direct ("durable before the frame leaves"); all
else is returned as effects (protocol.effects).

The rule of the look (``maybe_disperse``, run on every tick while over the mark): it runs
in full unless nothing came in since a full look that asked nobody -- every input of
this machine is marked ``@_news`` -- and the excess is no larger than that look covered
(or it found too few holders, when more excess changes nothing).
"""

from __future__ import annotations

import bisect
import functools
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Concatenate, Final, ParamSpec, TypeVar

from protocol import events as ev
from protocol import room
from protocol.config import NodeConfig
from protocol.effects import Effect, Outbox, QueueOriginal, Rearm, Relay
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Purpose,
    Release,
    Stored,
)
from protocol.peer import Link, holder_rank, stored_holders
from protocol.scheduler import Lane, Source, Transfer
from protocol.sealing import sealed_size
from protocol.store import DispersalState, DispersionEntry, ImageRecord, NotFound, Store, Where

_OUTGOING = (DispersalState.REQUESTED, DispersalState.ACCEPTED)
NONE: Final = "none"  # no entry names this holder for the picture
REQ, ACC, STO, COL = (
    DispersalState.REQUESTED, DispersalState.ACCEPTED, DispersalState.STORED,
    DispersalState.COLLECTING,
)
EntryState = DispersalState | str

TRANSITIONS: Final[Mapping[tuple[EntryState, str], frozenset[EntryState]]] = {
    (NONE, "ask"): frozenset({REQ}),
    (REQ, "accept"): frozenset({ACC}),
    (ACC, "accept"): frozenset({ACC}),
    (STO, "accept"): frozenset({STO}),
    (NONE, "accept"): frozenset({NONE}),
    (REQ, "reject"): frozenset({NONE}),
    (ACC, "reject"): frozenset({NONE}),
    (STO, "reject"): frozenset({STO}),
    (NONE, "reject"): frozenset({NONE}),
    (ACC, "stored"): frozenset({STO}),
    (NONE, "stored"): frozenset({NONE}),
    (COL, "stored"): frozenset({COL}),
    (REQ, "link-back"): frozenset({REQ}),
    (ACC, "link-back"): frozenset({ACC}),
    (REQ, "release-sent"): frozenset({NONE}),
    (ACC, "release-sent"): frozenset({NONE}),
    (COL, "release-sent"): frozenset({NONE}),
    (STO, "release-sent"): frozenset({STO}),
    (NONE, "release-sent"): frozenset({NONE}),
    (STO, "holder-lost"): frozenset({NONE, STO}),  # STO: the only copy, RepairFailed
    (REQ, "holder-lost"): frozenset({NONE, REQ}),
    (ACC, "holder-lost"): frozenset({NONE, ACC}),
}

P = ParamSpec("P")
R = TypeVar("R")


def _news(method: Callable[Concatenate[Dispersal, P], R]) -> Callable[Concatenate[Dispersal, P], R]:
    """An input of the machine: what the next look reads may have changed (the rule of the look)."""

    @functools.wraps(method)
    def marked(self: Dispersal, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._looked = False
        return method(self, *args, **kwargs)

    return marked


class Dispersal:
    """The owner's side of dispersal for one node (see the module's table)."""

    def __init__(self, store: Store, config: NodeConfig, links: Mapping[str, Link]) -> None:
        self.store = store
        self.config = config
        self.links = links  # read only: a link is written through effects
        self.device_id = store.device_id
        self._out = Outbox()
        self._rejected: dict[tuple[str, str], float] = {}  # (image, holder) -> skip until
        self._full_reported = False
        self._repairs: set[str] = set()  # our dispersed originals short of holders
        # The room each ready holder has for us: its last word (Hello, DisperseReject) less
        # what we asked of it since; a link's advertised room until then.
        self._room: dict[str, int] = {}
        # Our own LOCAL originals, oldest capture first: the candidates, kept in memory so
        # that a card over its mark is not rescanned on every tick (rebuilt on start).
        self._local: list[tuple[bool, float, int, str]] = []
        self._local_ids: set[str] = set()
        self._looked = False  # a full look ran since the last input, and asked nobody
        self._look_excess = 0  # the excess it covered
        self._look_short = False  # it found no holder for some: more excess changes nothing

    def state_of(self, image_id: str, holder: str) -> EntryState:
        entry = self._entry(image_id, holder)
        return NONE if entry is None else entry.state

    def room_of(self, peer_id: str) -> int:
        """The room the peer has for us, as we reckon it (PeerView.advertised_free)."""
        link = self.links.get(peer_id)
        return self._room.get(peer_id, link.free if link is not None else 0)

    # --- inputs -----------------------------------------------------------------------------

    @_news
    def note_local(self, record: ImageRecord) -> None:
        """One of our originals is (again) on the card: a candidate for dispersal."""
        if record.origin == self.device_id and record.image_id not in self._local_ids:
            self._local_ids.add(record.image_id)
            key = (record.capture_time is None, record.capture_time or 0.0, record.seq)
            bisect.insort(self._local, (*key, record.image_id))

    @_news
    def resume(self) -> None:
        """At start: index our local originals; find dispersed ones short of ``replicas``."""
        store = self.store
        for own in store.images_after(self.device_id, 0):
            if own.where is Where.LOCAL:
                self.note_local(own)
        short: dict[str, int] = {}
        for entry in store.dispersion_list():
            if entry.state is DispersalState.STORED:
                short[entry.image_id] = short.get(entry.image_id, 0) + 1
        for image_id, count in short.items():
            if count < self.config.replicas:
                record = store.image(image_id)
                if record is not None and record.where is Where.DISPERSED:
                    self._repairs.add(image_id)

    @_news
    def repair(self, holder_id: str, name: str, now: float) -> list[Effect]:
        """``holder_id`` (called ``name``) is gone for good: drop it where another copy exists,
        then re-replicate."""
        store = self.store
        for entry in list(store.dispersion_list()):
            if entry.holder != holder_id:
                continue
            record = store.image(entry.image_id)
            others = [
                e
                for e in store.dispersion(entry.image_id)
                if e.holder != holder_id and e.state is DispersalState.STORED
            ]
            local = record is not None and record.where is Where.LOCAL
            if not local and not others:
                self._out.emit(
                    ev.RepairFailed(
                        entry.image_id,
                        f"{name} was the only holder of this original and no other copy "
                        f"exists; it stays listed in case {name} comes back",
                    )
                )
                continue
            store.remove_dispersion(entry.image_id, holder_id)
            if not local:
                self._repairs.add(entry.image_id)
        return self.maybe_disperse(now)

    @_news
    def link_ready(self, peer_id: str, now: float) -> list[Effect]:
        """A holder is back: ask again for what was asked or accepted but not yet stored."""
        store = self.store
        for entry in list(store.dispersion_list()):
            if entry.holder != peer_id or entry.state not in _OUTGOING:
                continue
            record = store.image(entry.image_id)
            if record is not None and record.where is Where.LOCAL:
                self._out.send(
                    peer_id, DisperseRequest(record.image_id, sealed_size(record.size), self.device_id)
                )
            else:
                self._out.send(peer_id, Release(entry.image_id))
        return self.maybe_disperse(now)

    @_news
    def link_gone(self, peer_id: str) -> None:
        """Entries stay in the list; the holder is asked again when it returns."""
        self._room.pop(peer_id, None)

    @_news
    def on_accept(self, peer_id: str, msg: DisperseAccept, now: float) -> list[Effect]:
        store = self.store
        entry = self._entry(msg.image_id, peer_id)
        record = store.image(msg.image_id)
        if entry is not None and entry.state is DispersalState.STORED:
            # A replayed accept for what it holds already: a Release would delete the copy
            # our list counts on (our original may be freed), and the picture exist nowhere.
            return self._out.take()
        repair = (
            record is not None
            and record.where is Where.DISPERSED
            and msg.image_id in self._repairs
            and any(self._ready(h) for h in stored_holders(store, msg.image_id))
        )
        if (
            entry is None
            or entry.state not in _OUTGOING
            or record is None
            or (record.where is not Where.LOCAL and not repair)
        ):
            self._out.send(peer_id, Release(msg.image_id))  # free what it reserved
            return self._out.take()
        size = sealed_size(record.size)
        if msg.offset > size or msg.reservation < size:
            raise RemoteProtocolError(
                f"accept of {msg.image_id[:12]} at offset {msg.offset} reserving "
                f"{msg.reservation} bytes, for a sealed original of {size}",
                code="bad-accept",
            )
        store.set_dispersion(msg.image_id, peer_id, DispersalState.ACCEPTED, now)
        self._full_reported = False
        self._out.emit(ev.DispersalAccepted(msg.image_id, peer_id, msg.reservation))
        if repair:
            # Our card has no copy: relay one holder's bytes to the new one as they come.
            self._out.tell(Relay(peer_id, msg.image_id, Purpose.DISPERSE, msg.offset, now))
            return self._out.take()
        form = store.sealed_form(msg.image_id)  # the key is durable before a sealed byte goes
        transfer = Transfer(
            image_id=msg.image_id,
            purpose=Purpose.DISPERSE,
            lane=Lane.DISPERSAL,
            size=form.size,
            digest=form.digest,
            offset=msg.offset,
            destination=peer_id,  # claims 5, 15: the header names the destination
            owner=self.device_id,
            source=Source.SEALED,
        )
        self._out.add(QueueOriginal(peer_id, transfer, record))  # its thumbnail goes first
        return self._out.take()

    @_news
    def on_reject(self, peer_id: str, msg: DisperseReject, now: float) -> list[Effect]:
        entry = self._entry(msg.image_id, peer_id)
        self._room[peer_id] = msg.free  # its room is news
        if entry is None or entry.state not in _OUTGOING:
            return self._out.take()
        self.store.remove_dispersion(msg.image_id, peer_id)
        self._rejected[(msg.image_id, peer_id)] = now + self.config.retry_s
        self._out.add(Rearm())
        self._out.emit(ev.DispersalRejected(msg.image_id, peer_id, msg.reason))
        return self.maybe_disperse(now)  # claims 7, 17: on to the next candidate

    @_news
    def on_stored(self, peer_id: str, msg: Stored, now: float) -> list[Effect]:
        store = self.store
        entry = self._entry(msg.image_id, peer_id)
        try:
            form = store.sealed_form(msg.image_id) if entry is not None else None
        except NotFound:
            form = None  # neither our original nor its key: nothing this answer could free
        if form is not None and msg.digest != form.digest:
            raise RemoteProtocolError(
                f"stored {msg.image_id[:12]} with digest {msg.digest[:12]}: not the sealed "
                f"original we sent ({form.digest[:12]})",
                code="bad-digest",
            )
        if entry is None or entry.state is DispersalState.COLLECTING:
            if entry is None:
                self._out.send(peer_id, Release(msg.image_id))  # no list names it
            return self._out.take()
        if self.links[peer_id].scheduler.transfer(msg.image_id, Purpose.DISPERSE) is not None:
            # Our stream to it is still queued or going: it cannot have stored and verified
            # what we have not finished sending.  Believing it would free a picture nobody holds.
            raise RemoteProtocolError(
                f"holder says it stored {msg.image_id[:12]} before we finished sending it",
                code="premature-stored",
            )
        # The list entry is durable before the original may go (claims 3, 4, 13, 14).
        store.set_dispersion(msg.image_id, peer_id, DispersalState.STORED, now)
        if msg.image_id in self._repairs:
            record = store.image(msg.image_id)
            if record is not None and record.where is Where.DISPERSED:
                self._out.emit(ev.Repaired(msg.image_id, peer_id))
        self._free_if_enough(msg.image_id, now)
        return self._out.take()

    @_news
    def release_sent(self, peer_id: str, image_id: str) -> None:
        """Our Release is on the wire: the holder's entry leaves the list."""
        entry = self._entry(image_id, peer_id)
        if entry is not None and entry.state is not DispersalState.STORED:
            self.store.remove_dispersion(image_id, peer_id)

    # --- the look ---------------------------------------------------------------------------

    def maybe_disperse(self, now: float) -> list[Effect]:
        """Above the high-water mark: ask holders for the oldest originals (claims 1, 11)."""
        store = self.store
        if self._repairs:
            self._repair(now)
        if self._rejected and min(self._rejected.values()) <= now:
            self._rejected = {k: until for k, until in self._rejected.items() if until > now}
            self._looked = False
        usage = store.usage()
        if not room.over_mark(usage, self.config.high_water):
            self._full_reported = False
            self._forget_rejections()
            self._looked = False
            return self._out.take()
        excess = usage.used - room.mark(usage.capacity, self.config.high_water)
        if self._looked and (excess <= self._look_excess or self._look_short):
            return self._out.take()  # the rule of the look: nothing new to ask for
        self._looked, self._look_excess = True, excess
        by_image: dict[str, list[DispersionEntry]] = defaultdict(list)
        for entry in store.dispersion_list():
            by_image[entry.image_id].append(entry)
        candidates: list[ImageRecord] = []
        kept: list[tuple[bool, float, int, str]] = []
        for key in self._local:
            record = store.image(key[3])
            if record is None or record.where is not Where.LOCAL:
                self._local_ids.discard(key[3])
                continue  # freed (or gone): no longer a candidate
            kept.append(key)
            entries = by_image.get(record.image_id, [])
            if any(e.state is DispersalState.COLLECTING for e in entries):
                continue  # came home; its holders are being released
            if entries:
                excess -= record.size  # already on its way out
            candidates.append(record)
        self._local = kept
        short = asked = False
        for record in candidates:
            entries = by_image.get(record.image_id, [])
            if entries:
                need = self.config.replicas - len(entries)
            elif excess > 0:
                need = self.config.replicas
                excess -= record.size
            else:
                continue
            if need <= 0:
                continue
            holders = self._pick_holders(record, {e.holder for e in entries}, need, now)
            for link in holders:
                self._ask(link, record, now)
                asked = True
            short = short or len(holders) < need
        self._look_short = short
        waiting = asked or any(e.state in _OUTGOING for es in by_image.values() for e in es)
        if (short or excess > 0) and not waiting and not self._full_reported:
            self._full_reported = True
            self._out.emit(
                ev.CardFull(
                    f"The card is full: {usage.used} of {usage.capacity} bytes used, past its "
                    f"{self.config.high_water:.0%} mark, and no connected peer will hold "
                    "more originals. Nothing was lost: every picture is still on this card. "
                    "Offload the card or bring a peer with room."
                )
            )
        return self._out.take()

    def _repair(self, now: float) -> None:
        """Ask new holders for dispersed originals short of ``replicas`` (copied by relay)."""
        store = self.store
        for image_id in sorted(self._repairs):
            record = store.image(image_id)
            entries = store.dispersion(image_id)
            stored = [e.holder for e in entries if e.state is DispersalState.STORED]
            if record is None or record.where is not Where.DISPERSED or not stored:
                self._repairs.discard(image_id)
                continue
            need = self.config.replicas - len(entries)
            if need <= 0:
                if len(stored) >= self.config.replicas:
                    self._repairs.discard(image_id)
                continue  # an ask is on its way
            if not any(self._ready(h) for h in stored):
                continue  # no copy to relay from now; tried again when a holder is back
            for link in self._pick_holders(record, {e.holder for e in entries}, need, now):
                self._ask(link, record, now)

    def _pick_holders(
        self, record: ImageRecord, exclude: set[str], need: int, now: float
    ) -> list[Link]:
        """Ready peers with room, desks first, then a stable per-picture order."""
        links = [
            link
            for link in self.links.values()
            if link.ready
            and link.peer_id not in exclude
            and self._rejected.get((record.image_id, link.peer_id), -1.0) <= now
            and self.room_of(link.peer_id) >= sealed_size(record.size)
        ]
        links.sort(key=lambda link: (not link.is_desk, holder_rank(record.image_id, link.peer_id)))
        return links[:need]

    def _ask(self, link: Link, record: ImageRecord, now: float) -> None:
        # The entry is durable before the request leaves: a crash then finds it and asks again.
        self._looked = False  # what it asked is news to the next look
        self.store.set_dispersion(record.image_id, link.peer_id, DispersalState.REQUESTED, now)
        self._room[link.peer_id] = self.room_of(link.peer_id) - sealed_size(record.size)
        self._out.send(
            link.peer_id, DisperseRequest(record.image_id, sealed_size(record.size), self.device_id)
        )

    def next_retry(self) -> float | None:
        """When a rejected holder may be asked again (while the card is over the mark, or for
        a repair)."""
        if not self._rejected:
            return None
        if not room.over_mark(self.store.usage(), self.config.high_water):
            self._forget_rejections()
            if not self._rejected:
                return None
        return min(self._rejected.values())

    def _forget_rejections(self) -> None:
        """Below the mark, dispersal's rejections are moot; a repair's still stand, or it would
        ask the holder that just said no again at once, and again, for as long as it says no."""
        self._rejected = {k: until for k, until in self._rejected.items() if k[0] in self._repairs}

    def _free_if_enough(self, image_id: str, now: float) -> None:
        store = self.store
        record = store.image(image_id)
        holders = tuple(
            e.holder for e in store.dispersion(image_id) if e.state is DispersalState.STORED
        )
        if record is None or record.where is not Where.LOCAL:
            return
        if len(holders) >= self.config.replicas:
            store.free_original(image_id, now)
            self._out.emit(ev.Dispersed(image_id, holders))

    def _entry(self, image_id: str, holder: str) -> DispersionEntry | None:
        for entry in self.store.dispersion(image_id):
            if entry.holder == holder:
                return entry
        return None

    def _ready(self, peer_id: str) -> bool:
        link = self.links.get(peer_id)
        return link is not None and link.ready
