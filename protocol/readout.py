"""Our own user's read-outs (claims 8, 9, 18, 19): the original handed out wherever it is.

A LOCAL original, or one we hold as it is, is read from the card; a copy we hold
sealed opens with a key its owner wrapped for us (a desk trusted to read what a lost
camera dispersed); one of our own DISPERSED originals is collected from a holder
(protocol.collections, told ``CollectForReader``); any other picture is asked of its
owner or a peer that offered its original (ReadOut).  Each ends in ReadOutChunk...
ReadOutDone events, or ReadOutFailed naming why.  Given ``wait_s`` a read-out that
cannot go now waits instead (ReadOutPending) and is retried when a peer comes back
and every ``readout_retry_s``, until its deadline.  One read-out is in one state:

  state    input                                         next state
  -------  --------------------------------------------  -------------------------------
  NONE     read_out(), the original here                 NONE (handed out: ReadOutDone)
  NONE     read_out(), asked of a peer or collected      ACTIVE if waiting, else NONE
  NONE     read_out() that cannot go (no wait_s)         NONE (ReadOutFailed)
  ACTIVE   it fails, with wait_s                         PENDING (ReadOutPending)
  ACTIVE   it completes                                  NONE (ReadOutDone)
  PENDING  a peer is ready, or its retry time            ACTIVE (tried again), or NONE
  PENDING  its deadline                                  NONE (ReadOutFailed: gave up)

``TRANSITIONS`` is that table (for read-outs that may wait; one that may not is
NONE before and after), ``state_of`` reads it off the machine.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.effects import CollectForReader, Effect, Expect, Machine, Rearm
from protocol.messages import Purpose, ReadOut
from protocol.peer import Expected, Link, name_in
from protocol.sealing import SealingError
from protocol.store import ImageRecord, Store, StoreError, Where


class ReadOutState(enum.StrEnum):
    """Where one of our user's read-outs that may wait is."""

    NONE = "none"
    ACTIVE = "active"  # an attempt is under way
    PENDING = "pending"  # waiting for its holder or owner, retried until its deadline


NONE, ACTIVE, PENDING = ReadOutState.NONE, ReadOutState.ACTIVE, ReadOutState.PENDING

TRANSITIONS: Final[Mapping[tuple[ReadOutState, str], frozenset[ReadOutState]]] = {
    (NONE, "read-out"): frozenset({NONE, ACTIVE, PENDING}),
    (ACTIVE, "read-out"): frozenset({NONE, ACTIVE, PENDING}),
    (PENDING, "read-out"): frozenset({NONE, ACTIVE, PENDING}),
    (ACTIVE, "failed"): frozenset({PENDING}),
    (NONE, "failed"): frozenset({NONE}),
    (ACTIVE, "done"): frozenset({NONE}),
    (NONE, "done"): frozenset({NONE}),
    (PENDING, "retry"): frozenset({ACTIVE, PENDING, NONE}),
    (ACTIVE, "retry"): frozenset({ACTIVE}),
    (NONE, "retry"): frozenset({NONE}),
    (PENDING, "tick"): frozenset({PENDING, ACTIVE, NONE}),
    (ACTIVE, "tick"): frozenset({ACTIVE}),
    (NONE, "tick"): frozenset({NONE}),
}


@dataclass(slots=True, eq=False)
class Waiting:
    """A read-out of our user's that may wait for its holder (``read_out(wait_s=...)``)."""

    deadline: float
    retry_at: float
    active: bool = True  # an attempt is under way
    reason: str = ""


class ReadOuts(Machine):
    """Our own user's read-outs (see the module's table)."""

    def __init__(
        self, store: Store, config: NodeConfig, links: Mapping[str, Link],
        names: Mapping[str, str], offerers: Callable[[str], set[str]],
    ) -> None:
        super().__init__(store, config, links)
        self.names = names  # device id -> name (read only, protocol.sync keeps it)
        self.offerers = offerers  # the peers that offered a picture's original (the pulls')
        self._waiting: dict[str, Waiting] = {}

    def state_of(self, image_id: str) -> ReadOutState:
        waiting = self._waiting.get(image_id)
        if waiting is None:
            return ReadOutState.NONE
        return ReadOutState.ACTIVE if waiting.active else ReadOutState.PENDING

    def next_deadline(self) -> float | None:
        times = [min(w.deadline, w.retry_at) for w in self._waiting.values() if not w.active]
        return min(times) if times else None

    # --- inputs -------------------------------------------------------------------------------

    def read_out(self, image_id: str, now: float, *, wait_s: float | None = None) -> list[Effect]:
        if wait_s is not None:
            retry = now + self.config.readout_retry_s
            self._waiting[image_id] = Waiting(deadline=now + wait_s, retry_at=retry)
            self._out.add(Rearm())
        self._attempt(image_id, now)
        return self._out.take()

    def failed(self, image_id: str, reason: str) -> list[Effect]:
        """It could not go: it waits (ReadOutPending) or fails, naming why."""
        self._failed(image_id, reason)
        return self._out.take()

    def _failed(self, image_id: str, reason: str) -> None:
        waiting = self._waiting.get(image_id)
        if waiting is None:
            self._out.emit(ev.ReadOutFailed(image_id, reason))
            return
        waiting.active, waiting.reason = False, reason
        self._out.add(Rearm())
        self._out.emit(ev.ReadOutPending(image_id, reason))

    def done(self, image_id: str, digest: str) -> list[Effect]:
        self._done(image_id, digest)
        return self._out.take()

    def _done(self, image_id: str, digest: str) -> None:
        self._waiting.pop(image_id, None)
        self._out.emit(ev.ReadOutDone(image_id, digest))

    def served(self, image_id: str, *, home: bool) -> list[Effect]:
        """Its collection is complete: relayed and verified, or home (read from the card)."""
        record = self.store.image(image_id)
        if not home:
            self._done(image_id, image_id)
        elif record is not None:
            self._hand_out(image_id, record.size, held=False)
        return self._out.take()

    def tick(self, now: float) -> list[Effect]:
        """Retry waiting read-outs; give up on those past their deadline."""
        for image_id, waiting in list(self._waiting.items()):
            if waiting.active:
                continue
            if now >= waiting.deadline:
                del self._waiting[image_id]
                self._out.emit(
                    ev.ReadOutFailed(image_id, f"{waiting.reason} (gave up waiting for it)")
                )
            elif now >= waiting.retry_at:
                self._retry(image_id, waiting, now)
        return self._out.take()

    def link_ready(self, link: Link, now: float) -> list[Effect]:
        """A peer is back: the read-outs waiting are tried again."""
        for image_id, waiting in list(self._waiting.items()):
            if not waiting.active:
                self._retry(image_id, waiting, now)
        return self._out.take()

    # --- attempts -----------------------------------------------------------------------------

    def _retry(self, image_id: str, waiting: Waiting, now: float) -> None:
        waiting.active = True
        waiting.retry_at = now + self.config.readout_retry_s
        self._attempt(image_id, now)

    def _attempt(self, image_id: str, now: float) -> None:
        store, out = self.store, self._out
        record = store.image(image_id)
        if record is not None and record.where is Where.LOCAL:
            self._hand_out(image_id, record.size, held=False)
            return
        held = store.held(image_id)
        if held is not None and held.digest == image_id:  # held as it is, not sealed
            self._hand_out(image_id, held.size, held=True)
            return
        wrapped = record.wrapped_key if record is not None else None
        if held is not None and record is not None and wrapped is not None \
                and self._open_held(record, held.size, wrapped):
            return
        sealed_here = held is not None and held.digest != image_id  # and it did not open
        if record is None:
            unknown = "no picture with that id is known here"
            self._failed(image_id, _sealed_without_key(name_in(self.names, held.owner))
                         if held is not None and sealed_here else unknown)
            return
        if record.origin == store.device_id and record.where is Where.DISPERSED:
            out.tell(CollectForReader(image_id))
            return
        if any((image_id, Purpose.READOUT) in link.expected for link in self.links.values()):
            return  # already asked
        for peer_id in [record.origin, *sorted(self.offerers(image_id))]:
            link = self.links.get(peer_id)
            if link is not None and link.ready:
                out.add(Expect(peer_id, Expected(image_id, Purpose.READOUT, None, 0,
                                                 size=record.size)))
                out.send(peer_id, ReadOut(image_id, 0))
                return
        owner = name_in(self.names, record.origin)
        self._failed(
            image_id,
            _sealed_without_key(owner) if sealed_here
            else f"its owner {owner} is not connected; try again when it is",
        )

    def _hand_out(self, image_id: str, size: int, *, held: bool) -> None:
        store, step = self.store, self.config.chunk_size
        read = store.read_held if held else store.read_original
        size = self._extent(size)
        digest = hashlib.sha256()
        for offset in range(0, size, step):
            data = read(image_id, offset, min(step, size - offset))
            digest.update(data)
            self._out.emit(ev.ReadOutChunk(image_id, offset, data))
        self._done(image_id, digest.hexdigest())

    def _extent(self, size: int) -> int:
        """How much of an original of ``size`` bytes a read-out hands out: all of it."""
        return size

    def _open_held(self, record: ImageRecord, size: int, wrapped: bytes) -> bool:
        """A copy we hold sealed, of a picture whose key its owner wrapped for us: opened and
        handed out.  False if the key or the copy does not open; the read-out then goes to
        the owner."""
        sealer, image_id = self.config.sealer, record.image_id
        if sealer is None:
            return False
        try:
            key = sealer.unwrap(wrapped, image_id)
            plain = sealer.open(key, image_id, self.store.read_held(image_id, 0, size))
        except (SealingError, StoreError):
            return False
        if hashlib.sha256(plain).hexdigest() != image_id:
            return False
        step = self.config.chunk_size
        for offset in range(0, len(plain), step):
            self._out.emit(ev.ReadOutChunk(image_id, offset, plain[offset : offset + step]))
        self._done(image_id, image_id)
        return True


def _sealed_without_key(owner: str) -> str:
    """Why a copy held here does not read out: it is sealed for its owner, who is away."""
    return (f"this device holds it only sealed for its owner {owner}, with no key to open it; "
            f"{owner} is not connected: try again when it is")
