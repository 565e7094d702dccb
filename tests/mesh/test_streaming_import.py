"""Pictures entering a running node are announced one by one, while the rest still copy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import trio

from protocol import events as ev
from storage.importer import Imported, Skipped
from storage.samples import write_sample_jpegs
from tests.mesh.test_runtime import two_nodes


async def test_the_first_thumbnail_reaches_the_peer_before_the_import_ends(
    tmp_path: Path,
) -> None:
    pictures = write_sample_jpegs(tmp_path / "pics", 4, seed=11)
    async with two_nodes(tmp_path) as (ra, rb):
        thumbnails: set[str] = set()
        arrived = trio.Event()

        def listener(event: ev.NodeEvent) -> None:
            if isinstance(event, ev.ThumbnailArrived):
                thumbnails.add(event.image_id)
                arrived.set()

        rb.subscribe(listener)
        order: list[str] = []

        async def progress(done: int, total: int, outcome: Imported | Skipped) -> None:
            assert isinstance(outcome, Imported)
            order.append(f"copied {done}")
            if done == 1:
                # The next file is not copied until the peer holds the first thumbnail:
                # a batch import (announce after all) would never get past this point.
                with trio.fail_after(30):
                    while outcome.image_id not in thumbnails:
                        await arrived.wait()
                order.append("thumbnail 1 at the peer")

        summary = await ra.import_pictures(pictures, progress=progress)
        assert len(summary.imported) == 4
        assert order.index("thumbnail 1 at the peer") < order.index("copied 4")


async def test_a_file_that_vanishes_or_shrinks_mid_copy_is_rejected_and_the_rest_imported(
    tmp_path: Path, monkeypatch: object
) -> None:
    import os

    import pytest

    from storage.files import CardFolder

    pictures = write_sample_jpegs(tmp_path / "pics", 3, seed=12)
    vanish, shrink = pictures[0], pictures[1]
    real = CardFolder.write_temp

    def meddling(self: CardFolder, chunks: object, limit: int, *, grew: object) -> object:
        def gen() -> object:
            for n, chunk in enumerate(chunks):  # type: ignore[attr-defined]
                if n == 0:  # mid-copy: the first chunk is read, the rest not yet
                    if vanish.exists() and limit == vanish_size:
                        os.unlink(vanish)
                    elif shrink.exists() and limit == shrink_size:
                        os.truncate(shrink, 100)
                yield chunk
        return real(self, gen(), limit, grew=grew)  # type: ignore[arg-type]

    vanish_size, shrink_size = vanish.stat().st_size, shrink.stat().st_size
    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(CardFolder, "write_temp", meddling)
    async with two_nodes(tmp_path) as (ra, _):
        summary = await ra.import_pictures(pictures)
    reasons = {Path(s.path).name: s.reason for s in summary.rejected}
    assert "vanished" in reasons[vanish.name]
    assert "changed size" in reasons[shrink.name]
    assert [Path(i.path).name for i in summary.imported] == [pictures[2].name]


async def test_a_peer_is_let_in_and_served_a_requested_original_while_an_import_runs(
    tmp_path: Path, monkeypatch: object
) -> None:
    """`cammesh import` of many files through the node; mid-way through one file's copy, a
    peer that was not there when it began connects, asks for an original and gets it."""
    import threading

    import pytest

    import storage.importer
    from mesh.daemon import run_node
    from mesh.desk_demo import DeviceSpec, make_mesh, runtime_for
    from mesh.runtime import Address
    from protocol.config import Policy
    from protocol.messages import Role
    from storage.card import Card
    from tests.mesh.test_runtime import control, eventually

    pictures = write_sample_jpegs(tmp_path / "pics", 6, seed=13)
    a, b = make_mesh(tmp_path, [DeviceSpec(n, Role.CAMERA) for n in "ab"])
    copying, served = threading.Event(), threading.Event()
    real = storage.importer._extract

    def held(path: Path) -> object:
        # The third file is copied and hashed, not yet adopted: hold it there until the peer
        # is served, so everything below happens while the import is mid-file.
        if path == pictures[2]:
            copying.set()
            assert served.wait(60), "the peer was not served while the import ran"
        return real(path)

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(storage.importer, "_extract", held)
    order: list[str] = []
    with Card.open(a) as card_a, Card.open(b) as card_b:
        ra = runtime_for(a, card_a)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: run_node(
                ra, discovery=False, task_status=task_status))

            async def import_all() -> None:  # what `cammesh import CARD FILES` sends
                answer = await control(a, {"op": "import", "paths": [str(p) for p in pictures]})
                order.append("import returned")
                assert len(answer["summary"]["imported"]) == len(pictures)

            nursery.start_soon(import_all)
            await trio.to_thread.run_sync(lambda: copying.wait(60))
            # Only now does the peer start: its handshake happens during the import.  It
            # pulls only what it asks for, so the original it gets is the one it requested.
            rb = runtime_for(b, card_b, peers=[Address("127.0.0.1", port)],
                             policy=Policy.REQUESTED)
            arrived: set[str] = set()
            rb.subscribe(lambda e: arrived.add(e.image_id)
                         if isinstance(e, ev.OriginalArrived) else None)
            await nursery.start(lambda task_status: run_node(
                rb, discovery=False, task_status=task_status))
            wanted = hashlib.sha256(pictures[0].read_bytes()).hexdigest()

            async def has_thumbnail() -> bool:
                return await rb.call(card_b.image, wanted) is not None

            await eventually(has_thumbnail, "the first picture's thumbnail at b")
            order.append("handshake")
            await rb.call(rb.node.request, wanted, rb.now())
            await eventually(lambda: _true(wanted in arrived), "the requested original at b")
            order.append("requested original")
            served.set()
            with trio.fail_after(60):
                while "import returned" not in order:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert order == ["handshake", "requested original", "import returned"]
    assert arrived == {wanted}


async def _true(value: bool) -> bool:
    return value


async def test_the_next_file_is_copied_while_one_is_still_being_stored(
    tmp_path: Path, monkeypatch: object
) -> None:
    """Issue 13: a file's copy does not wait for the one before it to be stored; announcements
    keep the files' order."""
    import threading

    import pytest

    import storage.importer

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    pictures = write_sample_jpegs(tmp_path / "pics", 3, seed=13)
    real = storage.importer._extract
    second_began = threading.Event()
    overlapped: list[bool] = []

    def extract(path: Path) -> object:
        if path == pictures[0]:  # the first file, copied, not yet stored: is the next copying?
            overlapped.append(second_began.wait(timeout=20))
        elif path == pictures[1]:
            second_began.set()
        return real(path)

    monkeypatch.setattr(storage.importer, "_extract", extract)
    async with two_nodes(tmp_path) as (ra, _):
        captured: list[str] = []
        summary = await ra.import_pictures(
            pictures, progress=lambda done, total, outcome: _append(captured, outcome))
    assert overlapped == [True]
    assert [i.path for i in summary.imported] == [str(p) for p in pictures]
    assert captured == [str(p) for p in pictures]


async def _append(captured: list[str], outcome: Imported | Skipped) -> None:
    captured.append(outcome.path)
