"""One device's decision logic, sans-IO: what to send each peer, what to store, when to disperse.

The runtime (mesh/) or the simulator (sim/) calls a ``Node`` one call at a
time, with ``now`` as an argument, and pulls outgoing frames per peer with
``next_frame``.  Notifications come out of ``events()``.  See
docs/ARCHITECTURE.md ("The node") and DESIGN.md ("One picture's journey").

This module holds the links, the catalog exchange, thumbnails, requests and
refusals, and the incoming streams; dispersal lives in protocol.dispersal,
read-out and collection in protocol.readout.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from protocol import events as ev
from protocol import room, serving, transfers
from protocol.config import NodeConfig, Policy
from protocol.connection import Connection
from protocol.dispersal import Dispersal
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    Catalog,
    Chunk,
    Collect,
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Error,
    Goodbye,
    Hello,
    Limits,
    Message,
    OriginalComplete,
    OriginalHeader,
    Ping,
    Pong,
    Purpose,
    ReadOut,
    RefuseOriginal,
    Release,
    RequestOriginal,
    Stored,
    ThumbnailOffer,
    TransferFailed,
)
from protocol.peer import Expected, Link, PeerView, view_of
from protocol.readout import ReadOuts
from protocol.scheduler import (
    Scheduler,
)
from protocol.store import (
    Decision,
    ImageRecord,
    Incoming,
    Store,
    StoreError,
    TransferState,
    Where,
)

__all__ = ["Node", "NodeConfig", "PeerView", "Policy"]

# Where a finished stream lands, by why it travelled (None: not stored, forwarded or handed out).
_KIND = {
    Purpose.SYNC: Incoming.ORIGINAL,
    Purpose.SMALLER: Incoming.SMALLER,
    Purpose.DISPERSE: Incoming.HELD,
}


# What a peer did with a picture on an earlier link, proving it holds the thumbnail.  Not
# THUMBNAIL_SENT: that is set as the frame is rendered, and a link may die before it lands.
_PEER_HOLDS = frozenset(
    {TransferState.REQUESTED, TransferState.ORIGINAL_SENT, TransferState.REFUSED}
)

# What a peer asks us for; each queues an answer (the flood check counts after these).
_ASKS = (RequestOriginal, Collect, ReadOut, DisperseRequest, Ping)


class Node:
    """A device's protocol brain; single-threaded, never reads a clock (``now`` comes in)."""

    def __init__(self, store: Store, config: NodeConfig, rng: random.Random) -> None:
        self.store = store
        self.config = config
        self.rng = rng
        self.device_id = store.device_id
        self.links: dict[str, Link] = {}
        self.names: dict[str, str] = {}  # device id -> name, from every Hello seen
        self._events: list[ev.NodeEvent] = []
        self._offers: dict[str, set[str]] = {}  # image id -> peers that offered its original
        self._pulls: dict[str, None] = {}  # background pulls wanted, in arrival order
        # Per source peer, the pulls it could serve (offerers and the origin), in order: a
        # free slot looks only at its own queue, never at every pull.
        self._pull_queues: dict[str, dict[str, None]] = {}
        self._wanted: dict[str, tuple[int | None, int | None]] = {}  # user requests not yet sent
        self._failed_sources: set[tuple[str, str]] = set()  # (image, peer) that could not serve
        self._deadline: float | None = None
        self._deadline_stale = True
        self._busy: set[str] = set()  # peers that may have frames to send (see sending_peers)
        self.dispersal = Dispersal(self)
        self.readouts = ReadOuts(self)
        self._resume()

    def _resume(self) -> None:
        """After a (re)start: our user's requests and collections outlive the process."""
        for decision in self.store.decisions():
            if decision.decision is not Decision.REQUESTED:
                continue
            record = self.store.image(decision.image_id)
            if record is None:
                continue
            if record.origin == self.device_id and record.where is Where.DISPERSED:
                self.readouts.resume_home(record.image_id)
            elif (
                record.where is Where.ABSENT
                and decision.max_side is None
                and decision.quality is None
            ):
                self._wanted[record.image_id] = (None, None)
        self.dispersal.resume()

    # --- helpers shared with protocol.dispersal and protocol.readout -------------------

    def emit(self, event: ev.NodeEvent) -> None:
        self._events.append(event)

    def ready_links(self) -> list[Link]:
        return [link for link in self.links.values() if link.ready]

    def ready_link(self, peer_id: str) -> Link | None:
        link = self.links.get(peer_id)
        return link if link is not None and link.ready else None

    def offerers(self, image_id: str) -> set[str]:
        """Peers that offered this picture's original (has_original), connected or not."""
        return set(self._offers.get(image_id, ()))

    def name_of(self, peer_id: str) -> str:
        return self.names.get(peer_id, peer_id[:12])

    def ensure_thumbnail(self, link: Link, record: ImageRecord | None, image_id: str) -> None:
        """Make sure the peer has (or is about to get) the thumbnail before any original bytes."""
        sched = link.scheduler
        if sched.thumbnail_known(image_id) or sched.thumbnail_queued(image_id):
            return
        if record is None:
            # We hold bytes without a catalog row (a held original): the peer named the
            # picture itself, so it knows it; we have no thumbnail to send first.
            sched.mark_thumbnail_known(image_id)
        elif record.origin == link.peer_id or link.has_seen(record.origin, record.seq):
            sched.mark_thumbnail_known(image_id)
        else:
            sched.queue_thumbnail(image_id, record.capture_time)

    def expect(self, link: Link, expected: Expected) -> None:
        key = (expected.image_id, expected.purpose)
        link.expected[key] = expected
        link.streams.pop(key, None)
        link.cancelled.discard(key)

    def cancel(self, link: Link, image_id: str, purpose: Purpose) -> Expected | None:
        """Forget a stream we asked for; chunks already on their way are then ignored."""
        key = (image_id, purpose)
        link.streams.pop(key, None)
        expected = link.expected.pop(key, None)
        if expected is not None:
            link.cancelled.add(key)
        return expected

    # --- connection lifecycle ---------------------------------------------------------

    def connected(self, peer_id: str, now: float, *, key_recipient: bytes | None = None) -> None:
        """The runtime authenticated ``peer_id``; Hello and Catalog are queued to it.

        ``key_recipient``: the peer's X25519 key, when each of our pictures' keys is to go
        to it wrapped, with the thumbnail (the runtime decides: a desk pinned as one).
        """
        if peer_id in self.links:
            self.disconnected(peer_id, now, "replaced by a new connection")
        busy = self._busy
        sched = Scheduler(
            chunk_size=self.config.chunk_size,
            # PLANTED BUG "chunk-before-thumbnail" is switched on here (see Scheduler.pop).
            enforce_thumbnail_first=not self.config.bug("chunk-before-thumbnail"),
            on_work=lambda: busy.add(peer_id),
        )
        link = Link(
            peer_id=peer_id,
            conn=Connection(self.device_id, expected_peer=peer_id),
            scheduler=sched,
            connected_at=now,
            last_heard=now,
            key_recipient=key_recipient,
        )
        self.links[peer_id] = link
        self._deadline_stale = True
        usage = self.store.usage()
        sched.send_control(
            Hello(
                device_id=self.device_id,
                name=self.config.name,
                role=self.config.role,
                version=PROTOCOL_VERSION,
                capabilities=(),
                capacity=usage.capacity,
                free=usage.free,
            )
        )
        sched.send_control(Catalog(seen=dict(self.store.seen())))

    def disconnected(self, peer_id: str, now: float, reason: str) -> None:
        """The link is gone; what was in flight is put back to be asked for again."""
        link = self.links.pop(peer_id, None)
        if link is None:
            return
        for (image_id, purpose), expected in link.expected.items():
            if purpose in (Purpose.SYNC, Purpose.SMALLER):
                if expected.urgent:
                    self._wanted.setdefault(image_id, (None, None))
                else:
                    record = self.store.image(image_id)
                    if record is not None:
                        self._queue_pull(image_id, record.origin)
            elif purpose is Purpose.READOUT:
                self.readouts.failed(
                    image_id, f"{self.name_of(peer_id)} went away during the read-out: {reason}"
                )
        self.readouts.link_gone(link, reason)
        self.dispersal.link_gone(link)
        self.emit(ev.PeerGone(peer_id, reason))
        self.pump_requests(now)

    def receive_data(self, peer_id: str, data: bytes, now: float) -> None:
        """Feed bytes from the peer; RemoteProtocolError means: close this link."""
        link = self.links.get(peer_id)
        if link is None:
            raise LocalProtocolError(f"receive_data for {peer_id[:12]}, which is not connected")
        link.last_heard = now
        if link.timed_out:
            link.timed_out = False
            self._deadline_stale = True  # its silence is watched again
        link.bytes_in += len(data)
        try:
            link.conn.receive_data(data)
            while (msg := link.conn.next_event()) is not None:
                self._handle(link, msg, now)
                if isinstance(msg, _ASKS) and link.scheduler.waiting() > self.config.max_peer_backlog:
                    raise RemoteProtocolError(
                        f"{link.scheduler.waiting()} answers wait for a peer that keeps asking "
                        "without reading them; it floods us",
                        code="too-many-requests",
                    )
        except RemoteProtocolError as exc:
            self.emit(ev.ProtocolViolation(peer_id, exc.code, str(exc)))
            # A runtime that flushes one more frame tells the peer why; then nothing more.
            link.closing = True
            self._busy.add(peer_id)
            link.last_word = Error(exc.code[:64], str(exc)[: Limits.MAX_TEXT])
            raise

    def next_frame(self, peer_id: str, now: float) -> bytes | None:
        """The next frame for ``peer_id``, or None when there is nothing to send now."""
        link = self.links.get(peer_id)
        if link is None:
            return None
        if link.closing:
            last, link.last_word = link.last_word, None
            return link.conn.send(last) if last is not None else None
        if not link.scheduler.has_work():
            return None  # the common case when a runtime polls an idle link
        while (item := link.scheduler.pop()) is not None:
            msg = serving.render(self, link, item, now)
            if msg is None:
                continue
            data = link.conn.send(msg)
            link.bytes_out += len(data)
            return data
        return None

    # --- local inputs -----------------------------------------------------------------

    def captured(self, image_id: str, now: float) -> None:
        """The card holds a new LOCAL picture: its thumbnail jumps ahead on every link."""
        record = self.store.image(image_id)
        if record is None:
            raise LocalProtocolError(f"captured({image_id[:12]}): the card has no such picture")
        for link in self.ready_links():
            if not link.has_seen(record.origin, record.seq):
                link.scheduler.queue_thumbnail(image_id, record.capture_time)
        if record.where is Where.LOCAL:
            self.dispersal.note_local(record)
        self.dispersal.maybe_disperse(now)

    def request(
        self, image_id: str, now: float, *, max_side: int | None = None, quality: int | None = None
    ) -> None:
        """The user wants this original (or a smaller copy) first (FIG. 10, S63-S65)."""
        record = self.store.image(image_id)
        smaller = max_side is not None or quality is not None
        if record is not None and record.where is Where.LOCAL and not smaller:
            return  # already here
        if (
            record is not None
            and record.origin == self.device_id
            and record.where is Where.DISPERSED
            and not smaller
        ):
            self.emit(ev.Decided(image_id, Decision.REQUESTED))
            self.readouts.collect([image_id], now)  # ours, wanted here: bring it home
            return
        self.store.set_decision(
            image_id, Decision.REQUESTED, now, max_side=max_side, quality=quality
        )
        self.emit(ev.Decided(image_id, Decision.REQUESTED))
        self._pulls.pop(image_id, None)
        self._wanted[image_id] = (max_side, quality)
        self.pump_requests(now)
        if image_id in self._wanted:
            self.emit(ev.RequestPending(image_id, "no connected peer has this original yet"))

    def refuse(self, image_id: str, now: float) -> None:
        """The user does not need this original ("not necessary", FIG. 13B)."""
        self.store.set_decision(image_id, Decision.REFUSED, now)
        self.emit(ev.Decided(image_id, Decision.REFUSED))
        self._pulls.pop(image_id, None)
        self._wanted.pop(image_id, None)
        record = self.store.image(image_id)
        if record is not None and record.where is Where.ABSENT:
            self.store.discard_partial(image_id, Incoming.ORIGINAL)  # from an earlier link too
        for link in self.ready_links():
            asked = False
            for purpose in (Purpose.SYNC, Purpose.SMALLER):
                if self.cancel(link, image_id, purpose) is not None:
                    asked = True
                    self.store.discard_partial(image_id, _KIND[purpose])
            link.background.discard(image_id)
            if asked or link.peer_id in self._offers.get(image_id, ()):
                link.scheduler.send_control(RefuseOriginal(image_id))
        self.pump_requests(now)

    def read_out(self, image_id: str, now: float, *, wait_s: float | None = None) -> None:
        """Hand out the original as ReadOutChunk... ReadOutDone events, wherever it is.

        Without ``wait_s`` a read-out that cannot go now fails at once, naming why (e.g. the
        holder that is away).  With it, it is ReadOutPending and retried (when a peer comes
        back, and every few seconds) until ``now + wait_s``, then ReadOutFailed.
        """
        self.readouts.read_out(image_id, now, wait_s=wait_s)

    def collect(self, image_ids: Iterable[str], now: float) -> None:
        """Bring dispersed originals home when the card has room; holders then release them.

        A collection is durable (our user's decision): it resumes after a restart, and when
        its holder is away it is CollectPending and goes when a holder returns.
        """
        self.readouts.collect(image_ids, now)

    def repair(self, holder_id: str, now: float) -> None:
        """``holder_id`` is gone for good: copy what it held for us to new holders.

        Each of our dispersed originals it held is copied from another holder that
        STORED it (so ``replicas`` >= 2 loses nothing) to a new one (Repaired); one it
        was the only holder of stays listed, with RepairFailed saying so.
        """
        self.dispersal.repair(holder_id, now)

    def tick(self, now: float) -> None:
        """Timers: keepalive pings, silent peers, dispersal retries, pulls."""
        keepalive = self.config.keepalive_s
        for link in list(self.links.values()):
            # Only a link quiet for a whole period is pinged: any frame heard proves it alive.
            if link.ready and now >= link.ping_due(keepalive):
                link.ping_nonce += 1
                link.scheduler.send_control(Ping(link.ping_nonce))
                link.pinged_at = now
            silent = now - link.last_heard
            if silent > self.config.peer_timeout_s and not link.timed_out:
                link.timed_out = True
                self.emit(ev.PeerTimedOut(link.peer_id, silent))
        self.dispersal.maybe_disperse(now)
        self.readouts.tick(now)
        self.pump_requests(now)
        self._deadline_stale = True

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (None: nothing scheduled).

        It may be early, never late: an early ``tick`` does nothing.  The answer is
        kept until something could make it earlier (a runtime asks after every call).
        """
        if self._deadline_stale:
            self._deadline = self._compute_deadline()
            self._deadline_stale = False
        return self._deadline

    def deadline_changed(self) -> None:
        """Something may now want an earlier tick: compute next_deadline afresh."""
        self._deadline_stale = True

    def _compute_deadline(self) -> float | None:
        best: float | None = None
        timeout = self.config.peer_timeout_s
        keepalive = self.config.keepalive_s
        for link in self.links.values():
            # One shared deadline, no timer per link.  last_heard only grows, so a kept
            # answer stays early, never late.
            if link.ready and (best is None or link.ping_due(keepalive) < best):
                best = link.ping_due(keepalive)
            if not link.timed_out and (best is None or link.last_heard + timeout < best):
                best = link.last_heard + timeout
        for retry in (self.dispersal.next_retry(), self.readouts.next_deadline()):
            if retry is not None and (best is None or retry < best):
                best = retry
        return best

    def sending_peers(self) -> list[str]:
        """Peers ``next_frame`` may have something for now, sorted (poll only these).

        Every peer with queued work is in it; a peer whose work waits (a relay for
        the holder's bytes) may be too, and then ``next_frame`` says None.
        """
        busy = self._busy
        for peer_id in list(busy):
            link = self.links.get(peer_id)
            if link is None or not (link.closing or link.scheduler.has_work()):
                busy.discard(peer_id)
        return sorted(busy)

    def may_send(self, peer_id: str) -> bool:
        """True if ``next_frame(peer_id)`` may have a frame now (O(1); may be optimistic)."""
        link = self.links.get(peer_id)
        return link is not None and (link.closing or link.scheduler.has_work())

    def wake(self, peer_id: str) -> None:
        """Work for ``peer_id`` may have become sendable without being queued (a relay grew)."""
        if peer_id in self.links:
            self._busy.add(peer_id)

    def events(self) -> list[ev.NodeEvent]:
        out, self._events = self._events, []
        return out

    def peers(self) -> Mapping[str, PeerView]:
        return {peer_id: view_of(link) for peer_id, link in self.links.items()}

    def status(self) -> dict[str, int]:
        """Counts for a status view (walks the catalog: not for hot paths)."""
        counts = {f"images_{w.value}": 0 for w in Where}
        for record in self.store.images():
            counts[f"images_{record.where.value}"] += 1
        held = list(self.store.held_originals())
        usage = self.store.usage()
        counts.update(
            held=len(held),
            held_bytes=sum(h.size for h in held),
            dispersion_entries=sum(1 for _ in self.store.dispersion_list()),
            peers=len(self.links),
            peers_ready=len(self.ready_links()),
            capacity=usage.capacity,
            used=usage.used,
            reserved=usage.reserved,
            free=usage.free,
            pulls_waiting=len(self._pulls),
            requests_waiting=len(self._wanted),
        )
        return counts

    # --- incoming messages ------------------------------------------------------------

    def _handle(self, link: Link, msg: Message, now: float) -> None:
        if isinstance(msg, Chunk):
            transfers.on_chunk(self, link, msg, now)
        elif isinstance(msg, ThumbnailOffer):
            self._on_thumbnail(link, msg, now)
        elif isinstance(msg, OriginalHeader):
            transfers.on_header(self, link, msg)
        elif isinstance(msg, OriginalComplete):
            transfers.on_complete(self, link, msg, now)
        elif isinstance(msg, Hello):
            self._on_hello(link, msg)
        elif isinstance(msg, Catalog):
            self._on_catalog(link, msg, now)
        elif isinstance(msg, RequestOriginal):
            serving.on_request(self, link, msg, now)
        elif isinstance(msg, RefuseOriginal):
            serving.on_refuse(self, link, msg)
        elif isinstance(msg, TransferFailed):
            self._on_failed(link, msg, now)
        elif isinstance(msg, DisperseRequest):
            self.dispersal.on_request(link, msg, now)
        elif isinstance(msg, DisperseAccept):
            self.dispersal.on_accept(link, msg, now)
        elif isinstance(msg, DisperseReject):
            self.dispersal.on_reject(link, msg, now)
        elif isinstance(msg, Stored):
            self.dispersal.on_stored(link, msg, now)
        elif isinstance(msg, Release):
            self.dispersal.on_release(link, msg)
        elif isinstance(msg, Collect):
            self.readouts.on_collect(link, msg)
        elif isinstance(msg, ReadOut):
            self.readouts.on_readout(link, msg, now)
        elif isinstance(msg, Ping):
            link.scheduler.send_control(Pong(msg.nonce))
        elif isinstance(msg, Goodbye | Error):
            link.closing = True  # the runtime closes the link; we send nothing more
        elif isinstance(msg, Pong):
            pass  # liveness is any byte heard
        else:  # pragma: no cover - the codec only yields the types above
            raise RemoteProtocolError(f"unexpected message {msg.TAG!r}", code="unexpected")

    def _on_hello(self, link: Link, msg: Hello) -> None:
        if msg.device_id != link.peer_id:
            raise RemoteProtocolError(
                f"the peer authenticated as {link.peer_id[:12]} but says it is "
                f"{msg.device_id[:12]}",
                code="identity",
            )
        link.hello = msg
        link.free = msg.free
        self.names[link.peer_id] = msg.name

    def _on_catalog(self, link: Link, msg: Catalog, now: float) -> None:
        """The catalog delta (FIG. 21 relays every origin): only thumbnails the peer lacks."""
        link.catalog = dict(msg.seen)
        link.ready = True
        self._deadline_stale = True  # it now pings
        assert link.hello is not None  # the connection table puts Hello before Catalog
        self.emit(ev.PeerReady(link.peer_id, link.hello))
        self._failed_sources = {f for f in self._failed_sources if f[1] != link.peer_id}
        # The whole catalog is walked only to pull: seen() names every origin we know.
        if self.config.policy_for(link.peer_id) is Policy.ALL:
            for record in self.store.images():
                if record.where is Where.ABSENT:
                    self._want_in_background(record.image_id)  # also after our own restart
        for origin in sorted(self.store.seen()):
            for record in self.store.images_after(origin, msg.seen.get(origin, 0)):
                if self.store.transfer_state(link.peer_id, record.image_id) in _PEER_HOLDS:
                    link.scheduler.mark_thumbnail_known(record.image_id)
                else:
                    link.scheduler.queue_thumbnail(record.image_id, record.capture_time)
        self.dispersal.link_ready(link, now)
        self.readouts.link_ready(link, now)
        self.pump_requests(now)

    def _on_thumbnail(self, link: Link, msg: ThumbnailOffer, now: float) -> None:
        link.scheduler.mark_thumbnail_known(msg.image_id)
        if msg.origin == self.device_id and self.store.image(msg.image_id) is None:
            raise RemoteProtocolError(
                f"thumbnail {msg.image_id[:12]} claims to be ours, but this card never had it",
                code="catalog",
            )
        if msg.has_original:
            self._offers.setdefault(msg.image_id, set()).add(link.peer_id)
            if msg.image_id in self._pulls:
                self._pull_queues.setdefault(link.peer_id, {})[msg.image_id] = None
        record = ImageRecord(
            image_id=msg.image_id,
            origin=msg.origin,
            seq=msg.seq,
            name=msg.name,
            size=msg.size,
            mime=msg.mime,
            capture_time=msg.capture_time,
            metadata=dict(msg.metadata),
            thumbnail=bytes(msg.thumbnail),
            where=Where.ABSENT,
            thumbnail_at=now,
            wrapped_key=msg.wrapped_key,
        )
        try:
            new = self.store.add_thumbnail(record, now)
        except StoreError as exc:
            raise RemoteProtocolError(
                f"thumbnail {msg.image_id[:12]} contradicts our catalog: {exc}", code="catalog"
            ) from exc
        if new:
            self.emit(ev.ThumbnailArrived(link.peer_id, msg.image_id))
            # FIG. 21: a device relays what it learns to its other peers.
            for other in self.ready_links():
                if (
                    other is not link
                    and other.peer_id != msg.origin
                    and not other.scheduler.thumbnail_known(msg.image_id)
                    and not other.has_seen(msg.origin, msg.seq)
                ):
                    other.scheduler.queue_thumbnail(msg.image_id, msg.capture_time)
        self._want_in_background(msg.image_id)
        self.pump_requests(now)

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
            and not self._refused(image_id)
        ):
            self._queue_pull(image_id, record.origin)

    def _queue_pull(self, image_id: str, origin: str) -> None:
        self._pulls[image_id] = None
        for peer_id in (*self._offers.get(image_id, ()), origin):
            self._pull_queues.setdefault(peer_id, {})[image_id] = None

    def _refused(self, image_id: str) -> bool:
        decision = self.store.decision(image_id)
        return decision is not None and decision.decision is Decision.REFUSED

    # --- what we pull -------------------------------------------------------------------

    def _source_for(self, image_id: str, record: ImageRecord, *, urgent: bool) -> Link | None:
        """A ready peer to ask for an original: its offerers; for the user, also its origin."""
        peers = set(self._offers.get(image_id, ()))
        if urgent:
            peers.add(record.origin)
        for peer_id in sorted(peers, key=lambda p: (p != record.origin, p)):
            link = self.ready_link(peer_id)
            if link is not None:
                return link
        return None

    def pump_requests(self, now: float) -> None:
        """Send the user's waiting requests, then background pulls while there is room."""
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
        # Only peers with a pull queue are looked at: the queues are few, the calls many.
        links, policy_for = self.links, self.config.policy_for
        open_peers = [
            peer_id
            for peer_id in queues
            if (link := links.get(peer_id)) is not None
            and link.ready
            and len(link.background) < most
            and policy_for(peer_id) is Policy.ALL
        ]
        if not open_peers:
            return  # every peer we pull from is busy or has nothing for us: nothing to decide
        left: int | None = None  # room below the mark, computed once a pull has a source
        for peer_id in sorted(open_peers):
            link = self.links[peer_id]
            queue = queues[peer_id]
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
                link.background.add(image_id)
                self._send_request(link, record, urgent=False)
                if len(link.background) >= most:
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
        for link in self.links.values():
            for image_id in link.background:
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
                current.urgent = True
                link.background.discard(record.image_id)
                stream = link.streams.get(key)
                offset = stream.next_offset if stream is not None else current.offset
                link.scheduler.send_control(RequestOriginal(record.image_id, True, offset))
            return
        if smaller:
            self.store.discard_partial(record.image_id, Incoming.SMALLER)  # other sizes differ
            offset = 0
        else:
            offset = self.store.partial_offset(record.image_id, Incoming.ORIGINAL)
        kind = Incoming.SMALLER if smaller else Incoming.ORIGINAL
        self.expect(
            link,
            Expected(
                record.image_id,
                purpose,
                kind,
                offset,
                size=None if smaller else record.size,
                urgent=urgent,
            ),
        )
        link.scheduler.send_control(
            RequestOriginal(record.image_id, urgent, offset, max_side=max_side, quality=quality)
        )

    def _on_failed(self, link: Link, msg: TransferFailed, now: float) -> None:
        expected = self.cancel(link, msg.image_id, msg.purpose)
        if expected is None:
            return  # nothing we still wait for: a late answer
        link.cancelled.discard((msg.image_id, msg.purpose))
        link.background.discard(msg.image_id)
        if msg.purpose is Purpose.SYNC and not expected.urgent:
            self._failed_sources.add((msg.image_id, link.peer_id))
            self._want_in_background(msg.image_id)  # another peer may have it
        self.emit(ev.TransferRefused(link.peer_id, msg.image_id, msg.purpose, msg.reason))
        if msg.purpose is Purpose.READOUT:
            self.readouts.failed(msg.image_id, f"{self.name_of(link.peer_id)}: {msg.reason}")
        elif msg.purpose is Purpose.COLLECT:
            self.readouts.collect_failed(link, msg.image_id, msg.reason)
        self.pump_requests(now)

