"""The invariants of DESIGN.md, "Simulation", checked against the world after every step.

Per step: no picture lost (every captured picture has a complete, hash-verified
copy on some card: all cards are restartable), no card over its capacity, and
read-outs byte-identical.  The wire tap in the world checks thumbnail before
original.  After quiet: dispersion lists and holdings agree, and (marks scenarios) every
card holds the marks editors made, by last writer wins.  Liveness is its
own mode: ``missing_thumbnails`` after the network healed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol import events as ev
from protocol.messages import DisperseAccept
from protocol.store import DispersalState, Incoming, StoreError, Where

if TYPE_CHECKING:
    from sim.devices import Device
    from sim.lying import Lie
    from sim.world import World


@dataclass(frozen=True, slots=True)
class Violation:
    """The first broken invariant: which rule, what was seen, when (virtual time, step number)."""

    rule: str
    detail: str
    at: float
    step: int

    def __str__(self) -> str:
        return f"{self.rule} at t={self.at:.3f}s (step {self.step}): {self.detail}"


def _verified(world: World, key: tuple[int, str, str], data: bytes | None, image_id: str) -> bool:
    # The store hands back the same bytes object until the copy changes, so each
    # copy is hashed once: the world remembers the last object that verified.
    if data is None:
        return False
    if world.verified.get(key) is data:
        return True
    if hashlib.sha256(data).hexdigest() != image_id:
        return False
    world.verified[key] = data
    return True


def holds_copy(world: World, dev: Device, image_id: str) -> bool:
    """A complete, hash-verified copy of the original is on this card (own or held)."""
    store = dev.store
    if _verified(world, (dev.index, image_id, "own"), store.original_bytes(image_id), image_id):
        return True
    held = store.held(image_id)
    if held is None:
        return False
    data = store.read_held(image_id, 0, held.size)
    key = (dev.index, image_id, "held")
    if world.verified.get(key) is data:
        return True
    # Held copies are sealed: only their owner's key opens them (the holder never can).
    owner = world.index_of.get(held.owner)
    if owner is None:
        return False
    try:
        plain = world.devices[owner].store.open_sealed(image_id, 0, data)
    except StoreError:
        return False
    if not _verified(world, key, plain, image_id):
        return False
    world.verified[key] = data  # remember the sealed bytes that opened to it
    return True


def check_step(world: World, *, full: bool) -> None:
    """Invariants after one step: the cards the step changed, or (``full``) every card and picture."""
    devices = world.devices
    dirty = world.dirty
    if not (full or dirty):
        return
    changed = range(len(devices)) if full else sorted(dirty)
    dirty.clear()
    for index in changed:
        usage = devices[index].store.usage()
        if usage.used + usage.reserved > usage.capacity:
            world.fail(
                "capacity",
                f"{devices[index].name} holds {usage.used} bytes and promised {usage.reserved} "
                f"on a {usage.capacity}-byte card",
            )
            return
    lost: list[str] = []
    for index in changed:
        store = devices[index].store
        if store.lost_copy:
            for image_id in store.lost_copy:
                # Forget the verified copy so its bytes can go (and cannot vouch again).
                world.verified.pop((index, image_id, "own"), None)
                world.verified.pop((index, image_id, "held"), None)
            lost += store.lost_copy
            store.lost_copy.clear()
    ids = [p.image_id for p in world.pictures] if full else sorted(set(lost))
    hints = world.holder_hint
    # With two or more replicas a liar's card vouches only for the liar's own pictures: an
    # honest owner's must keep a verified copy on an honest card (its own, or a holder's).
    liar = world.liar.index if world.liar is not None and world.scenario.replicas > 1 else -1
    honest = [d for d in devices if d.index != liar]
    for image_id in ids:
        pic = world.by_id.get(image_id)
        if pic is None:
            continue
        cards = devices if pic.camera == liar or liar < 0 else honest
        # The card that vouched last time is asked first: a full rescan then costs
        # about one look per picture instead of one per card.
        hint = hints.get(image_id)
        if hint is not None and hint != liar and holds_copy(world, devices[hint], image_id):
            continue
        holder = next((d for d in cards if holds_copy(world, d, image_id)), None)
        if holder is not None:
            hints[image_id] = holder.index
        else:
            world.fail(
                "picture-lost",
                f"picture {pic.number} ({image_id[:12]}) of camera{pic.camera} has no "
                f"complete, verified copy on any {'honest ' if cards is honest else ''}card",
            )
            return


def check_accept(world: World, holder: Device, accept: DisperseAccept) -> None:
    """An accept leaves only with room reserved for it on the holder's card (claims 6, 16).

    The capacity invariant extended to promises: an unreserved accept lets the
    holder's card pass its capacity (or the owner's stream fail) once the bytes come.
    """
    store = holder.store
    if store.promised.get(accept.image_id, 0) >= accept.reservation:
        return
    needed = accept.reservation - store.partial_offset(accept.image_id, Incoming.HELD)
    free = store.usage().free
    world.fail(
        "capacity",
        f"{holder.name} accepted {accept.reservation} bytes of {accept.image_id[:12]} without "
        f"reserving them ({free} bytes free, {needed} still to come"
        f"{': past its capacity' if needed > free else ''})",
    )


def readout_chunk(world: World, dev: Device, event: ev.ReadOutChunk) -> None:
    buf = dev.readouts.get(event.image_id)
    if buf is None:
        world.fail("readout", f"{dev.name} got read-out bytes for {event.image_id[:12]} it never asked for")
        return
    if event.offset != len(buf):
        world.fail(
            "readout",
            f"{dev.name} read-out of {event.image_id[:12]} jumped to offset {event.offset} "
            f"after {len(buf)} bytes",
        )
        return
    buf += event.data


def readout_done(world: World, dev: Device, event: ev.ReadOutDone) -> None:
    """A finished read-out must be exactly the original bytes (claims 8, 9)."""
    buf = dev.readouts.pop(event.image_id, None)
    pic = world.by_id.get(event.image_id)
    if buf is None or pic is None:
        world.fail("readout", f"{dev.name} finished a read-out of {event.image_id[:12]} nobody started")
        return
    if len(buf) != pic.size or hashlib.sha256(buf).hexdigest() != pic.image_id:
        world.fail(
            "readout",
            f"{dev.name} read out {len(buf)} bytes of picture {pic.number} that are not its "
            f"{pic.size}-byte original (stale or partial)",
        )
        return
    world.metrics.count("readouts.verified")


def readout_failed(world: World, dev: Device, event: ev.ReadOutFailed) -> None:
    """A read-out that cannot return the exact bytes fails with a reason a person can act on."""
    if not event.reason.strip():
        world.fail("readout", f"{dev.name}'s read-out of {event.image_id[:12]} failed with no reason")


def liar_cut_off(world: World, liar: int, honest: int, lie: Lie, *, refused: bool) -> None:
    """A lie an honest node can see through as it lands (a STORED early or for another digest,
    an accept reserving too little) ends the link with a RemoteProtocolError: believed, it
    would free an original nobody verified, or stream into room nobody reserved."""
    if not refused:
        world.fail(
            "liar-not-cut-off",
            f"{world.devices[honest].name} believed {world.devices[liar].name}'s {lie.kind} "
            f"({lie.what})",
        )


def check_quiet(world: World) -> None:
    """After quiet: STORED entries match holdings, nothing held unreferenced, DISPERSED has a holder."""
    devices = world.devices
    index_of = world.index_of
    referenced: set[tuple[str, str]] = set()
    # A liar's own list is whatever its lies made of it, and what honest cards hold for it
    # is room it asked for (bounded by each holder's per-peer share): neither is judged.
    liar = devices[world.liar.index].device_id if world.liar is not None else None
    for owner in devices:
        if owner.device_id == liar:
            continue
        stored_holders: dict[str, int] = {}
        for entry in owner.store.dispersion_list():
            referenced.add((entry.image_id, entry.holder))
            if entry.state != DispersalState.STORED:
                continue
            holder_index = index_of.get(entry.holder)
            holder = devices[holder_index] if holder_index is not None else None
            held = holder.store.held(entry.image_id) if holder is not None else None
            if holder is None or held is None or held.owner != owner.device_id:
                world.fail(
                    "dispersion-list",
                    f"{owner.name} lists {entry.image_id[:12]} as STORED at "
                    f"{holder.name if holder else entry.holder[:12]}, which does not hold it",
                )
                return
            if not holds_copy(world, holder, entry.image_id):
                world.fail("dispersion-list", f"{holder.name}'s held {entry.image_id[:12]} is not intact")
                return
            stored_holders[entry.image_id] = stored_holders.get(entry.image_id, 0) + 1
        for record in owner.store.images():
            if (
                record.origin == owner.device_id
                and record.where is Where.DISPERSED
                and not stored_holders.get(record.image_id)
            ):
                world.fail(
                    "dispersion-list",
                    f"{owner.name} freed {record.image_id[:12]} but no STORED holder is listed",
                )
                return
    for holder in devices:
        for held in holder.store.held_originals():
            if held.owner != liar and (held.image_id, holder.device_id) not in referenced:
                owner_index = index_of.get(held.owner)
                owner_name = devices[owner_index].name if owner_index is not None else held.owner[:12]
                world.fail(
                    "dispersion-list",
                    f"{holder.name} holds {held.image_id[:12]} for {owner_name}, whose list does not name it",
                )
                return


def marks_agree(world: World) -> None:
    """After quiet, every link up: every card holds exactly the marks editors made, each
    field's last writer's (issue 19: no newer mark lost, every device shows the same)."""
    if not world.scenario.marks or world.violation is not None:
        return
    if not all(conn.up for conn in world.connections.values()):
        world.metrics.count("end.marks_unjudged")  # a link still down: they cannot agree yet
        return
    made = {image_id: dict(marks) for image_id, marks in world.marks_made.items() if marks}
    for dev in world.devices:
        held = dev.store.all_stamped_marks()
        if held != made:
            wrong = sorted(i for i in made.keys() | held.keys() if held.get(i) != made.get(i))
            world.fail("marks-agree", f"{dev.name} holds other marks than editors made for "
                       f"{len(wrong)} pictures, first {wrong[0][:12]}: {held.get(wrong[0])} "
                       f"instead of {made.get(wrong[0])}")
            return
    world.metrics.count("end.marks_agree")


def missing_thumbnails(world: World) -> list[tuple[int, int]]:
    """(device, picture) pairs where a live device lacks a captured picture's thumbnail."""
    missing = []
    for dev in world.devices:
        if dev.node is None:
            continue
        for pic in world.pictures:
            if dev.store.image(pic.image_id) is None:
                missing.append((dev.index, pic.number))
    return missing


def missing_originals(world: World) -> list[tuple[int, int]]:
    """(desk, picture) pairs where a live desk that pulls every original has no copy of one."""
    if world.scenario.desk_policy != "all":
        return []
    missing = []
    for dev in world.devices:
        if dev.node is None or dev.index < world.scenario.cameras:
            continue
        for pic in world.pictures:
            if not holds_copy(world, dev, pic.image_id):
                missing.append((dev.index, pic.number))
    return missing
