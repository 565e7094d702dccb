"""The fault catalogue: what each scenario Step does to the world.

Crash: the Node is thrown away (volatile state lost), the card is kept but its
last partial write may be torn (``MemoryStore.crash``); a new Node boots on
the same card after the step's duration.  Partitions and vanishing devices
break connections and keep them from coming back until they heal.

A fault that ends later returns its second half as a :class:`FollowUp`; the world
schedules it and, when it is due, calls :func:`restart`, :func:`heal` or
:func:`reappear`.  So this module acts on the world through its public methods and
never needs to import it (World is named for the type checker only).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from protocol.store import DispersalState, Incoming
from sim import loss
from sim import scenario as sc
from storage.marks import merge

if TYPE_CHECKING:
    from sim.devices import Device
    from sim.world import World


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The second half of a fault, due at ``at``: a crashed device restarts, a partition heals
    (``subject`` is its mask), a vanished device reappears (``subject`` is its index)."""

    at: float
    kind: Literal["restart", "heal", "reappear"]
    subject: int


def apply(world: World, step: sc.Step) -> FollowUp | None:
    """Run one scenario step at the world's current time; what it sets off for later, if anything."""
    world.trace(f"{world.t!r} STEP {step.kind} {step.a} {step.b} {step.duration!r}\n")
    world.metrics.count(f"step.{step.kind}")
    if step.kind == sc.CRASH:
        return crash(world, step.a, step.duration)
    if step.kind == sc.BREAK:
        if step.a != step.b and 0 <= step.b < len(world.devices):
            world.break_link(step.a, step.b, "connection broke")
        return None
    if step.kind == sc.PARTITION:
        return partition(world, step.a, step.duration)
    if step.kind == sc.VANISH:
        return vanish(world, step.a, step.duration)
    if step.kind == sc.LOSE:
        loss.lose(world, step.a)
        return None
    user_action(world, step)
    return None


def crash(world: World, index: int, down_for: float) -> FollowUp | None:
    dev = world.devices[index]
    if dev.node is None:
        return None
    if any(e.state in (DispersalState.REQUESTED, DispersalState.ACCEPTED) for e in dev.store.dispersion_list()):
        world.metrics.count("crash.mid_dispersal")
    if any(dev.store.partial_offset(p.image_id, Incoming.HELD) for p in world.pictures):
        world.metrics.count("crash.holding_partial")
    dev.node = None
    dev.up = False
    for conn in list(world.links_of[index]):
        world.break_link(conn.a, conn.b, "peer crashed")
    torn = dev.store.crash(dev.rng)
    if torn:
        world.metrics.count("crash.torn_write")
    world.trace(f"{world.t!r} CRASH {index} {bool(torn)}\n")
    return FollowUp(world.t + max(down_for, 0.001), "restart", index)


def restart(world: World, index: int) -> None:
    dev = world.devices[index]
    dev.boot()
    world.metrics.count("restarts")
    world.trace(f"{world.t!r} RESTART {index}\n")
    world.call(dev, "boot", lambda: None)
    reconnect_all(world, index)


def reconnect_all(world: World, index: int) -> None:
    for other in range(len(world.devices)):
        if other != index and world.can_connect(index, other):
            world.schedule_connect(index, other)


def partition(world: World, mask: int, duration: float) -> FollowUp:
    n = len(world.devices)
    mask &= (1 << n) - 1
    world.partition = mask
    for key in sorted(world.connections):
        a, b = key
        if bool(mask >> a & 1) != bool(mask >> b & 1):
            world.break_link(a, b, "network partition")
    return FollowUp(world.t + duration, "heal", mask)


def heal(world: World, mask: int) -> None:
    if world.partition != mask:
        return  # a later partition replaced this one; its own heal will come
    world.partition = None
    world.trace(f"{world.t!r} HEAL\n")
    for key in sorted(world.connections):
        if world.can_connect(*key):
            world.schedule_connect(*key)


def vanish(world: World, index: int, duration: float) -> FollowUp | None:
    dev = world.devices[index]
    if not dev.discoverable:
        return None
    dev.discoverable = False
    for conn in list(world.links_of[index]):
        world.break_link(conn.a, conn.b, "out of range")
    return FollowUp(world.t + duration, "reappear", index)


def reappear(world: World, index: int) -> None:
    world.devices[index].discoverable = True
    world.trace(f"{world.t!r} REAPPEAR {index}\n")
    reconnect_all(world, index)


def user_action(world: World, step: sc.Step) -> None:
    """Read-out, collect, refuse, request: what a photographer or an editor asks for."""
    dev = world.devices[step.a]
    node = dev.node
    if node is None:
        return
    now = dev.clock(world.t)
    if step.kind == sc.COLLECT:
        ids = sorted({e.image_id for e in dev.store.dispersion_list() if e.state == DispersalState.STORED})
        if ids:
            world.call(dev, "collect", lambda: node.collect(ids, now))
        return
    if not world.pictures:
        return
    pic = world.pictures[step.b % len(world.pictures)]
    if dev.store.image(pic.image_id) is None:
        return  # this device has not even seen the thumbnail yet
    if step.kind == sc.READOUT:
        if pic.image_id in dev.readouts:
            return
        dev.readouts[pic.image_id] = bytearray()
        wait_s = step.duration or None  # a read-out that may wait for its holder to come back
        world.call(dev, "read_out", lambda: node.read_out(pic.image_id, now, wait_s=wait_s))
    elif step.kind == sc.REFUSE:
        world.call(dev, "refuse", lambda: node.refuse(pic.image_id, now))
    elif step.kind == sc.REQUEST:
        world.call(dev, "request", lambda: node.request(pic.image_id, now))
    elif step.kind == sc.MARK:
        mark(world, dev, pic.image_id, step)


def mark(world: World, dev: Device, image_id: str, step: sc.Step) -> None:
    """An editor marks a picture on ``dev``: the card keeps it, the node sends it on."""
    node = dev.node
    assert node is not None
    now = dev.clock(world.t)
    fields = marks_for(world.scenario.seed, step)
    dev.store.set_marks(image_id, now=now, **fields)
    world.marks_made[image_id] = merge(world.marks_made.get(image_id, {}),
                                       dev.store.stamped_marks(image_id))
    world.trace(f"{world.t!r} MARK {dev.index} {image_id} {sorted(fields)}\n")
    world.call(dev, "marked", lambda: node.marked(image_id, now))


def marks_for(seed: int, step: sc.Step) -> dict[str, object]:
    """The marks a MARK step sets, drawn from the step itself (its own random: replayable)."""
    rng = random.Random(f"mark:{seed}:{step.at!r}:{step.a}:{step.b}")
    choices: dict[str, object] = {
        "rating": rng.choice([None, 0, 1, 2, 3, 4, 5]),
        "color": rng.choice([None, *range(1, 9)]),
        "tagged": rng.random() < 0.5,
        "caption": f"caption {rng.randrange(1000)} by device {step.a}",
        "keywords": tuple(f"k{rng.randrange(20)}" for _ in range(rng.randrange(3))),
    }
    names = rng.sample(sorted(choices), rng.randint(1, 3))
    return {name: choices[name] for name in sorted(names)}
