"""What the node tells its runtime, simulator or UI, drained with ``Node.events()``.

Each event is a frozen, slotted dataclass; none carries a clock reading the
caller did not give.  Peers and images are named by their 64-hex ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import Hello, Purpose
from protocol.store import Decision


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Base of every node event."""


# --- peers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerReady(NodeEvent):
    """Hello and catalog exchanged; the link is running."""

    peer: str
    hello: Hello


@dataclass(frozen=True, slots=True)
class PeerGone(NodeEvent):
    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class PeerTimedOut(NodeEvent):
    """Nothing heard from the peer for ``peer_timeout_s``: the runtime should close the link."""

    peer: str
    silent_s: float


@dataclass(frozen=True, slots=True)
class ProtocolViolation(NodeEvent):
    """The peer broke the protocol; ``receive_data`` raised and the link must close."""

    peer: str
    code: str
    message: str


# --- thumbnails and originals ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThumbnailArrived(NodeEvent):
    peer: str
    image_id: str


@dataclass(frozen=True, slots=True)
class StripArrived(NodeEvent):
    """A movie's strip of ``frames`` thumbnails is on our card (FIG. 15A), before its bytes."""

    peer: str
    image_id: str
    frames: int


@dataclass(frozen=True, slots=True)
class MarksArrived(NodeEvent):
    """Marks from ``peer`` changed these ``fields`` of a picture here (last writer wins)."""

    peer: str
    image_id: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TransferProgress(NodeEvent):
    """Bytes of an incoming original now durable (``done`` of ``total``)."""

    peer: str
    image_id: str
    purpose: Purpose
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class OriginalArrived(NodeEvent):
    """An incoming original (or smaller copy) verified and durable on our card."""

    peer: str
    image_id: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class OriginalSent(NodeEvent):
    """We finished streaming an original to a peer (its verification is the peer's)."""

    peer: str
    image_id: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class TransferRefused(NodeEvent):
    """The peer could not serve what we asked for, with its reason."""

    peer: str
    image_id: str
    purpose: Purpose
    reason: str


@dataclass(frozen=True, slots=True)
class RequestPending(NodeEvent):
    """A request could not be sent yet (no connected peer has the original); kept for later."""

    image_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decided(NodeEvent):
    """Our user asked for an original ("requested") or said it is not needed ("refused")."""

    image_id: str
    decision: Decision  # a StrEnum: equal to "requested" / "refused"


# --- dispersal ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispersalAccepted(NodeEvent):
    image_id: str
    holder: str
    reservation: int


@dataclass(frozen=True, slots=True)
class DispersalRejected(NodeEvent):
    image_id: str
    holder: str
    reason: str


@dataclass(frozen=True, slots=True)
class Dispersed(NodeEvent):
    """Holders confirmed STORED and our original was freed (thumbnail and metadata stay)."""

    image_id: str
    holders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CardFull(NodeEvent):
    """Above the high-water mark and no peer would hold more: said plainly, nothing was lost."""

    message: str


@dataclass(frozen=True, slots=True)
class HeldStored(NodeEvent):
    """We now hold an original for ``owner`` (verified, durable)."""

    image_id: str
    owner: str


@dataclass(frozen=True, slots=True)
class Released(NodeEvent):
    """We deleted an original we held for its owner (it collected it for good)."""

    image_id: str
    owner: str


@dataclass(frozen=True, slots=True)
class Collected(NodeEvent):
    """A dispersed original came home and is LOCAL again."""

    image_id: str
    holder: str


@dataclass(frozen=True, slots=True)
class CollectPending(NodeEvent):
    """A collection waits for a holder that is away; it resumes, durably, when one returns."""

    image_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Repaired(NodeEvent):
    """A dispersed original lost a holder for good and now has a new one (copied from another)."""

    image_id: str
    holder: str


@dataclass(frozen=True, slots=True)
class RepairFailed(NodeEvent):
    """A lost holder's copy cannot be replaced (no other copy exists, or none is reachable)."""

    image_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CollectFailed(NodeEvent):
    image_id: str
    reason: str


# --- read-out ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadOutChunk(NodeEvent):
    """Bytes of a local read-out, in order from ``offset``."""

    image_id: str
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadOutDone(NodeEvent):
    """Every chunk was delivered; ``digest`` is the SHA-256 of all of them."""

    image_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class ReadOutPending(NodeEvent):
    """A waiting read-out could not go yet (the holder is away); it is retried until its deadline."""

    image_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReadOutFailed(NodeEvent):
    image_id: str
    reason: str
