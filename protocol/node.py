"""One device's decision logic, sans-IO: what to send each peer, what to store, when to disperse.

The runtime (mesh/) or the simulator (sim/) calls a ``Node`` one call at a
time, with ``now`` as an argument, and pulls outgoing frames per peer with
``next_frame``.  Notifications come out of ``events()``.  See
docs/ARCHITECTURE.md ("The node") and DESIGN.md ("One picture's journey").

The node holds the links and routes: each message a peer sends goes to the
sub-machine that owns it (``_routing``), and each notice one machine tells
another to the one that hears it (``_routes``); see docs/ARCHITECTURE.md
("Inside the node").
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from protocol import effects as fx
from protocol import events as ev
from protocol import outcomes
from protocol.collections import Collections
from protocol.config import NodeConfig, Policy
from protocol.connection import Connection
from protocol.effects import Effect, Emit, Notice, Ready, Rearm, Tell, Wake
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.inbound import Inbound
from protocol.keepalive import Keepalive
from protocol.link_effects import carry_out
from protocol.marks import SharedMarks
from protocol.messages import (
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
    Strip,
    ThumbnailOffer,
    TransferFailed,
    WantStrips,
)
from protocol.parts import Parts
from protocol.peer import Link, PeerView, view_of
from protocol.pulls import Pulls
from protocol.scheduler import SendStrip
from protocol.status import status_counts
from protocol.store import Decision, Store, Where
from protocol.strips import Strips
from protocol.sync import Sync

__all__ = ["Node", "NodeConfig", "PeerView", "Policy"]


# What a peer asks us for; each queues an answer (the flood check counts after these).
_ASKS = (RequestOriginal, Collect, ReadOut, DisperseRequest, Ping)


class Node:
    """A device's protocol brain; single-threaded, never reads a clock (``now`` comes in)."""

    def __init__(
        self, store: Store, config: NodeConfig, rng: random.Random, *, parts: Parts | None = None
    ) -> None:
        self.store = store
        self._config = config
        self.rng = rng
        self.device_id = store.device_id
        self.parts = Parts() if parts is None else parts  # a test may plant one (sim/planted.py)
        self.links: dict[str, Link] = {}
        self._events: list[ev.NodeEvent] = []
        self.pulls = Pulls(store, config, self.links)
        self.strips = Strips(store, config, self.links)
        self.marks = SharedMarks(store, config, self.links)
        capabilities = self.strips.capabilities + self.marks.capabilities
        self.sync = Sync(store, config, self.links, capabilities=capabilities)
        self.keepalive = Keepalive(config, self.links)
        self.inbound = Inbound(store, config, self.links)
        self.serving = self.parts.serving(store, config, self.links)
        self.dispersal = self.parts.dispersal(store, config, self.links)
        self.holding = self.parts.holding(store, config, self.links)
        self.collections = Collections(store, config, self.links, self.sync.names)
        self.readouts = self.parts.readouts(store, config, self.links, self.sync.names,
                                            self.pulls.offerers)
        # Who hears each notice one machine tells another (protocol.effects.Tell).
        self._routes: dict[type[Notice], Callable[[Any], list[Effect] | None]] = {
            fx.Offered: lambda n: self.pulls.offered(n.peer_id, n.image_id),
            fx.LinkReady: lambda n: self.pulls.link_ready(n.peer_id),
            fx.Selected: lambda n: self.pulls.selected(n.image_id),
            fx.ThumbnailSeen: lambda n: self.pulls.thumbnail_seen(n.image_id, n.now),
            fx.PullOver: lambda n: self.pulls.finished(n.peer_id, n.image_id),
            fx.PullsMayGo: lambda n: self.pulls.pump(n.now),
            fx.OursAgain: lambda n: self.dispersal.note_local(n.record),
            fx.HeldIn: lambda n: self.holding.held_complete(n.peer_id, n.image_id, n.digest),
            fx.ReadOutIn: lambda n: self.readouts.done(n.image_id, n.digest),
            fx.ReadOutLost: lambda n: self.readouts.failed(n.image_id, n.reason),
            fx.ReadOutServed: lambda n: self.readouts.served(n.image_id, home=n.home),
            fx.CollectForReader: lambda n: self.collections.read_for_user(n.image_id),
            fx.CollectedBytes: self._via(self.collections.take, self.collections.stream_chunk),
            fx.CollectionIn: self._via(self.collections.take, self.collections.stream_complete),
            fx.CollectionLost: lambda n: self.collections.collect_failed(n.image_id, n.reason),
            fx.Relay: self._via(self.collections.take, self.collections.relay_for),
            fx.RelayRefused: lambda n: self.collections.drop_relay(n.peer_id, n.image_id, n.purpose),
            fx.ServeFromCard: self._via(self.serving.take, self.serving.serve_from_card),
            fx.ReleaseSent: lambda n: self.dispersal.release_sent(n.peer_id, n.image_id),
        }
        self._deadline: float | None = None
        self._deadline_stale = True
        self._busy: set[str] = set()  # peers that may have frames to send (see sending_peers)
        self._background_held = False  # see hold_background
        self._handlers = self._routing()
        self._resume()

    @property
    def config(self) -> NodeConfig:
        return self._config

    @config.setter
    def config(self, config: NodeConfig) -> None:
        """A config changed at run time (the runtime's set_high_water) reaches every machine."""
        self._config = self.pulls.config = self.strips.config = self.sync.config = config
        self.keepalive.config = self.inbound.config = self.serving.config = config
        self.dispersal.config = self.holding.config = self.collections.config = config
        self.readouts.config = self.marks.config = config

    def _resume(self) -> None:
        """After a (re)start: our user's requests and collections outlive the process."""
        for decision in self.store.decisions():
            if decision.decision is not Decision.REQUESTED:
                continue
            record = self.store.image(decision.image_id)
            if record is None:
                continue
            if record.origin == self.device_id and record.where is Where.DISPERSED:
                self.collections.resume_home(record.image_id)
            elif (record.where is Where.ABSENT
                  and decision.max_side is None and decision.quality is None):
                self.pulls.resume_wanted(record.image_id)
        self.dispersal.resume()

    def emit(self, event: ev.NodeEvent) -> None:
        self._events.append(event)

    def apply(self, effects: list[Effect]) -> None:
        """Carry out a machine's effects (protocol.effects), in the order it asked for them."""
        for effect in effects:
            if isinstance(effect, Emit):
                self._events.append(effect.event)
                continue
            if isinstance(effect, Tell):
                self.apply(self._routes[type(effect.notice)](effect.notice) or [])
                continue
            if isinstance(effect, Rearm):
                self._deadline_stale = True
                continue
            if isinstance(effect, Wake):
                self.wake(effect.peer_id)
                continue
            if isinstance(effect, Ready):
                self._deadline_stale = True  # it now pings
            carry_out(self.links[effect.peer_id], effect)

    @property
    def names(self) -> Mapping[str, str]:
        """Device id -> name, from every Hello seen."""
        return self.sync.names

    def name_of(self, peer_id: str) -> str:
        return self.sync.name_of(peer_id)

    # --- connection lifecycle ---------------------------------------------------------

    def connected(self, peer_id: str, now: float, *, key_recipient: bytes | None = None) -> None:
        """The runtime authenticated ``peer_id``; Hello and Catalog are queued to it.

        ``key_recipient``: the peer's X25519 key, when each of our pictures' keys is to go
        to it wrapped, with the thumbnail (the runtime decides: a desk pinned as one).
        """
        if peer_id in self.links:
            self.disconnected(peer_id, now, "replaced by a new connection")
        busy = self._busy
        sched = self.parts.scheduler(chunk_size=self.config.chunk_size,
                                     on_work=lambda: busy.add(peer_id))
        link = Link(peer_id=peer_id, conn=Connection(self.device_id, expected_peer=peer_id),
                    scheduler=sched, connected_at=now, key_recipient=key_recipient)
        self.links[peer_id] = link
        sched.background_held = self._background_held
        self.keepalive.connected(peer_id, now)
        self._deadline_stale = True
        self.apply(self.sync.connected(peer_id))

    def disconnected(self, peer_id: str, now: float, reason: str) -> None:
        """The link is gone; what was in flight is put back to be asked for again."""
        link = self.links.pop(peer_id, None)
        if link is None:
            return
        for (image_id, purpose), expected in link.expected.items():
            if purpose in (Purpose.SYNC, Purpose.SMALLER):
                self.pulls.stream_lost(image_id, expected)
            elif purpose is Purpose.READOUT:
                self.apply(self.readouts.failed(
                    image_id, f"{self.name_of(peer_id)} went away during the read-out: {reason}"
                ))
        self.pulls.link_gone(peer_id)
        self.keepalive.gone(peer_id)
        self.apply(self.collections.link_gone(peer_id, reason))
        self.dispersal.link_gone(peer_id)
        self.emit(ev.PeerGone(peer_id, reason))
        self.pump_requests(now)

    def receive_data(self, peer_id: str, data: bytes, now: float) -> None:
        """Feed bytes from the peer; RemoteProtocolError means: close this link."""
        link = self.links.get(peer_id)
        if link is None:
            raise LocalProtocolError(f"receive_data for {peer_id[:12]}, which is not connected")
        if self.keepalive.heard(peer_id, now):
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
            msg: Message | None
            if isinstance(item, SendStrip):
                msg = self.strips.render(item.image_id)
            else:
                msg = self.serving.render(link, item, now)
                self.apply(self.serving.take())
            if msg is None:
                continue
            if isinstance(msg, ThumbnailOffer):  # a movie's strip goes right behind its offer
                self.apply(self.strips.offer_sent(link, msg))
            data = link.conn.send(msg)
            link.bytes_out += len(data)
            return data
        return None

    # --- local inputs -----------------------------------------------------------------

    def captured(self, image_id: str, now: float) -> outcomes.Announced:
        """The card holds a new LOCAL picture: its thumbnail jumps ahead on every link."""
        record = self.store.image(image_id)
        if record is None:
            raise LocalProtocolError(f"captured({image_id[:12]}): the card has no such picture")
        self.apply(effects := self.sync.captured(record))
        if record.where is Where.LOCAL:
            self.dispersal.note_local(record)
        self.apply(self.dispersal.maybe_disperse(now))
        return outcomes.announced(image_id, effects)

    def hold_background(self, held: bool) -> None:
        """Hold back (or let go) the originals peers pull only by policy 'all' (the background
        lane) while a camera uploads into this node (mesh/ftp.py): a peer's mirror must not
        take the processor the upload needs; thumbnails, requests and dispersal go on."""
        self._background_held = held
        for peer_id, link in self.links.items():
            link.scheduler.background_held = held
            if not held and link.scheduler.has_work():
                self._busy.add(peer_id)

    def request(
        self, image_id: str, now: float, *, max_side: int | None = None, quality: int | None = None
    ) -> outcomes.RequestOutcome:
        """The user wants this original (or a smaller copy) first (FIG. 10, S63-S65)."""
        record = self.store.image(image_id)
        smaller = max_side is not None or quality is not None
        if record is not None and record.where is Where.LOCAL and not smaller:
            return outcomes.AlreadyHere(image_id)
        if (record is not None and record.origin == self.device_id
                and record.where is Where.DISPERSED and not smaller):
            self.emit(ev.Decided(image_id, Decision.REQUESTED))
            return self.collect([image_id], now)[0]  # ours, wanted here: bring it home
        mark = len(self._events)
        self.apply(effects := self.pulls.request(image_id, now, max_side=max_side, quality=quality))
        return outcomes.requested(image_id, effects, self._events[mark:], self.links)

    def refuse(self, image_id: str, now: float) -> outcomes.NotNeeded:
        """The user does not need this original ("not necessary", FIG. 13B)."""
        self.apply(effects := self.pulls.refuse(image_id, now))
        return outcomes.not_needed(image_id, effects)

    def marked(self, image_id: str, now: float) -> None:
        """Our user changed this picture's marks (the card holds them): they go to every peer."""
        self.apply(self.marks.marked(image_id))

    def read_out(self, image_id: str, now: float, *, wait_s: float | None = None) -> outcomes.ReadOutOutcome:
        """Hand out the original as ReadOutChunk... ReadOutDone events, wherever it is.

        Without ``wait_s`` a read-out that cannot go now fails at once, naming why (e.g. the
        holder that is away).  With it, it is ReadOutPending and retried (when a peer comes
        back, and every few seconds) until ``now + wait_s``, then ReadOutFailed.
        """
        mark = len(self._events)
        self.apply(self.readouts.read_out(image_id, now, wait_s=wait_s))
        return outcomes.read_out(image_id, self._events[mark:])

    def collect(self, image_ids: Iterable[str], now: float) -> list[outcomes.CollectOutcome]:
        """Bring dispersed originals home when the card has room; holders then release them.

        A collection is durable (our user's decision): it resumes after a restart, and when
        its holder is away it is CollectPending and goes when a holder returns.
        """
        ids, mark = list(image_ids), len(self._events)
        self.apply(self.collections.collect(ids, now))
        return outcomes.collected(ids, self._events[mark:], self.store)

    def repair(self, holder_id: str, now: float) -> outcomes.Repairing:
        """``holder_id`` is gone for good: copy what it held for us to new holders.

        Each of our dispersed originals it held is copied from another holder that
        STORED it (so ``replicas`` >= 2 loses nothing) to a new one (Repaired); one it
        was the only holder of stays listed, with RepairFailed saying so (``Repairing``).
        """
        mark, listed = len(self._events), [
            e.image_id for e in self.store.dispersion_list() if e.holder == holder_id]
        self.apply(self.dispersal.repair(holder_id, self.name_of(holder_id), now))
        return outcomes.repairing(holder_id, listed, self._events[mark:], self.store)

    def tick(self, now: float) -> None:
        """Timers: keepalive pings, silent peers, dispersal retries, pulls."""
        self.apply(self.keepalive.tick(now))
        self.apply(self.dispersal.maybe_disperse(now))
        self.apply(self.readouts.tick(now))
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

    def _compute_deadline(self) -> float | None:
        due = (self.keepalive.next_deadline(), self.dispersal.next_retry(),
               self.readouts.next_deadline())
        return min((d for d in due if d is not None), default=None)

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
        return {peer: view_of(link, self.keepalive.last_heard(peer), free=self.dispersal.room_of(peer))
                for peer, link in self.links.items()}

    def status(self) -> dict[str, int]:
        """Counts for a status view (walks the catalog: not for hot paths)."""
        return status_counts(self.store, self.links, self.pulls.waiting())

    # --- incoming messages ------------------------------------------------------------

    def _handle(self, link: Link, msg: Message, now: float) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:  # pragma: no cover - the codec only yields the types routed
            raise RemoteProtocolError(f"unexpected message {msg.TAG!r}", code="unexpected")
        handler(link, msg, now)

    def _routing(self) -> dict[type[Message], Callable[[Link, Any, float], None]]:
        """The routing table: each message a peer sends, and the machine that owns it."""
        return {
            Hello: lambda link, msg, now: self.apply(self.sync.on_hello(link, msg)),
            Catalog: self._on_catalog,
            ThumbnailOffer: self._via(self.sync.take, self.sync.on_thumbnail),
            Strip: lambda link, msg, now: self.apply(self.strips.on_strip(link, msg)),
            **self.marks.routes(self.apply),  # MarksDigest, Marked
            WantStrips: lambda link, msg, now: self.apply(self.strips.on_want_strips(link, msg)),
            RequestOriginal: self._via(self.serving.take, self.serving.on_request),
            RefuseOriginal: lambda link, msg, now: self.apply(self.serving.on_refuse(link, msg)),
            TransferFailed: self._on_failed,
            OriginalHeader: self._via(self.inbound.take, self.inbound.on_header),
            Chunk: self._via(self.inbound.take, self.inbound.on_chunk),
            OriginalComplete: self._via(self.inbound.take, self.inbound.on_complete),
            DisperseRequest: lambda link, msg, now: self.apply(self.holding.on_request(link.peer_id, msg)),
            DisperseAccept: lambda link, msg, now: self.apply(self.dispersal.on_accept(link.peer_id, msg, now)),
            DisperseReject: lambda link, msg, now: self.apply(self.dispersal.on_reject(link.peer_id, msg, now)),
            Stored: lambda link, msg, now: self.apply(self.dispersal.on_stored(link.peer_id, msg, now)),
            Release: lambda link, msg, now: self.apply(self.holding.on_release(link.peer_id, msg)),
            Collect: self._via(self.serving.take, self.serving.on_collect),
            ReadOut: self._via(self.serving.take, self.serving.on_readout),
            Ping: lambda link, msg, now: link.scheduler.send_control(Pong(msg.nonce)),
            Pong: lambda link, msg, now: None,  # liveness is any byte heard
            Goodbye: self._on_goodbye,
            Error: self._on_goodbye,
        }

    def _via(self, take: Callable[[], list[Effect]], handler: Callable[..., list[Effect]]
             ) -> Callable[..., None]:
        """``handler``'s effects applied; when it refuses a peer, those it asked for first."""
        def handle(*args: Any) -> None:
            try:
                effects = handler(*args)
            except RemoteProtocolError:
                self.apply(take())
                raise
            self.apply(effects)
        return handle

    def _on_goodbye(self, link: Link, msg: Goodbye | Error, now: float) -> None:
        link.closing = True  # the runtime closes the link; we send nothing more

    def _on_catalog(self, link: Link, msg: Catalog, now: float) -> None:
        self.apply(self.sync.on_catalog(link, msg))
        self.apply(self.marks.link_ready(link))
        self.apply(self.strips.link_ready(link))  # strips whose link broke after their offer
        self.apply(self.dispersal.link_ready(link.peer_id, now))
        self.apply(self.collections.link_ready(link, now))
        self.apply(self.readouts.link_ready(link, now))
        self.pump_requests(now)

    def pump_requests(self, now: float) -> None:
        """Send the user's waiting requests, then background pulls while there is room."""
        self.apply(self.pulls.pump(now))

    def _on_failed(self, link: Link, msg: TransferFailed, now: float) -> None:
        expected = link.cancel(msg.image_id, msg.purpose)
        if expected is None:
            return  # nothing we still wait for: a late answer
        link.cancelled.discard((msg.image_id, msg.purpose))
        self.pulls.failed(link.peer_id, msg.image_id, expected)
        self.emit(ev.TransferRefused(link.peer_id, msg.image_id, msg.purpose, msg.reason))
        if msg.purpose is Purpose.READOUT:
            self.apply(self.readouts.failed(
                msg.image_id, f"{self.name_of(link.peer_id)}: {msg.reason}"))
        elif msg.purpose is Purpose.COLLECT:
            self.apply(self.collections.collect_failed(msg.image_id, msg.reason))
        self.pump_requests(now)

