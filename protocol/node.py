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
from protocol import serving, transfers
from protocol.config import NodeConfig, Policy
from protocol.connection import Connection
from protocol.dispersal import Dispersal
from protocol.effects import Cancel, Effect, Emit, Expect, Send
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
from protocol.pulls import Pulls
from protocol.readout import ReadOuts
from protocol.scheduler import (
    Scheduler,
)
from protocol.store import (
    Decision,
    ImageRecord,
    Store,
    StoreError,
    TransferState,
    Where,
)

__all__ = ["Node", "NodeConfig", "PeerView", "Policy"]

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
        self.pulls = Pulls(store, config, self.links)
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
                self.pulls.resume_wanted(record.image_id)
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
        return self.pulls.offerers(image_id)

    def apply(self, effects: list[Effect]) -> None:
        """Carry out a machine's effects (protocol.effects), in the order it asked for them."""
        for effect in effects:
            if isinstance(effect, Emit):
                self._events.append(effect.event)
                continue
            link = self.links[effect.peer_id]
            if isinstance(effect, Send):
                link.scheduler.send_control(effect.message)
            elif isinstance(effect, Expect):
                self.expect(link, effect.expected)
            elif isinstance(effect, Cancel):
                self.cancel(link, effect.image_id, effect.purpose)
            else:
                link.expected[(effect.image_id, effect.purpose)].urgent = True

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
                self.pulls.stream_lost(image_id, expected)
            elif purpose is Purpose.READOUT:
                self.readouts.failed(
                    image_id, f"{self.name_of(peer_id)} went away during the read-out: {reason}"
                )
        self.pulls.link_gone(peer_id)
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
        self.apply(self.pulls.request(image_id, now, max_side=max_side, quality=quality))

    def refuse(self, image_id: str, now: float) -> None:
        """The user does not need this original ("not necessary", FIG. 13B)."""
        self.apply(self.pulls.refuse(image_id, now))

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
        pulls_waiting, requests_waiting = self.pulls.waiting()
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
            pulls_waiting=pulls_waiting,
            requests_waiting=requests_waiting,
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
        self.pulls.link_ready(link)
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
            self.pulls.offered(link.peer_id, msg.image_id)
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
        self.apply(self.pulls.thumbnail_seen(msg.image_id, now))

    def pump_requests(self, now: float) -> None:
        """Send the user's waiting requests, then background pulls while there is room."""
        self.apply(self.pulls.pump(now))

    def _on_failed(self, link: Link, msg: TransferFailed, now: float) -> None:
        expected = self.cancel(link, msg.image_id, msg.purpose)
        if expected is None:
            return  # nothing we still wait for: a late answer
        link.cancelled.discard((msg.image_id, msg.purpose))
        self.pulls.failed(link.peer_id, msg.image_id, expected)
        self.emit(ev.TransferRefused(link.peer_id, msg.image_id, msg.purpose, msg.reason))
        if msg.purpose is Purpose.READOUT:
            self.readouts.failed(msg.image_id, f"{self.name_of(link.peer_id)}: {msg.reason}")
        elif msg.purpose is Purpose.COLLECT:
            self.readouts.collect_failed(link, msg.image_id, msg.reason)
        self.pump_requests(now)

