"""What a sub-machine of the node asks for, as values: the node carries each one out.

A machine (protocol/pulls.py, ...) owns its own state and writes the card directly
(so that "durable before the frame leaves" holds as before), but it never calls back
into the node: whatever it wants done on a link or told to the user it returns as
effects, in order, and ``Node`` applies them at once, in that order, before anything
else happens.  A machine reads links only (``Mapping[str, Link]``); every write to a
link is one of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protocol.config import NodeConfig
from protocol.events import NodeEvent
from protocol.messages import Hello, Message, Purpose
from protocol.peer import Expected, Link, Stream
from protocol.scheduler import Lane, Transfer
from protocol.store import ImageRecord, Store


@dataclass(frozen=True, slots=True)
class Send:
    """Queue ``message`` to the peer on its control lane (ahead of every original)."""

    peer_id: str
    message: Message


@dataclass(frozen=True, slots=True)
class Expect:
    """We asked the peer for a stream (or agreed to one): its header may now come."""

    peer_id: str
    expected: Expected


@dataclass(frozen=True, slots=True)
class Cancel:
    """Forget a stream we asked the peer for; what is already on its way is ignored."""

    peer_id: str
    image_id: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class Hurry:
    """A stream we expect from the peer is now our user's: it counts as urgent."""

    peer_id: str
    image_id: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class QueueThumbnail:
    """Queue our thumbnail of the picture to the peer, ahead of every original."""

    peer_id: str
    image_id: str
    capture_time: float | None


@dataclass(frozen=True, slots=True)
class QueueStrip:
    """Queue the movie's strip to the peer on the thumbnail lane; its original waits for it."""

    peer_id: str
    image_id: str
    capture_time: float | None


@dataclass(frozen=True, slots=True)
class ThumbnailKnown:
    """The peer holds the picture's thumbnail: originals of it may go without one first."""

    peer_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class Greeted:
    """The peer's Hello: who it is and the room it advertises."""

    peer_id: str
    hello: Hello


@dataclass(frozen=True, slots=True)
class Ready:
    """The peer's Catalog arrived: the link is ready, and this is what it has seen."""

    peer_id: str
    catalog: Mapping[str, int]


# --- originals out and in (serving, inbound, collections, read-outs) -------------------------


@dataclass(frozen=True, slots=True)
class QueueOriginal:
    """Queue an original's stream to the peer; its thumbnail first, unless the peer has it.

    A relay's ``transfer`` stays its collection's: it grows it in place (``available``,
    ``may_complete``) and asks for ``Wake``.
    """

    peer_id: str
    transfer: Transfer
    record: ImageRecord | None  # the picture's row, for the thumbnail (None: a held original)


@dataclass(frozen=True, slots=True)
class Promote:
    """A stream queued to the peer moves up to ``lane`` (a repeat of a request, more urgent)."""

    peer_id: str
    image_id: str
    purpose: Purpose
    lane: Lane


@dataclass(frozen=True, slots=True)
class Drop:
    """Take one stream queued to the peer out of its queue (failed, or its source went)."""

    peer_id: str
    image_id: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class Unqueue:
    """The peer refused the picture (FIG. 13B): its queued sync and smaller copies leave."""

    peer_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class Wake:
    """A relay to the peer grew without being queued anew: it may have a frame to pull."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream's header passed its checks: its chunks are awaited (``Link.streams``)."""

    peer_id: str
    stream: Stream


@dataclass(frozen=True, slots=True)
class Closed:
    """A stream is whole: neither it nor our ask of it is kept.  ``crossed``: a repeat of it
    may be on its way (our urgent ask crossed its completion), to be ignored as cancelled."""

    peer_id: str
    image_id: str
    purpose: Purpose
    crossed: bool = False


@dataclass(frozen=True, slots=True)
class Settled:
    """A cancelled stream's completion came: nothing more of it is on its way."""

    peer_id: str
    image_id: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class Rearm:
    """A machine's next deadline may now be earlier: ``Node.next_deadline`` asks afresh."""


# --- notices: what one machine tells another (Node routes each by its type) ------------------


@dataclass(frozen=True, slots=True)
class Offered:
    """A thumbnail offer said the peer has the original (to the pulls)."""

    peer_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class ThumbnailSeen:
    """A thumbnail came in (to the pulls: its original may be wanted)."""

    image_id: str
    now: float


@dataclass(frozen=True, slots=True)
class Selected:
    """Marks made the picture a select, tagged or rated (to the pulls: its original first)."""

    image_id: str


@dataclass(frozen=True, slots=True)
class LinkReady:
    """The peer's catalog arrived (to the pulls: it may serve what it failed to)."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class PullOver:
    """A pulled original arrived or was given up (to the pulls: its slot is free)."""

    peer_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class PullsMayGo:
    """A slot or room came free (to the pulls: send what waits)."""

    now: float


@dataclass(frozen=True, slots=True)
class OursAgain:
    """One of our originals is on our card again (to dispersal: a candidate once more)."""

    record: ImageRecord


@dataclass(frozen=True, slots=True)
class HeldIn:
    """An original we hold for the peer is durable and verified (to holding: STORED)."""

    peer_id: str
    image_id: str
    digest: str
    now: float


@dataclass(frozen=True, slots=True)
class ReleaseSent:
    """Our Release to the peer is on the wire (to dispersal: its entry leaves the list)."""

    peer_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class Relay:
    """Serve the peer one of our dispersed originals by collecting it (to collections).
    ``purpose`` DISPERSE: a repair, the holder's sealed bytes go on as they come."""

    peer_id: str
    image_id: str
    purpose: Purpose
    offset: int
    now: float


@dataclass(frozen=True, slots=True)
class RelayRefused:
    """The peer refused what we relay to it (to collections: it leaves the relay)."""

    peer_id: str
    image_id: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class CollectedBytes:
    """Bytes of a collection came from the holder (to collections: opened, relayed)."""

    peer_id: str
    image_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class CollectionIn:
    """A collection's stream completed (to collections). ``offset``: where it started."""

    peer_id: str
    image_id: str
    offset: int
    now: float


@dataclass(frozen=True, slots=True)
class CollectionLost:
    """A collection from the peer failed (to collections: another holder, or everyone hears)."""

    peer_id: str
    image_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReadOutIn:
    """Our user's read-out stream completed with ``digest`` (to the read-outs)."""

    image_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class ReadOutLost:
    """Our user's read-out cannot go now (to the read-outs: it waits or fails, naming why)."""

    image_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CollectForReader:
    """Our user reads out one of our dispersed originals (to collections: collect it)."""

    image_id: str


@dataclass(frozen=True, slots=True)
class ServeFromCard:
    """A reader that waited for a collection home is served from the card now (to serving)."""

    peer_id: str
    image_id: str
    purpose: Purpose
    offset: int


@dataclass(frozen=True, slots=True)
class ReadOutServed:
    """A collection for our user's read-out is complete (to the read-outs: done, or read the
    original from the card when ``home``)."""

    image_id: str
    home: bool


Notice = (
    Offered | ThumbnailSeen | LinkReady | PullOver | PullsMayGo | OursAgain | HeldIn
    | ReleaseSent | Relay | RelayRefused | CollectedBytes | CollectionIn
    | CollectionLost | ReadOutIn | ReadOutLost | CollectForReader | ServeFromCard | ReadOutServed
    | Selected
)


@dataclass(frozen=True, slots=True)
class Tell:
    """Hand ``notice`` to the machine that owns it (Node's routing table says which)."""

    notice: Notice


@dataclass(frozen=True, slots=True)
class Emit:
    """Tell the runtime (and the user): ``event`` goes out of ``Node.events``."""

    event: NodeEvent


Effect = (
    Send | Expect | Cancel | Hurry | QueueThumbnail | QueueStrip | ThumbnailKnown | Greeted | Ready
    | Tell | Emit
    | QueueOriginal | Promote | Drop | Unqueue | Wake | Opened | Closed | Settled | Rearm
)


class Outbox:
    """A machine's effects in the order it asked for them; ``take`` hands them over."""

    __slots__ = ("_effects",)

    def __init__(self) -> None:
        self._effects: list[Effect] = []

    def send(self, peer_id: str, message: Message) -> None:
        self._effects.append(Send(peer_id, message))

    def emit(self, event: NodeEvent) -> None:
        self._effects.append(Emit(event))

    def tell(self, notice: Notice) -> None:
        self._effects.append(Tell(notice))

    def add(self, effect: Effect) -> None:
        self._effects.append(effect)

    def take(self) -> list[Effect]:
        out, self._effects = self._effects, []
        return out


class Machine:
    """What every sub-machine of the node is built from: the card, the settings, the links
    (read only: a link is written through effects), and an outbox for its effects."""

    def __init__(self, store: Store, config: NodeConfig, links: Mapping[str, Link]) -> None:
        self.store = store
        self.config = config
        self.links = links
        self._out = Outbox()

    def take(self) -> list[Effect]:
        """What it asked for before a check refused the peer (the node applies it first)."""
        return self._out.take()
