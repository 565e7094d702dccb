"""Movies' strips on the wire (FIG. 15A, 16): the whole strip at the peer before the movie's bytes.

One movie, one link, for this machine:

  step       input                          what follows
  ---------  -----------------------------  ---------------------------------------------------
  offered    our thumbnail offer of a movie  its strip is queued on the thumbnail lane, right
             went to a peer naming "strip"   behind the offer; the movie's header waits for it
  sent       the strip's turn on the lane    a Strip message, read from the card now (nothing
                                             kept: none when the strip is gone meanwhile)
  arrived    a peer's Strip                 checked against the offer it follows, kept on the
                                             card, StripArrived; a strip new to us is relayed
                                             to every other ready peer naming "strip" that
                                             already has the offer (one we had: no relay, so
                                             a ring of desks does not pass it round for ever)
  missing    a link is ready, to a peer     WantStrips names the movies whose offer came but
             naming "want-strips"           not their strip (a link broke between the two)
  wanted     a peer's WantStrips            each named movie of ours or kept here is queued
                                             as at "offered" (render sends it if we keep it)

A node keeps strips only when its store is a ``StripShelf`` (the card; the simulator's
store is not): it then names ``strip`` and ``want-strips`` among its Hello's capabilities,
and a peer sends strips only to a Hello that names ``strip`` and WantStrips only to one that
names ``want-strips`` (a device of the build before it names only ``strip``, and would
refuse the message), so a device that cannot keep them is sent none and everything else on
the wire is as it was.  A strip nobody may send us, or one that does not
fit the offer before it, is a RemoteProtocolError.
"""

from __future__ import annotations

from collections.abc import Mapping

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.effects import Effect, Outbox, QueueStrip
from protocol.errors import RemoteProtocolError
from protocol.messages import Limits, Strip, ThumbnailOffer, WantStrips
from protocol.peer import Link
from protocol.store import Store, StripFrame, StripShelf

CAPABILITY = "strip"
WANT = "want-strips"  # the peer answers WantStrips (this build on)


def has_strip(offer: ThumbnailOffer) -> bool:
    """The picture offered is a movie whose import made a strip (its metadata says how long)."""
    frames = offer.metadata.get("strip_frames")
    return offer.mime.startswith("video/") and type(frames) is int and frames > 0


def strip_message(image_id: str, frames: list[StripFrame]) -> Strip | None:
    """The strip as it travels: the first ``MAX_STRIP_FRAMES`` frames that fit in its bytes."""
    kept: list[StripFrame] = []
    total = 0
    for frame in frames[: Limits.MAX_STRIP_FRAMES]:
        if not 0 < len(frame.jpeg) <= Limits.MAX_STRIP_JPEG:
            continue
        if total + len(frame.jpeg) > Limits.MAX_STRIP_BYTES:
            break
        total += len(frame.jpeg)
        kept.append(frame)
    if not kept:
        return None
    return Strip(
        image_id=image_id,
        times=tuple(max(0.0, f.time) for f in kept),
        offsets=tuple(f.offset for f in kept),
        kinds=tuple(f.kind for f in kept),
        jpegs=tuple(f.jpeg for f in kept),
    )


class Strips:
    """Sends and keeps movies' strips (see the module's table)."""

    def __init__(self, store: Store, config: NodeConfig, links: Mapping[str, Link]) -> None:
        self.store = store
        self.config = config
        self.links = links  # read only: a link is written through effects
        self.shelf: StripShelf | None = store if isinstance(store, StripShelf) else None
        self._out = Outbox()

    @property
    def capabilities(self) -> tuple[str, ...]:
        """What our Hello names: ``strip`` when this card can keep strips."""
        return (CAPABILITY, WANT) if self.shelf is not None else ()

    @staticmethod
    def takes_strips(link: Link) -> bool:
        return link.hello is not None and CAPABILITY in link.hello.capabilities

    @staticmethod
    def answers_wants(link: Link) -> bool:
        return link.hello is not None and WANT in link.hello.capabilities

    # --- inputs -----------------------------------------------------------------------------

    def offer_sent(self, link: Link, offer: ThumbnailOffer) -> list[Effect]:
        """Our ``offer`` is leaving: a movie's strip goes right behind it."""
        if self.shelf is not None and has_strip(offer) and self.takes_strips(link):
            self._out.add(QueueStrip(link.peer_id, offer.image_id, offer.capture_time))
        return self._out.take()

    def link_ready(self, link: Link) -> list[Effect]:
        """Catalogs exchanged: ask the peer for every strip whose offer came without it."""
        if self.shelf is not None and self.takes_strips(link) and self.answers_wants(link):
            missing = self.shelf.strips_missing()
            step = Limits.MAX_WANTED_STRIPS
            for start in range(0, len(missing), step):
                wanted = WantStrips(image_ids=tuple(missing[start : start + step]))
                self._out.send(link.peer_id, wanted)
        return self._out.take()

    def on_want_strips(self, link: Link, msg: WantStrips) -> list[Effect]:
        """A peer lacks these strips: each movie we know goes as if its offer had just left."""
        if self.shelf is None or not self.takes_strips(link):
            raise RemoteProtocolError(
                f"WantStrips, but our Hello named no {WANT!r} capability or the peer's no "
                f"{CAPABILITY!r}",
                code="unexpected",
            )
        for image_id in dict.fromkeys(msg.image_ids):
            record = self.store.image(image_id)
            if record is not None and record.mime.startswith("video/") \
                    and record.origin != link.peer_id:
                self._out.add(QueueStrip(link.peer_id, image_id, record.capture_time))
        return self._out.take()

    def render(self, image_id: str) -> Strip | None:
        """The Strip message for a queued strip, read from the card now."""
        if self.shelf is None:
            return None
        return strip_message(image_id, self.shelf.strip(image_id))

    def on_strip(self, link: Link, msg: Strip) -> list[Effect]:
        """Keep a peer's strip of a movie whose offer came first; relay it (FIG. 21)."""
        short = msg.image_id[:12]
        if self.shelf is None:
            raise RemoteProtocolError(
                f"a strip for {short}, but our Hello named no {CAPABILITY!r} capability",
                code="unexpected",
            )
        record = self.store.image(msg.image_id)
        if record is None:
            raise RemoteProtocolError(
                f"a strip for {short}, whose thumbnail offer never came (it goes first)",
                code="catalog",
            )
        if not record.mime.startswith("video/"):
            raise RemoteProtocolError(
                f"a strip for {short}, which is a {record.mime}, not a movie", code="catalog"
            )
        if any(o is not None and o >= max(1, record.size) for o in msg.offsets):
            raise RemoteProtocolError(
                f"a strip for {short} names a byte offset past its {record.size} bytes",
                code="bad-offset",
            )
        if record.origin == self.store.device_id:
            return self._out.take()  # our own movie: our strip is the one we made
        frames = [
            StripFrame(t, o, k, bytes(j))
            for t, o, k, j in zip(msg.times, msg.offsets, msg.kinds, msg.jpegs, strict=True)
        ]
        if self.shelf.strip(msg.image_id) == frames:
            return self._out.take()  # had it (two peers answered a WantStrips): no relay
        self.shelf.set_strip(msg.image_id, frames)
        self._out.emit(ev.StripArrived(link.peer_id, msg.image_id, len(frames)))
        for other in self.links.values():  # FIG. 21: the offer went on; so does its strip
            if (
                other is not link
                and other.ready
                and other.peer_id != record.origin
                and self.takes_strips(other)
                and other.scheduler.thumbnail_known(msg.image_id)
            ):
                self._out.add(QueueStrip(other.peer_id, msg.image_id, record.capture_time))
        return self._out.take()
