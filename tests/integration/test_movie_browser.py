"""A movie on the desk page in real headless Chromium: a strip, and its parts marked as they arrive.

FIG. 15A: the movie shows as its strip of keyframe thumbnails before any byte of it is here;
FIG. 15B: after a Transfer, each strip frame is marked once its part of the file arrived, in
order.  The movie is made by the test with PyAV (a textured 30 s clip with two cuts); the
camera sends at 150 kB/s so that the marks come one after another.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.integration.test_desk_browser import in_browser, page_log, running_mesh

pytestmark = pytest.mark.integration
pytest.importorskip("av", reason="PyAV is not installed (pip install 'cammesh[media]')")

from protocol.config import Policy  # noqa: E402
from protocol.store import Where  # noqa: E402
from storage.importer import import_paths  # noqa: E402
from storage.movie_samples import write_movie  # noqa: E402


async def test_a_movie_shows_as_a_strip_and_its_parts_are_marked_in_order(tmp_path: Path) -> None:
    movie = write_movie(tmp_path / "C0001.MP4", seconds=30, size=(640, 360), textured=True,
                        noise=6, crf=30, cuts=(12.0, 21.0))
    async with running_mesh(tmp_path, pictures=1, rates={"cam-a": 150_000},
                            desk_policy=Policy.REQUESTED) as mesh:
        camera = mesh.cameras["cam-a"]
        summary = import_paths(camera.card, [movie], now=time.time())
        movie_id = summary.imported[0].image_id
        frames = len(camera.card.strip(movie_id))
        assert frames >= 4  # interval frames and the two cuts

        def script(page: Any) -> dict[str, Any]:
            mesh.start_cameras_from_thread()
            tile = f'.tile[data-id="{movie_id}"]'
            page.wait_for_function(
                f"document.querySelectorAll('{tile} .strip img').length === {frames}")
            page.wait_for_function(f"""[...document.querySelectorAll('{tile} .strip img')]
                .every((i) => i.complete && i.naturalWidth > 0)""")
            shown = page.evaluate(f"""() => {{
                const imgs = [...document.querySelectorAll('{tile} .strip img')];
                return {{ loaded: imgs.map((i) => i.complete && i.naturalWidth > 0),
                          marked: imgs.filter((i) => i.classList.contains('in')).length,
                          duration: document.querySelector('{tile} .strip .duration').textContent }};
            }}""")
            page.check(f"{tile} input[type=checkbox]")
            page.click("#transfer")
            # Every turn of the page's loop, which frames carry a mark: always the first few.
            page.evaluate(f"""() => {{
                window.markedSeen = [];
                const look = () => {{
                    const imgs = [...document.querySelectorAll('{tile} .strip img')];
                    window.markedSeen.push(imgs.map((i) => i.classList.contains('in')));
                    requestAnimationFrame(look);
                }};
                look();
            }}""")
            page.wait_for_selector(f'{tile}[data-mark="received"]')
            page.wait_for_function(f"document.querySelector('{tile}').dataset.stripIn === '{frames}'")
            return {"before": shown, "strip_log": page.evaluate("window.desk.stripLog"),
                    "seen": page.evaluate("window.markedSeen"), "log": page_log(page)}

        seen = await trio.to_thread.run_sync(in_browser, mesh.url, script)
        record = await mesh.desk.call(mesh.desk.card.image, movie_id)
        assert record is not None and record.where is Where.LOCAL

    before = seen["before"]
    assert all(before["loaded"]), "every strip frame's picture is shown before the Transfer"
    assert before["marked"] == 0 and before["duration"] == "0:30"
    counts = [n for _, image_id, n in seen["strip_log"] if image_id == movie_id]
    print("marks as the bytes arrived:", counts)
    assert counts[0] == 0 and counts[-1] == frames
    assert counts == sorted(counts), "marks are only ever added"
    assert len(set(counts)) >= 3, "the marks came part by part, not all at the end"
    for marked in seen["seen"]:  # in order: the marked frames are always the first ones
        n = sum(marked)
        assert marked == [True] * n + [False] * (len(marked) - n), marked
