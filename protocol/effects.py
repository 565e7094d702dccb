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

from protocol.events import NodeEvent
from protocol.messages import Hello, Message, Purpose
from protocol.peer import Expected, Link
from protocol.scheduler import Transfer
from protocol.store import ImageRecord


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
class QueueOriginal:
    """Queue a stream of an original (or its sealed form) to the peer, on its lane."""

    peer_id: str
    transfer: Transfer


@dataclass(frozen=True, slots=True)
class DeadlineMoved:
    """A machine may want an earlier tick: the node asks every machine for its deadline afresh."""


def thumbnail_first(link: Link, record: ImageRecord | None, image_id: str) -> Effect | None:
    """What makes sure the peer has (or is about to get) the thumbnail before original bytes."""
    step = link.thumbnail_step(record, image_id)
    if step == "known":
        return ThumbnailKnown(link.peer_id, image_id)
    if step == "queue":
        assert record is not None
        return QueueThumbnail(link.peer_id, image_id, record.capture_time)
    return None


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
class LinkReady:
    """The peer's catalog arrived (to the pulls: it may serve what it failed to)."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class RepairRelay:
    """A new holder accepted a repair: relay to it, from offset, the sealed copy another holder
    STORED (from dispersal, to the collections: our card has no copy)."""

    peer_id: str
    record: ImageRecord
    offset: int
    now: float


Notice = Offered | ThumbnailSeen | LinkReady | RepairRelay


@dataclass(frozen=True, slots=True)
class Tell:
    """Hand ``notice`` to the machine that owns it (Node's routing table says which)."""

    notice: Notice


@dataclass(frozen=True, slots=True)
class Emit:
    """Tell the runtime (and the user): ``event`` goes out of ``Node.events``."""

    event: NodeEvent


Effect = (
    Send | Expect | Cancel | Hurry | QueueThumbnail | QueueStrip | ThumbnailKnown | QueueOriginal
    | Greeted | Ready | DeadlineMoved | Tell | Emit
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
