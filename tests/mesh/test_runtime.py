"""The runtime and its control API in one process: real cards, real TLS on loopback, no mDNS."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from mesh.control import ask
from mesh.daemon import run_node
from mesh.desk_demo import DeviceSpec, make_mesh, runtime_for
from mesh.errors import MeshError, ReadOutError
from mesh.runtime import Address, Runtime
from mesh.transport import MemoryNetwork
from protocol import events as ev
from protocol.messages import Role
from storage.card import Card
from storage.samples import write_sample_jpegs

WAIT_S = 60.0


async def control(card: Path, request: dict[str, Any]) -> dict[str, Any]:
    return await trio.to_thread.run_sync(lambda: ask(card, request, timeout=WAIT_S))


async def eventually(check: Any, what: str) -> Any:
    with trio.fail_after(WAIT_S):
        while not (value := await check()):
            await trio.sleep(0.05)
    return value


@asynccontextmanager
async def two_nodes(
    tmp_path: Path, *, watch: Path | None = None, watch_mode: str = "auto",
    network: MemoryNetwork | None = None,
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """a and b running and linked; c is paired with both but not running.  With ``network``
    they link over that in-memory transport (mesh/transport.py), not TLS on loopback."""
    a, b, _ = make_mesh(tmp_path, [DeviceSpec(n, Role.CAMERA) for n in "abc"])
    with Card.open(a) as card_a, Card.open(b) as card_b:
        ra = runtime_for(a, card_a)
        if network is not None:
            ra.transport = network.transport(ra.identity, ra.membership)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: run_node(
                ra, discovery=False, watch=watch, watch_mode=watch_mode, task_status=task_status))
            host = "127.0.0.1" if network is None else "memory"
            rb = runtime_for(b, card_b, peers=[Address(host, port)])
            if network is not None:
                rb.transport = network.transport(rb.identity, rb.membership)
            await nursery.start(lambda task_status: run_node(
                rb, discovery=False, task_status=task_status))
            await eventually(lambda: _ready(ra, rb), "the link")
            yield ra, rb
            nursery.cancel_scope.cancel()


async def _ready(*runtimes: Runtime) -> bool:
    for rt in runtimes:
        peers = await rt.call(rt.node.peers)
        if not peers or not all(view.ready for view in peers.values()):
            return False
    return True


async def local_ids(card: Path) -> set[str]:
    images = (await control(card, {"op": "ls"}))["images"]
    return {i["image_id"] for i in images if i["where"] == "local"}


async def test_import_through_the_node_reaches_the_peer_and_get_reads_it_back(
    tmp_path: Path,
) -> None:
    pictures = write_sample_jpegs(tmp_path / "pics", 2, seed=3)
    async with two_nodes(tmp_path) as (ra, rb):
        seen: list[ev.NodeEvent] = []
        rb.subscribe(seen.append)
        # The card is held by the running node: `cammesh import` must go through it.
        with pytest.raises(Exception, match="in use by another process"):
            Card.open(ra.card_path)
        answer = await control(ra.card_path, {"op": "import", "paths": [str(p) for p in pictures]})
        ids = {item["image_id"] for item in answer["summary"]["imported"]}
        assert len(ids) == 2
        await eventually(lambda: _has(rb.card_path, ids), "both originals at b")
        arrivals = [(type(e).__name__, e.image_id) for e in seen
                    if isinstance(e, ev.ThumbnailArrived | ev.OriginalArrived)]
        for image_id in ids:
            assert arrivals.index(("ThumbnailArrived", image_id)) < arrivals.index(
                ("OriginalArrived", image_id))
        status = await control(rb.card_path, {"op": "status"})
        assert [p["peer_id"] for p in status["peers"]] == [ra.identity.device_id]
        peers = await control(rb.card_path, {"op": "peers"})
        connected = {p["name"]: p["connected"] for p in peers["peers"]}
        assert connected == {"a": True, "c": False}  # c is paired but not running
        image_id = sorted(ids)[0]
        out = tmp_path / "copy.jpg"
        await control(rb.card_path, {"op": "get", "id": image_id[:10], "path": str(out)})
        assert hashlib.sha256(out.read_bytes()).hexdigest() == image_id


async def test_control_answers_say_what_the_node_did(tmp_path: Path) -> None:
    """The control socket answers from the node inputs' returns (protocol/outcomes.py), over
    the in-memory transport: the subject here is the answers, not TLS."""
    pictures = write_sample_jpegs(tmp_path / "pics", 1, seed=4)
    async with two_nodes(tmp_path, network=MemoryNetwork()) as (ra, rb):
        answer = await control(ra.card_path, {"op": "import", "paths": [str(p) for p in pictures]})
        (image_id,) = [item["image_id"] for item in answer["summary"]["imported"]]
        await eventually(lambda: _has(rb.card_path, {image_id}), "the original at b")
        here = await control(rb.card_path, {"op": "request", "id": image_id})
        assert (here["id"], here["outcome"]) == (image_id, "already_here")
        smaller = await control(rb.card_path, {"op": "request", "id": image_id, "max_side": 64})
        assert (smaller["outcome"], smaller["peer"], smaller["peer_name"]) == (
            "requested", ra.identity.device_id, "a")
        refused = await control(rb.card_path, {"op": "refuse", "id": image_id})
        assert refused["outcome"] == "not_needed" and refused["told"] == [ra.identity.device_id]
        # Ours and here: nothing to collect; b's copy of it is not b's to collect.
        home = await control(ra.card_path, {"op": "collect", "ids": [image_id]})
        assert (home["ids"], home["refused"], home["pending"]) == ([image_id], [], [])
        theirs = await control(rb.card_path, {"op": "collect", "ids": [image_id]})
        assert theirs["ids"] == [] and "not a picture of this card" in theirs["refused"][0]["reason"]
        # A read-out that fails says so at once, from the call: no event is waited for.
        with trio.fail_after(5), pytest.raises(ReadOutError, match="no picture with that id"):
            await ra.read_out("ab" * 32, lambda offset, data: None)


async def _has(card: Path, ids: set[str]) -> bool:
    return ids <= await local_ids(card)


async def test_a_bad_control_request_is_answered_and_the_node_keeps_running(
    tmp_path: Path,
) -> None:
    async with two_nodes(tmp_path, network=MemoryNetwork()) as (ra, _):
        for request, reason in (
            ({"op": "request", "id": "ffff"}, "no picture"),
            ({"op": "nonsense"}, "unknown control request"),
            ({"op": "import", "paths": ["relative.jpg"]}, "absolute"),
        ):
            with pytest.raises(MeshError, match=reason):
                await control(ra.card_path, request)
        assert (await control(ra.card_path, {"op": "status"}))["ok"]


async def test_files_appearing_in_a_watched_folder_become_captures(tmp_path: Path) -> None:
    dcim = tmp_path / "DCIM"
    source = write_sample_jpegs(tmp_path / "camera", 1, seed=4)[0]
    async with two_nodes(tmp_path, watch=dcim) as (_, rb):
        shutil.copy(source, dcim / source.name)
        image_id = hashlib.sha256(source.read_bytes()).hexdigest()
        await eventually(lambda: _has(rb.card_path, {image_id}), "the watched picture at b")


async def test_the_live_view_shows_peers_queues_and_transfers_coming_in(tmp_path: Path) -> None:
    from rich.console import Console

    from mesh.status_view import render_status

    async with two_nodes(tmp_path) as (ra, rb):
        status = await control(rb.card_path, {"op": "status"})
    status["incoming"] = [{"peer": ra.identity.device_id, "image_id": "ab" * 32,
                           "purpose": "sync", "done": 3_000_000, "total": 12_000_000}]
    console = Console(record=True, width=140)
    console.print(render_status(status))
    text = console.export_text()
    # The peer by its name alone: its id would show only if another device were also "a".
    assert re.search(r"^\s*a\s+ready", text, re.MULTILINE), text
    assert ra.identity.short_id not in text
    assert "abababababab (sync) from a" in text and "3.0 MB / 12.0 MB" in text


async def test_a_peer_breaking_the_protocol_is_told_why_and_cut_off_alone(tmp_path: Path) -> None:
    from mesh import tls
    from mesh.identity import Identity
    from mesh.pairing import load_membership
    from protocol.codec import FrameDecoder
    from protocol.messages import Error

    async with two_nodes(tmp_path) as (ra, rb):
        seen: list[ev.NodeEvent] = []
        ra.subscribe(seen.append)
        # c (paired, so TLS lets it in) connects and sends garbage frames.
        c = tmp_path / "c"
        stream = await tls.connect(Identity.load(c), load_membership(c), "127.0.0.1",
                                   ra.port or 0, expect=ra.identity.device_id)
        await stream.send_all(b"\x00\x00\x00\x10" + b"\xc1" * 16)
        decoder = FrameDecoder()
        with trio.fail_after(WAIT_S):
            while data := await stream.receive_some():
                decoder.feed(data)
        messages = []
        while (msg := decoder.next_message()) is not None:
            messages.append(msg)
        assert isinstance(messages[-1], Error)
        await stream.aclose()
        # a still runs, c is cut off, and the link to b was never disturbed.
        async def only_b() -> bool:
            status = await control(ra.card_path, {"op": "status"})
            return [p["peer_id"] for p in status["peers"]] == [rb.identity.device_id]

        await eventually(only_b, "c's link to close")
        gone = [e for e in seen if isinstance(e, ev.PeerGone)]
        assert [e.peer for e in gone] == [Identity.load(c).device_id]
        assert "protocol error" in gone[0].reason


async def test_the_high_water_mark_changes_for_the_runtime_and_its_node(tmp_path: Path) -> None:
    from protocol.errors import CammeshError

    (path,) = make_mesh(tmp_path, [DeviceSpec("a", Role.CAMERA)])
    with Card.open(path) as card:
        rt = runtime_for(path, card)
        await rt.set_high_water(0.5)
        assert rt.config.high_water == rt.node.config.high_water == 0.5
        # Every machine of the node sees it (Node.config's setter), not only the node itself.
        held = [name for name, part in vars(rt.node).items()
                if hasattr(part, "config") and part.config is not rt.node.config]
        assert held == [], f"machines still on the old config: {held}"
        assert rt.config.name == "a"  # only the mark changed
        with pytest.raises(CammeshError, match="high_water"):
            await rt.set_high_water(1.5)
        assert rt.node.config.high_water == 0.5


@pytest.mark.parametrize("end", [
    ev.HeldStored("ab" * 32, "cd" * 32),
    ev.Collected("ab" * 32, "cd" * 32),
    ev.ReadOutDone("ab" * 32, "ab" * 32),
    ev.ReadOutFailed("ab" * 32, "the holder went away"),
])
def test_a_stream_that_ends_without_original_arrived_leaves_the_progress_list(
    tmp_path: Path, end: ev.NodeEvent
) -> None:
    from protocol.messages import Purpose

    (path,) = make_mesh(tmp_path, [DeviceSpec("a", Role.CAMERA)])
    with Card.open(path) as card:
        rt = runtime_for(path, card)
        for image_id in ("ab" * 32, "ef" * 32):
            rt._dispatch(ev.TransferProgress("cd" * 32, image_id, Purpose.SYNC, 10, 10))
        rt._dispatch(end)
        assert [key[1] for key in rt.incoming] == ["ef" * 32]


async def test_a_control_request_may_send_notes_before_its_answer(tmp_path: Path) -> None:
    from mesh.control import serve_control

    (path,) = make_mesh(tmp_path, [DeviceSpec("a", Role.CAMERA)])

    async def handle(request: dict[str, Any], note: Any) -> dict[str, Any]:
        await note("still waiting for desk")
        await note("desk is back")
        return {"ok": True, "echo": request["op"]}

    notes: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, handle)
        answer = await trio.to_thread.run_sync(
            lambda: ask(path, {"op": "get"}, timeout=WAIT_S, on_note=notes.append))
        plain = await control(path, {"op": "status"})  # a client taking no notes
        nursery.cancel_scope.cancel()
    assert answer == {"ok": True, "echo": "get"}
    assert plain["echo"] == "status"
    assert notes == ["still waiting for desk", "desk is back"]


@pytest.mark.parametrize("over", ["tls", "memory"])
async def test_writers_pull_only_for_peers_the_node_has_frames_for(
    tmp_path: Path, over: str
) -> None:
    """As sim/ does: a writer is woken only when ``sending_peers`` names its peer, and does not
    pull again when ``may_send`` says there is nothing more, so an idle link costs no pulls
    even while the timers and pings go on (issue 15, mesh/).  A writer woken after every node
    call (each tick) would make one empty pull per tick: counted here, per writer hop."""
    pictures = write_sample_jpegs(tmp_path / "pics", 1, seed=5)
    network = MemoryNetwork() if over == "memory" else None
    async with two_nodes(tmp_path, network=network) as (ra, rb):
        pulls: list[bool] = []  # one per next_frame call on a: did it find a frame?
        hops: list[bool] = []  # one per writer's pull (a thread hop): did it bring bytes?
        next_frame, pull = ra.node.next_frame, ra._pumps._pull

        def counted(peer_id: str, now: float) -> bytes | None:
            frame = next_frame(peer_id, now)
            pulls.append(frame is not None)
            return frame

        def counted_pull(peer_id: str) -> tuple[bytes, bool]:
            batch, more = pull(peer_id)
            hops.append(bool(batch))
            return batch, more

        ra.node.next_frame = counted  # type: ignore[method-assign]
        ra._pumps._pull = counted_pull  # type: ignore[method-assign]
        await trio.sleep(3.0)  # idle: six timer ticks at least, each a waking node call
        assert pulls.count(False) == 0, f"{pulls.count(False)} pulls found nothing on an idle link"
        assert hops.count(False) <= 1, f"{hops.count(False)} writer hops found nothing while idle"
        # Work still goes out at once: a new picture's thumbnail reaches b.
        await control(ra.card_path, {"op": "import", "paths": [str(p) for p in pictures]})
        image_id = hashlib.sha256(pictures[0].read_bytes()).hexdigest()
        await eventually(lambda: _has(rb.card_path, {image_id}), "the picture at b")
        assert pulls.count(True) > 0 and pulls.count(False) <= 1
