"""The originals we pull from our peers (FIG. 10, FIG. 13B): the user's requests and refusals,
and the background pulls a peer's policy (``Policy.ALL``) asks for; under ``Policy.REQUESTED``
(the patent's "requested only") an original comes only when our user asks for it.

One ABSENT original is, for this machine, in one state at a time:

  state    input                                      next state
  -------  -----------------------------------------  ---------------------------------
  IDLE     thumbnail seen, policy ALL, not refused    QUEUED (ASKED if a source is free)
  IDLE     thumbnail seen, policy REQUESTED           IDLE (only our user's request pulls)
  IDLE     the user's request                         WANTED (ASKED if a source is ready)
  QUEUED   a source with a free slot and room         ASKED (background)
  QUEUED   the user's request                         WANTED, or ASKED (urgent)
  WANTED   a ready source (its origin, an offerer)    ASKED (urgent)
  ASKED    the user's request, while background       ASKED (urgent, moved up)
  ASKED    the original arrives                       IDLE (it is LOCAL now)
  ASKED    the link goes: background / urgent         QUEUED / WANTED
  ASKED    TransferFailed: background / urgent        QUEUED, that source skipped / IDLE
  any      the user's refusal                         IDLE (refused: never pulled)

``TRANSITIONS`` is that table; ``state_of`` reads a picture's state off the machine.
A source is a ready peer that offered the original (``has_original``), and for the
user also its origin; background pulls take at most ``max_outstanding_requests`` per
peer and stop below the high-water mark (protocol.room), in arrival order but for the
editor's selects (tagged or rated: ``selected``), which go first.  Each input returns the
effects it wants (protocol.effects); nothing here calls the node.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from protocol import events as ev
from protocol import room
from protocol.config import NodeConfig, Policy
from protocol.effects import Cancel, Effect, Expect, Hurry, Outbox
from protocol.messages import Purpose, RefuseOriginal, RequestOriginal
from protocol.peer import Expected, Link
from protocol.store import Decision, ImageRecord, Incoming, Store, Where, selected


class PullState(enum.StrEnum):
    """Where one ABSENT original is in our pulling of it."""

    IDLE = "idle"
    QUEUED = "queued"  # a background pull waiting for a source, a slot or room
    WANTED = "wanted"  # the user's request waiting for a ready source
    ASKED = "asked"  # RequestOriginal sent: a stream is expected on a link


IDLE, Q, W, A = PullState.IDLE, PullState.QUEUED, PullState.WANTED, PullState.ASKED

TRANSITIONS: Final[Mapping[tuple[PullState, str], frozenset[PullState]]] = {
    (IDLE, "thumbnail"): frozenset({Q, A, IDLE}),  # IDLE: another policy, or refused
    (Q, "thumbnail"): frozenset({Q, A}),  # another offerer: a pump runs
    (W, "thumbnail"): frozenset({W, A}),
    (A, "thumbnail"): frozenset({A}),
    (IDLE, "request"): frozenset({W, A}),  # A: a source is ready at once
    (Q, "pump"): frozenset({Q, A}),
    (Q, "request"): frozenset({W, A}),
    (W, "pump"): frozenset({W, A}),
    (A, "request"): frozenset({A}),
    (A, "arrived"): frozenset({IDLE}),
    (A, "link-gone"): frozenset({Q, W}),
    (A, "failed"): frozenset({Q, IDLE}),
    (IDLE, "refuse"): frozenset({IDLE}),
    (Q, "refuse"): frozenset({IDLE}),
    (W, "refuse"): frozenset({IDLE}),
    (A, "refuse"): frozenset({IDLE}),
}

_KIND = {Purpose.SYNC: Incoming.ORIGINAL, Purpose.SMALLER: Incoming.SMALLER}


class Pulls:
    """Requests, refusals and background pulls of one node (see the module's table)."""

    def __init__(self, store: Store, config: NodeConfig, links: Mapping[str, Link]) -> None:
        self.store = store
        self.config = config
        self.links = links  # read only: a link is written through effects
        self._out = Outbox()
        self._offers: dict[str, set[str]] = {}  # image id -> peers that offered its original
        self._pulls: dict[str, None] = {}  # background pulls wanted, in arrival order
        # Per source peer, the pulls it could serve (offerers and the origin), in order: a
        # free slot looks only at its own queue, never at every pull.
        self._pull_queues: dict[str, dict[str, None]] = {}
        self._wanted: dict[str, tuple[int | None, int | None]] = {}  # user requests not yet sent
        self._failed_sources: set[tuple[str, str]] = set()  # (image, peer) that could not serve
        self._background: dict[str, set[str]] = {}  # per peer, our background pulls in flight

    # --- what the node asks ---------------------------------------------------------------

    def state_of(self, image_id: str) -> PullState:
        if image_id in self._wanted:
            return PullState.WANTED
        if image_id in self._pulls:
            return PullState.QUEUED
        if any(
            (image_id, p) in link.expected
            for link in self.links.values()
            for p in (Purpose.SYNC, Purpose.SMALLER)
        ):
            return PullState.ASKED
        return PullState.IDLE

    def offerers(self, image_id: str) -> set[str]:
        """Peers that offered this picture's original (has_original), connected or not."""
        return set(self._offers.get(image_id, ()))

    def waiting(self) -> tuple[int, int]:
        """(background pulls, user requests) not yet sent."""
        return len(self._pulls), len(self._wanted)

    # --- inputs -----------------------------------------------------------------------------

    def resume_wanted(self, image_id: str) -> None:
        """At start: our user's request for an ABSENT original outlives the process."""
        self._wanted[image_id] = (None, None)

    def request(
        self, image_id: str, now: float, *, max_side: int | None, quality: int | None
    ) -> list[Effect]:
        """The user wants this original (or a smaller copy) first (FIG. 10, S63-S65)."""
        self.store.set_decision(
            image_id, Decision.REQUESTED, now, max_side=max_side, quality=quality
        )
        self._out.emit(ev.Decided(image_id, Decision.REQUESTED))
        self._pulls.pop(image_id, None)
        self._wanted[image_id] = (max_side, quality)
        self._pump(now)
        if image_id in self._wanted:
            self._out.emit(ev.RequestPending(image_id, "no connected peer has this original yet"))
        return self._out.take()

    def refuse(self, image_id: str, now: float) -> list[Effect]:
        """The user does not need this original ("not necessary", FIG. 13B)."""
        self.store.set_decision(image_id, Decision.REFUSED, now)
        self._out.emit(ev.Decided(image_id, Decision.REFUSED))
        self._pulls.pop(image_id, None)
        self._wanted.pop(image_id, None)
        record = self.store.image(image_id)
        if record is not None and record.where is Where.ABSENT:
            self.store.discard_partial(image_id, Incoming.ORIGINAL)  # from an earlier link too
        for link in self.links.values():
            if not link.ready:
                continue
            asked = False
            for purpose in (Purpose.SYNC, Purpose.SMALLER):
                if (image_id, purpose) in link.expected:
                    self._out.add(Cancel(link.peer_id, image_id, purpose))
                    asked = True
                    self.store.discard_partial(image_id, _KIND[purpose])
            self._background.get(link.peer_id, set()).discard(image_id)
            if asked or link.peer_id in self._offers.get(image_id, ()):
                self._out.send(link.peer_id, RefuseOriginal(image_id))
        self._pump(now)
        return self._out.take()

    def offered(self, peer_id: str, image_id: str) -> None:
        """A thumbnail offer said the peer has the original."""
        self._offers.setdefault(image_id, set()).add(peer_id)
        if image_id in self._pulls:
            self._pull_queues.setdefault(peer_id, {})[image_id] = None

    def thumbnail_seen(self, image_id: str, now: float) -> list[Effect]:
        """A thumbnail came in: pull its original if our policy wants it."""
        self._want_in_background(image_id)
        self._pump(now)
        return self._out.take()

    def link_ready(self, peer_id: str) -> None:
        """Catalogs exchanged: the peer may serve what it failed to before; walk for ALL."""
        self._failed_sources = {f for f in self._failed_sources if f[1] != peer_id}
        # The whole catalog is walked only to pull: seen() names every origin we know.
        if self.config.policy_for(peer_id) is Policy.ALL:
            for record in self.store.images():
                if record.where is Where.ABSENT:
                    self._want_in_background(record.image_id)  # also after our own restart

    def selected(self, image_id: str) -> None:
        """Our marks made the picture a select (issue 19): its background pull goes first."""
        if image_id in self._pulls:
            for peer_id, queue in self._pull_queues.items():
                if image_id in queue:
                    self._pull_queues[peer_id] = {image_id: None, **queue}

    def stream_lost(self, image_id: str, expected: Expected) -> None:
        """A link went with our request on it: asked again from the next source."""
        if expected.urgent:
            self._wanted.setdefault(image_id, (None, None))
        else:
            record = self.store.image(image_id)
            if record is not None:
                self._queue_pull(image_id, record.origin)

    def link_gone(self, peer_id: str) -> None:
        self._background.pop(peer_id, None)

    def finished(self, peer_id: str, image_id: str) -> None:
        """The stream from the peer ended (arrived, or abandoned): its slot is free."""
        self._background.get(peer_id, set()).discard(image_id)

    def failed(self, peer_id: str, image_id: str, expected: Expected) -> None:
        """The peer answered TransferFailed to our request (SYNC or SMALLER)."""
        self._background.get(peer_id, set()).discard(image_id)
        if expected.purpose is Purpose.SYNC and not expected.urgent:
            self._failed_sources.add((image_id, peer_id))
            self._want_in_background(image_id)  # another peer may have it

    def pump(self, now: float) -> list[Effect]:
        """Send the user's waiting requests, then background pulls while there is room."""
        self._pump(now)
        return self._out.take()

    # --- the rules --------------------------------------------------------------------------

    def _want_in_background(self, image_id: str) -> None:
        """Queue an ABSENT, unrefused original for the policy pulls (the source is chosen later)."""
        if image_id in self._pulls or image_id in self._wanted:
            return
        if any((image_id, Purpose.SYNC) in link.expected for link in self.links.values()):
            return  # already on its way
        record = self.store.image(image_id)
        if (
            record is not None
            and record.where is Where.ABSENT
            and self._pulled_from_any(image_id, record.origin)
            and not self._refused(image_id)
        ):
            self._queue_pull(image_id, record.origin)

    def _pulled_from_any(self, image_id: str, origin: str) -> bool:
        """Whether our policy pulls this original from its origin or from an offerer of it:
        under REQUESTED nothing waits in the background queue (it would be counted as a
        pull waiting, and never sent)."""
        policy_for = self.config.policy_for
        return policy_for(origin) is Policy.ALL or any(
            policy_for(peer_id) is Policy.ALL for peer_id in self._offers.get(image_id, ())
        )

    def _queue_pull(self, image_id: str, origin: str) -> None:
        self._pulls[image_id] = None
        for peer_id in (*self._offers.get(image_id, ()), origin):
            self._pull_queues.setdefault(peer_id, {})[image_id] = None
        if selected(self.store.stamped_marks(image_id)):  # marked before we pulled (a restart)
            self.selected(image_id)

    def _refused(self, image_id: str) -> bool:
        decision = self.store.decision(image_id)
        return decision is not None and decision.decision is Decision.REFUSED

    def _ready_link(self, peer_id: str) -> Link | None:
        link = self.links.get(peer_id)
        return link if link is not None and link.ready else None

    def _source_for(self, image_id: str, record: ImageRecord, *, urgent: bool) -> Link | None:
        """A ready peer to ask for an original: its offerers; for the user, also its origin."""
        peers = set(self._offers.get(image_id, ()))
        if urgent:
            peers.add(record.origin)
        for peer_id in sorted(peers, key=lambda p: (p != record.origin, p)):
            link = self._ready_link(peer_id)
            if link is not None:
                return link
        return None

    def _pump(self, now: float) -> None:
        if self._wanted:
            for image_id, (max_side, quality) in list(self._wanted.items()):
                record = self.store.image(image_id)
                if record is None:
                    continue
                link = self._source_for(image_id, record, urgent=True)
                if link is not None:
                    del self._wanted[image_id]
                    self._send_request(
                        link, record, urgent=True, max_side=max_side, quality=quality
                    )
        if not self._pulls:
            return
        most = self.config.max_outstanding_requests
        queues = self._pull_queues
        background = self._background
        # Only peers with a pull queue are looked at: the queues are few, the calls many.
        links, policy_for = self.links, self.config.policy_for
        open_peers = [
            peer_id
            for peer_id in queues
            if (link := links.get(peer_id)) is not None
            and link.ready
            and len(background.get(peer_id, ())) < most
            and policy_for(peer_id) is Policy.ALL
        ]
        if not open_peers:
            return  # every peer we pull from is busy or has nothing for us: nothing to decide
        left: int | None = None  # room below the mark, computed once a pull has a source
        for peer_id in sorted(open_peers):
            link = self.links[peer_id]
            queue = queues[peer_id]
            in_flight = background.setdefault(peer_id, set())
            done: list[str] = []
            full = False
            for image_id in queue:
                if image_id not in self._pulls:
                    done.append(image_id)  # pulled from another peer, or no longer wanted
                    continue
                if (image_id, peer_id) in self._failed_sources:
                    continue  # kept: it may serve it after a reconnect
                record = self.store.image(image_id)
                if record is None or record.where is not Where.ABSENT:
                    del self._pulls[image_id]
                    done.append(image_id)
                    continue
                if left is None:
                    left = self._room_for_pulls()
                need = record.size - self.store.partial_offset(image_id, Incoming.ORIGINAL)
                if need > left:
                    full = True  # the card is near its high-water mark: pull no more for now
                    break
                left -= need
                del self._pulls[image_id]
                done.append(image_id)
                in_flight.add(image_id)
                self._send_request(link, record, urgent=False)
                if len(in_flight) >= most:
                    break
            for image_id in done:
                del queue[image_id]
            if not queue:
                del self._pull_queues[peer_id]
            if full:
                return

    def _room_for_pulls(self) -> int:
        """Bytes we may still pull below the high-water mark, after the pulls in flight."""
        left = room.below_mark(self.store.usage(), self.config.high_water)
        for peer_id in self.links:
            for image_id in self._background.get(peer_id, ()):
                record = self.store.image(image_id)
                if record is not None:
                    left -= record.size - self.store.partial_offset(image_id, Incoming.ORIGINAL)
        return left

    def _send_request(
        self,
        link: Link,
        record: ImageRecord,
        *,
        urgent: bool,
        max_side: int | None = None,
        quality: int | None = None,
    ) -> None:
        smaller = max_side is not None or quality is not None
        purpose = Purpose.SMALLER if smaller else Purpose.SYNC
        key = (record.image_id, purpose)
        current = link.expected.get(key)
        if current is not None:
            # Already on its way: an urgent repeat makes the sender move it up the queue.
            if urgent and not current.urgent:
                self._out.add(Hurry(link.peer_id, record.image_id, purpose))
                self._background.get(link.peer_id, set()).discard(record.image_id)
                stream = link.streams.get(key)
                offset = stream.next_offset if stream is not None else current.offset
                self._out.send(link.peer_id, RequestOriginal(record.image_id, True, offset))
            return
        if smaller:
            self.store.discard_partial(record.image_id, Incoming.SMALLER)  # other sizes differ
            offset = 0
        else:
            offset = self.store.partial_offset(record.image_id, Incoming.ORIGINAL)
        kind = Incoming.SMALLER if smaller else Incoming.ORIGINAL
        self._out.add(
            Expect(
                link.peer_id,
                Expected(
                    record.image_id,
                    purpose,
                    kind,
                    offset,
                    size=None if smaller else record.size,
                    urgent=urgent,
                ),
            )
        )
        self._out.send(
            link.peer_id,
            RequestOriginal(record.image_id, urgent, offset, max_side=max_side, quality=quality),
        )
