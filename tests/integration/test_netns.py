"""Two network namespaces joined by a tbf-shaped veth pair: mDNS across it, then sync.

Issue 4, "Must show" 2.  Needs root and ``ip netns``; skips with the reason otherwise.
The namespaces are removed even when the test fails.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.desk_demo import DeviceSpec, make_mesh
from protocol.messages import Role
from storage.card import Card
from storage.importer import import_paths
from tests.integration.devices import LinkEnd, shaped_link, why_no_netns
from tests.integration.nodes import NodeProcess, first_index, ids_where, wait_until, write_pictures

pytestmark = [pytest.mark.integration, pytest.mark.netns]

RATE_MBIT = 8  # slow enough that the shaping shows, fast enough for CI


@pytest.fixture
def shaped_pair() -> Iterator[tuple[LinkEnd, LinkEnd]]:
    """Two namespaces, a veth pair between them shaped to RATE_MBIT with tbf, both ways."""
    why = why_no_netns()
    if why is not None:
        pytest.skip(why)
    with shaped_link(RATE_MBIT, subnet="10.78.0", latency_ms=50) as sides:
        yield sides


def test_discovery_over_multicast_then_sync_across_a_shaped_link(
    tmp_path: Path, shaped_pair: tuple[LinkEnd, LinkEnd]
) -> None:
    spaces = tuple(side.netns for side in shaped_pair)
    devices = tuple(side.device for side in shaped_pair)
    addresses = tuple(side.address for side in shaped_pair)
    a, b = make_mesh(tmp_path, [DeviceSpec("a", Role.CAMERA), DeviceSpec("b", Role.CAMERA)])
    with Card.open(a) as card:
        summary = import_paths(card, write_pictures(tmp_path / "pics", 3, side=1200, seed=8),
                               now=1_700_000_000.0)
    ids = {item.image_id for item in summary.imported}
    # No --peer: the only way to meet is mDNS over the veth, from one namespace to the other.
    nodes = [
        NodeProcess(card, [f"--listen={ip}:0", f"--interface={ip}"], netns=ns)
        for card, ns, ip in zip((a, b), spaces, addresses, strict=True)
    ]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        sender, receiver = nodes
        found = wait_until("b to find a by mDNS", lambda: [
            e for e in receiver.events() if e["event"] == "PeerFound"])
        assert found[0]["host"] == addresses[0]
        wait_until("every original at b", lambda: ids_where(receiver, "local") == ids)
        events = receiver.events()
        for image_id in ids:
            assert first_index(events, "ThumbnailArrived", image_id) < first_index(
                events, "OriginalArrived", image_id)
        # The originals crossed a's shaped veth: its tbf counted at least their bytes.
        sizes = sum(r["size"] for r in receiver.images().values())
        assert shaped_bytes(spaces[0], devices[0]) >= sizes
        assert [p["peer_id"] for p in sender.ask({"op": "status"})["peers"]] == [
            receiver.ask({"op": "status"})["device_id"]]
    finally:
        for node in nodes:
            node.stop()


def shaped_bytes(ns: str, dev: str) -> int:
    """Bytes the tbf qdisc on ``dev`` has sent (``tc -s qdisc``)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", dev],
                         capture_output=True, text=True, check=True).stdout
    words = out.split()
    return int(words[words.index("Sent") + 1])
