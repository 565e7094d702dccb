"""Two and three real `cammesh node` processes on loopback: real TLS, real mDNS, real SIGKILL.

Issue 4, "Must show" 1.  Orderings are read from each node's structured log (the order
in which its node emitted events) and from `ls` timestamps; every wait is a bounded poll.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest

from mesh.desk_demo import DeviceSpec, make_mesh
from protocol.messages import Limits, Role
from protocol.store import Incoming
from storage.card import Card
from storage.importer import import_paths
from storage.samples import write_sample_jpegs
from tests.integration.nodes import (
    NodeProcess,
    first_index,
    ids_where,
    wait_until,
    write_pictures,
)

pytestmark = pytest.mark.integration


def cards(tmp_path: Path, *names: str) -> list[Path]:
    return make_mesh(tmp_path, [DeviceSpec(n, Role.CAMERA) for n in names])


def import_into(card: Path, files: list[Path]) -> list[str]:
    with Card.open(card) as opened:
        summary = import_paths(opened, files, now=1_700_000_000.0)
    return [item.image_id for item in summary.imported]


def start(nodes: list[NodeProcess], card: Path, *extra: str) -> NodeProcess:
    """Start a node on loopback; no --peer: the nodes find each other by mDNS only."""
    node = NodeProcess(card, ["--listen", "127.0.0.1:0", "--interface", "127.0.0.1", *extra])
    node.start()
    node.wait_ready()
    nodes.append(node)
    return node


def assert_thumbnails_first(node: NodeProcess, image_ids: set[str]) -> None:
    """At ``node``, every picture's thumbnail arrived before its original."""
    events = node.events()
    images = node.images()
    for image_id in image_ids:
        thumb = first_index(events, "ThumbnailArrived", image_id)
        original = first_index(events, "OriginalArrived", image_id, purpose="sync")
        assert thumb is not None and original is not None, (node.card.name, image_id[:12])
        assert thumb < original, f"{image_id[:12]}: original before thumbnail at {node.card.name}"
        record = images[image_id]
        assert record["thumbnail_at"] is not None and record["original_at"] is not None
        assert record["thumbnail_at"] <= record["original_at"]


@pytest.mark.parametrize("count", [2, 3])
def test_every_peer_gets_every_thumbnail_before_its_original(
    tmp_path: Path, nodes: list[NodeProcess], count: int
) -> None:
    names = ["a", "b", "c"][:count]
    paths = cards(tmp_path, *names)
    own: dict[str, set[str]] = {}
    for seed, (name, card) in enumerate(zip(names, paths, strict=True), start=1):
        own[name] = set(import_into(card, write_sample_jpegs(tmp_path / f"pics-{name}", 3, seed=seed)))
    everything = set().union(*own.values())
    running = [start(nodes, card) for card in paths]
    for node in running:
        wait_until(f"every original at {node.card.name}",
                   lambda node=node: ids_where(node, "local") == everything)
    for name, node in zip(names, running, strict=True):
        assert_thumbnails_first(node, everything - own[name])
        # Each peer's link is up, authenticated by pinned TLS, after mDNS found every peer.
        peers = node.ask({"op": "peers"})["peers"]
        assert len(peers) == count - 1 and all(p["connected"] for p in peers)
        ids = {p["device_id"] for p in peers}
        wait_until(f"{node.card.name} to have found every peer by mDNS", lambda node=node, ids=ids: {
            e["peer"] for e in node.events() if e["event"] == "PeerFound"} == ids)


def test_a_new_picture_overtakes_a_large_original(tmp_path: Path, nodes: list[NodeProcess]) -> None:
    a, b = cards(tmp_path, "a", "b")
    source = write_pictures(tmp_path / "large", 1, side=2400, seed=3)[0]
    (large,) = import_into(a, [source])
    total = source.stat().st_size
    sender = start(nodes, a, "--rate", f"{max(total // 4, 200_000)}")  # about 4 s for the original
    receiver = start(nodes, b)
    wait_until("the large original to be under way",
               lambda: any(i["image_id"] == large for i in receiver.ask({"op": "status"})["incoming"]))
    new = write_sample_jpegs(tmp_path / "new", 1, seed=9)
    answer = sender.ask({"op": "import", "paths": [str(new[0])]})
    (fresh,) = [item["image_id"] for item in answer["summary"]["imported"]]
    wait_until("both originals at b", lambda: ids_where(receiver, "local") >= {large, fresh})
    events = receiver.events()
    thumb = first_index(events, "ThumbnailArrived", fresh)
    started = first_index(events, "TransferStarted", large)
    finished = first_index(events, "OriginalArrived", large)
    assert thumb is not None and started is not None and finished is not None
    assert started < thumb < finished, "the new thumbnail waited for the large original"
    images = receiver.images()
    assert images[fresh]["thumbnail_at"] < images[large]["original_at"]
    assert_thumbnails_first(receiver, {large, fresh})


def test_request_first_refusal_and_smaller_copy(tmp_path: Path, nodes: list[NodeProcess]) -> None:
    a, b = cards(tmp_path, "a", "b")
    ids = import_into(a, write_pictures(tmp_path / "pics", 6, side=1200, seed=4))
    sender = start(nodes, a, "--rate", "400000")  # about 2 s per picture
    receiver = start(nodes, b)

    def started() -> list[str]:
        return [e["image_id"] for e in receiver.events() if e["event"] == "TransferStarted"]

    first = wait_until("a background original to start", started)[0]
    waiting = [i for i in ids if i not in started()]
    target, refused, smaller = waiting[-1], waiting[-2], waiting[-3]
    receiver.ask({"op": "refuse", "id": refused})
    receiver.ask({"op": "request", "id": target})
    receiver.ask({"op": "request", "id": smaller, "max_side": 320, "quality": 70})
    everything_else = set(ids) - {refused}
    wait_until("every original but the refused one",
               lambda: ids_where(receiver, "local") >= everything_else)
    events = receiver.events()
    # Request first (FIG. 10, S63): the requested original overtook the one being sent.
    assert first_index(events, "OriginalArrived", target) < first_index(
        events, "OriginalArrived", first)
    # The smaller copy came as its own stream, recompressed, well under the original's size.
    copy = first_index(events, "OriginalArrived", smaller, purpose="smaller")
    assert copy is not None
    copy_total = next(e["total"] for e in events
                      if e["event"] == "TransferStarted" and e["image_id"] == smaller
                      and e["purpose"] == "smaller")
    assert copy_total < receiver.images()[smaller]["size"] // 2
    # Refusal (FIG. 13B): the sender has nothing left for us, and the original never came.
    wait_until("the sender's queue to empty", lambda: all(
        p["queues"]["bytes_pending"] == 0 for p in sender.ask({"op": "status"})["peers"]))
    assert receiver.images()[refused]["where"] == "absent"
    assert first_index(receiver.events(), "OriginalArrived", refused) is None
    assert_thumbnails_first(receiver, everything_else)


def large_transfer(tmp_path: Path, nodes: list[NodeProcess], seed: int) -> tuple[
    NodeProcess, NodeProcess, Path, str, int
]:
    """a sends b one picture of about 3 MB at a sixth of its size per second."""
    a, b = cards(tmp_path, "a", "b")
    source = write_pictures(tmp_path / "large", 1, side=2400, seed=seed)[0]
    (large,) = import_into(a, [source])
    total = source.stat().st_size
    sender = start(nodes, a, "--rate", f"{max(total // 6, 200_000)}")
    receiver = start(nodes, b)
    return sender, receiver, source, large, total


def progress_at(node: NodeProcess, image_id: str, at_least: int) -> int:
    for item in node.ask({"op": "status"})["incoming"]:
        if item["image_id"] == image_id and item["done"] >= at_least:
            return int(item["done"])
    return 0


def assert_same_bytes(node: NodeProcess, image_id: str, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "got.jpg"
    node.ask({"op": "get", "id": image_id, "path": str(out)})
    assert hashlib.sha256(out.read_bytes()).hexdigest() == image_id == hashlib.sha256(
        source.read_bytes()).hexdigest()


def test_sigkill_of_the_sender_mid_original_resumes_from_the_offset(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    sender, receiver, source, large, total = large_transfer(tmp_path, nodes, seed=5)
    before = wait_until("a third of the original at b",
                        lambda: progress_at(receiver, large, total // 3))
    sender.kill(signal.SIGKILL)
    wait_until("b to see the link go", lambda: not receiver.ask({"op": "peers"})["peers"][0]["connected"])
    sender.start()
    sender.wait_ready()
    wait_until("the original at b after the restart", lambda: large in ids_where(receiver, "local"))
    streams = [e["done"] for e in receiver.events()
               if e["event"] == "TransferStarted" and e["image_id"] == large]
    assert len(streams) == 2, "expected one stream before the kill and one after"
    # The stream after the restart began where the kept partial ended, not at zero:
    # its first chunk ended past what b had before the kill (a from-zero restart would
    # end its first chunk at or below Limits.MAX_CHUNK, far below a third of the picture).
    assert streams[1] > before > Limits.MAX_CHUNK
    assert_same_bytes(receiver, large, source, tmp_path)


def test_sigkill_of_the_receiver_mid_original_resumes_from_its_partial(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    _, receiver, source, large, total = large_transfer(tmp_path, nodes, seed=6)
    wait_until("a third of the original at b", lambda: progress_at(receiver, large, total // 3))
    receiver.kill(signal.SIGKILL)
    with Card.open(receiver.card) as card:  # the card lock died with the process
        offset = card.partial_offset(large, Incoming.ORIGINAL)
    assert offset >= total // 3, "the bytes b had received were not durable"
    receiver.start()
    receiver.wait_ready()
    wait_until("the original at b after the restart", lambda: large in ids_where(receiver, "local"))
    resumed = [e for e in receiver.events(run=2)
               if e["event"] == "TransferStarted" and e["image_id"] == large]
    assert resumed and offset < resumed[0]["done"] <= offset + Limits.MAX_CHUNK
    assert_same_bytes(receiver, large, source, tmp_path)


async def test_devices_paired_with_a_code_find_each_other_and_sync(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    """The whole field story with F's real pairing (SPAKE2 on a short code), not pre-made pins."""
    import trio

    from mesh.card_commands import init_card
    from mesh.identity import Identity
    from mesh.pairing import create_mesh, join_mesh, new_pairing_code, serve_pairing

    a, b = tmp_path / "a", tmp_path / "b"
    for card in (a, b):
        init_card(card, name=f"cam {card.name}", capacity=2 * 1024**3, role="camera",
                  reserve=None).close()
    create_mesh(a)
    code = new_pairing_code()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(lambda task_status: serve_pairing(
            Identity.load(a), a, code, role=Role.CAMERA, host="127.0.0.1", port=0,
            max_joins=1, task_status=task_status))
        port = listeners[0].socket.getsockname()[1]
        await join_mesh(Identity.load(b), b, code, role=Role.CAMERA, host="127.0.0.1", port=port)
    ids = set(import_into(a, write_sample_jpegs(tmp_path / "pics", 2, seed=12)))
    for card in (a, b):
        start(nodes, card)
    wait_until("a's originals at b", lambda: ids_where(nodes[1], "local") == ids)
    assert_thumbnails_first(nodes[1], ids)
