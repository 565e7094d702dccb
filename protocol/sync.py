"""The catalog exchange and thumbnails (FIG. 10, FIG. 21): Hello, Catalog, offers and their relay.

One link, for this machine:

  step        input                  what follows
  ----------  ---------------------  -------------------------------------------------------
  connected   the runtime's call     our Hello (who, room) and Catalog (what we have seen)
  greeted     the peer's Hello       its name and advertised room are known
  ready       the peer's Catalog     PeerReady; every thumbnail it lacks is queued (the
                                     delta: by origin, after what its catalog says it saw),
                                     those it proved it holds are marked known
  running     a ThumbnailOffer       stored (a new one: ThumbnailArrived, and relayed to
                                     every other ready peer that lacks it, FIG. 21)
  running     our capture            its thumbnail jumps ahead on every ready link

The order of Hello and Catalog is the connection's table (protocol/connection.py); this
machine keeps what they say.  It writes thumbnails to the card directly and returns
everything else as effects (protocol.effects), telling the pulls of offers, new
thumbnails and ready links through the node.
"""

from __future__ import annotations

from collections.abc import Mapping

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.effects import (
    Effect,
    Greeted,
    LinkReady,
    Offered,
    Outbox,
    QueueThumbnail,
    Ready,
    ThumbnailKnown,
    ThumbnailSeen,
)
from protocol.errors import RemoteProtocolError
from protocol.messages import PROTOCOL_VERSION, Catalog, Hello, ThumbnailOffer
from protocol.peer import Link
from protocol.store import ImageRecord, Store, StoreError, TransferState, Where

# What a peer did with a picture on an earlier link, proving it holds the thumbnail.  Not
# THUMBNAIL_SENT: that is set as the frame is rendered, and a link may die before it lands.
_PEER_HOLDS = frozenset(
    {TransferState.REQUESTED, TransferState.ORIGINAL_SENT, TransferState.REFUSED}
)


class Sync:
    """Hello, Catalog and thumbnails of one node (see the module's table)."""

    def __init__(
        self,
        store: Store,
        config: NodeConfig,
        links: Mapping[str, Link],
        *,
        capabilities: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.capabilities = capabilities  # what our Hello names (protocol/strips.py: "strip")
        self.config = config
        self.links = links  # read only: a link is written through effects
        self.device_id = store.device_id
        self.names: dict[str, str] = {}  # device id -> name, from every Hello seen
        self._out = Outbox()

    def name_of(self, peer_id: str) -> str:
        return self.names.get(peer_id, peer_id[:12])

    def take(self) -> list[Effect]:
        """Effects asked for before an input refused the peer (carried out all the same)."""
        return self._out.take()

    # --- inputs -----------------------------------------------------------------------------

    def connected(self, peer_id: str) -> list[Effect]:
        """Our Hello and Catalog, the first two messages on every link."""
        usage = self.store.usage()
        self._out.send(
            peer_id,
            Hello(
                device_id=self.device_id,
                name=self.config.name,
                role=self.config.role,
                version=PROTOCOL_VERSION,
                capabilities=self.capabilities,
                capacity=usage.capacity,
                free=usage.free,
            ),
        )
        self._out.send(peer_id, Catalog(seen=dict(self.store.seen())))
        return self._out.take()

    def on_hello(self, link: Link, msg: Hello) -> list[Effect]:
        if msg.device_id != link.peer_id:
            raise RemoteProtocolError(
                f"the peer authenticated as {link.peer_id[:12]} but says it is "
                f"{msg.device_id[:12]}",
                code="identity",
            )
        self.names[link.peer_id] = msg.name
        self._out.add(Greeted(link.peer_id, msg))
        return self._out.take()

    def on_catalog(self, link: Link, msg: Catalog) -> list[Effect]:
        """The catalog delta (FIG. 21 relays every origin): only thumbnails the peer lacks."""
        peer_id = link.peer_id
        self._out.add(Ready(peer_id, dict(msg.seen)))
        assert link.hello is not None  # the connection table puts Hello before Catalog
        self._out.emit(ev.PeerReady(peer_id, link.hello))
        self._out.tell(LinkReady(peer_id))
        for origin in sorted(self.store.seen()):
            for record in self.store.images_after(origin, msg.seen.get(origin, 0)):
                if self.store.transfer_state(peer_id, record.image_id) in _PEER_HOLDS:
                    self._out.add(ThumbnailKnown(peer_id, record.image_id))
                else:
                    self._out.add(QueueThumbnail(peer_id, record.image_id, record.capture_time))
        return self._out.take()

    def on_thumbnail(self, link: Link, msg: ThumbnailOffer, now: float) -> list[Effect]:
        """Store a peer's thumbnail; a new one is relayed to our other peers (FIG. 21).

        Refusing it (RemoteProtocolError) leaves effects already asked for in ``take``.
        """
        self._out.add(ThumbnailKnown(link.peer_id, msg.image_id))
        if msg.origin == self.device_id and self.store.image(msg.image_id) is None:
            raise RemoteProtocolError(
                f"thumbnail {msg.image_id[:12]} claims to be ours, but this card never had it",
                code="catalog",
            )
        if msg.has_original:
            self._out.tell(Offered(link.peer_id, msg.image_id))
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
            self._out.emit(ev.ThumbnailArrived(link.peer_id, msg.image_id))
            # FIG. 21: a device relays what it learns to its other peers.
            for other in self.links.values():
                if (
                    other.ready
                    and other is not link
                    and other.peer_id != msg.origin
                    and not other.scheduler.thumbnail_known(msg.image_id)
                    and not other.has_seen(msg.origin, msg.seq)
                ):
                    self._out.add(QueueThumbnail(other.peer_id, msg.image_id, msg.capture_time))
        self._out.tell(ThumbnailSeen(msg.image_id, now))
        return self._out.take()

    def captured(self, record: ImageRecord) -> list[Effect]:
        """A new picture of ours: its thumbnail goes to every ready peer that lacks it."""
        for link in self.links.values():
            if link.ready and not link.has_seen(record.origin, record.seq):
                self._out.add(QueueThumbnail(link.peer_id, record.image_id, record.capture_time))
        return self._out.take()
