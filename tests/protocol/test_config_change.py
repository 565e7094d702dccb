"""A config changed while the node runs (the runtime's set_high_water) reaches every machine.

Found by `cammesh demo`: after the sub-machines took their own config, raising the mark left
the collections machine on the old one, so "room made" was followed by "no room" for good.
"""

from __future__ import annotations

import dataclasses
import typing

from protocol import effects as fx
from protocol import events as ev
from protocol.store import Where
from tests.protocol.test_conversations import full_camera_mesh


def test_raising_the_mark_at_run_time_lets_a_collection_come_home() -> None:
    mesh, ids = full_camera_mesh()
    cam = mesh.devices["cam"]
    oldest = ids[0]
    assert cam.store.image(oldest).where is Where.DISPERSED  # type: ignore[union-attr]
    cam.node.config = dataclasses.replace(cam.node.config, high_water=0.95)  # no restart
    mesh.call(cam, lambda: cam.node.collect([oldest], mesh.now))
    mesh.pump()
    assert not any("no room" in getattr(e, "reason", "") for e in cam.of(ev.CollectFailed))
    assert cam.store.image(oldest).where is Where.LOCAL  # type: ignore[union-attr]
    assert cam.of(ev.Collected)


def test_every_machine_holds_the_node_s_config_after_a_change() -> None:
    mesh, _ = full_camera_mesh()
    node = mesh.devices["cam"].node
    node.config = dataclasses.replace(node.config, high_water=0.9)
    machines = {name: part for name, part in vars(node).items() if hasattr(part, "config")}
    assert len(machines) >= 10, sorted(machines)
    stale = sorted(name for name, part in machines.items() if part.config is not node.config)
    assert not stale, f"these machines kept the old config: {stale}"


def test_every_notice_a_machine_may_tell_has_a_route() -> None:
    """A notice type added to protocol.effects.Notice without a route in Node._routes would
    fail only at run time (a KeyError in Node.apply), the first time a machine told it."""
    node = full_camera_mesh()[0].devices["cam"].node
    notices = set(typing.get_args(fx.Notice))
    assert len(notices) >= 19, notices
    unrouted = sorted(n.__name__ for n in notices - set(node._routes))
    assert not unrouted, f"no machine hears these notices: {unrouted}"
