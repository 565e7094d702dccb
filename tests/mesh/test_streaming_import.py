"""Pictures entering a running node are announced one by one, while the rest still copy."""

from __future__ import annotations

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
