"""What a local input to the node did, returned by the input itself (issue 15).

``Node.captured``, ``request``, ``refuse``, ``read_out``, ``collect`` and ``repair`` return
one of these, so a driver (mesh/daemon.py answering its control socket) learns the outcome
from the call instead of subscribing to events.  The events still come out of
``Node.events()`` as before, in the same order: an outcome says in one value what those
events said, at the moment of the call.  What happens later (the bytes of a read-out, a
collection arriving, a repair's new holder) still comes as events.

Each outcome is a frozen, slotted dataclass; the unions below name what each input may
return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from protocol import events as ev
from protocol.effects import Effect, Expect, QueueThumbnail, Send
from protocol.messages import Purpose, RefuseOriginal, RequestOriginal
from protocol.peer import Link
from protocol.store import Store, Where

__all__ = [
    "AlreadyHere",
    "Announced",
    "CollectOutcome",
    "Collecting",
    "Failed",
    "HandedOut",
    "NotNeeded",
    "Pending",
    "ReadOutOutcome",
    "ReadingOut",
    "Repairing",
    "RequestOutcome",
    "Requested",
]


@dataclass(frozen=True, slots=True)
class Announced:
    """``captured``: the picture's thumbnail is queued to ``peers`` (the ready links), sorted."""

    image_id: str
    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlreadyHere:
    """``request``, ``collect``: the original is on this card already; nothing was asked."""

    image_id: str


@dataclass(frozen=True, slots=True)
class Requested:
    """``request``: the original (or a smaller copy) was asked of ``peer`` now."""

    image_id: str
    peer: str


@dataclass(frozen=True, slots=True)
class Collecting:
    """``collect``, ``request`` of our own dispersed picture: a holder was asked for it now;
    Collected (or CollectFailed) follows as an event."""

    image_id: str


@dataclass(frozen=True, slots=True)
class Pending:
    """It cannot go now and waits, durably for a request or a collection, up to ``wait_s``
    for a read-out; ``reason`` says what it waits for (the RequestPending, CollectPending or
    ReadOutPending event said the same)."""

    image_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Nothing is done and nothing will be tried again; ``reason`` says why (the
    CollectFailed, ReadOutFailed or RepairFailed event said the same)."""

    image_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class NotNeeded:
    """``refuse``: the decision is kept; ``told`` are the peers sent RefuseOriginal, sorted."""

    image_id: str
    told: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HandedOut:
    """``read_out``: the original was here (or held plainly) and every byte was handed out
    in this call, as ReadOutChunk events and then ReadOutDone with ``digest``."""

    image_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class ReadingOut:
    """``read_out``: asked of a holder or a peer; the bytes follow as ReadOutChunk events,
    then ReadOutDone, ReadOutPending (while it may wait) or ReadOutFailed."""

    image_id: str


@dataclass(frozen=True, slots=True)
class Repairing:
    """``repair``: what ``holder`` held for us.  ``copying``: still dispersed, a new holder is
    sought (Repaired follows for each); ``unlisted``: the original is on this card, the
    holder only left the list; ``failed``: it was the only holder, and why each stays listed.
    Each tuple is in image id order."""

    holder: str
    copying: tuple[str, ...]
    unlisted: tuple[str, ...]
    failed: tuple[Failed, ...]


RequestOutcome = AlreadyHere | Requested | Collecting | Pending | Failed
CollectOutcome = AlreadyHere | Collecting | Pending | Failed
ReadOutOutcome = HandedOut | ReadingOut | Pending | Failed


# --- reading an input's outcome off what it did -------------------------------------------
# The node calls these right after an input, with the effects it carried out and the events
# it emitted during the call; the events themselves still go out of Node.events().


def announced(image_id: str, effects: Sequence[Effect]) -> Announced:
    """``captured``'s outcome: the ready links its thumbnail was queued to."""
    queued = {e.peer_id for e in effects
              if isinstance(e, QueueThumbnail) and e.image_id == image_id}
    return Announced(image_id, tuple(sorted(queued)))


def requested(
    image_id: str, effects: Sequence[Effect], events: Sequence[ev.NodeEvent],
    links: Mapping[str, Link],
) -> RequestOutcome:
    """``request``'s outcome for a picture not ours: asked of a peer now, still on its way
    from one (asked before), or waiting for a peer that has it."""
    for effect in effects:
        if isinstance(effect, Send) and isinstance(effect.message, RequestOriginal):
            if effect.message.image_id == image_id:
                return Requested(image_id, effect.peer_id)
        elif isinstance(effect, Expect) and effect.expected.image_id == image_id:
            return Requested(image_id, effect.peer_id)
    for event in events:
        if isinstance(event, ev.RequestPending) and event.image_id == image_id:
            return Pending(image_id, event.reason)
    for link in links.values():  # asked urgently before: still on its way
        if any((image_id, p) in link.expected for p in (Purpose.SYNC, Purpose.SMALLER)):
            return Requested(image_id, link.peer_id)
    return Pending(image_id, "no connected peer has this original yet")


def not_needed(image_id: str, effects: Sequence[Effect]) -> NotNeeded:
    """``refuse``'s outcome: the peers told not to send the original."""
    told = {e.peer_id for e in effects if isinstance(e, Send)
            and isinstance(e.message, RefuseOriginal) and e.message.image_id == image_id}
    return NotNeeded(image_id, tuple(sorted(told)))


def read_out(image_id: str, events: Sequence[ev.NodeEvent]) -> ReadOutOutcome:
    """``read_out``'s outcome, from the last word its call's events said of the picture."""
    outcome: ReadOutOutcome = ReadingOut(image_id)
    for event in events:
        if isinstance(event, ev.ReadOutDone) and event.image_id == image_id:
            outcome = HandedOut(image_id, event.digest)
        elif isinstance(event, ev.ReadOutPending) and event.image_id == image_id:
            outcome = Pending(image_id, event.reason)
        elif isinstance(event, ev.ReadOutFailed) and event.image_id == image_id:
            outcome = Failed(image_id, event.reason)
    return outcome


def collected(
    image_ids: Sequence[str], events: Sequence[ev.NodeEvent], store: Store
) -> list[CollectOutcome]:
    """``collect``'s outcome per id, in order: refused (CollectFailed), waiting for a holder
    (CollectPending), asked of a holder (still dispersed), else already here."""
    said: dict[str, CollectOutcome] = {}
    for event in events:
        if isinstance(event, ev.CollectFailed):
            said[event.image_id] = Failed(event.image_id, event.reason)
        elif isinstance(event, ev.CollectPending):
            said.setdefault(event.image_id, Pending(event.image_id, event.reason))
    outcomes: list[CollectOutcome] = []
    for image_id in image_ids:
        outcome = said.get(image_id)
        if outcome is None:
            outcome = Collecting(image_id) if _dispersed(store, image_id) else AlreadyHere(image_id)
        outcomes.append(outcome)
    return outcomes


def repairing(
    holder: str, listed: Iterable[str], events: Sequence[ev.NodeEvent], store: Store
) -> Repairing:
    """``repair``'s outcome for the pictures ``holder`` was listed for before the call."""
    failed = {e.image_id: Failed(e.image_id, e.reason) for e in events
              if isinstance(e, ev.RepairFailed)}
    copying: list[str] = []
    unlisted: list[str] = []
    for image_id in sorted(set(listed) - set(failed)):
        (copying if _dispersed(store, image_id) else unlisted).append(image_id)
    return Repairing(holder, tuple(copying), tuple(unlisted),
                     tuple(failed[i] for i in sorted(failed)))


def _dispersed(store: Store, image_id: str) -> bool:
    record = store.image(image_id)
    return record is not None and record.where is Where.DISPERSED
