"""A device lost for good (``LOSE``): it never restarts, and every live owner repairs it away.

The card is not wiped: the invariants still count what is on it (a lost camera may be
found), but no node runs on it again, so what its owners dispersed to it must be copied
to new holders from another copy (``Node.repair``; ``replicas`` >= 2 loses nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.world import World


def lose(world: World, index: int) -> None:
    """Take device ``index`` away for good; a device already down stays as it is."""
    dev = world.devices[index]
    if dev.node is None:
        return  # down already (crashed): its restart is on its way and is not undone
    dev.node = None
    dev.up = False  # never connects again: no restart is scheduled
    for conn in list(world.links_of[index]):
        world.break_link(conn.a, conn.b, "lost for good")
    world.trace(f"{world.t!r} LOST {index}\n")
    world.metrics.count("lost")
    for other in world.devices:
        node = other.node
        if node is not None:
            now = other.clock(world.t)
            world.call(other, "repair", lambda n=node, t=now: n.repair(dev.device_id, t))  # type: ignore[misc]
