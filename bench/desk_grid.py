"""How the desk page copes with many thumbnails, measured in headless Chromium.

Prints one JSON object: time to the first tiles on screen and to the whole board
loaded (ms since navigation), and per scroll jump and per camera-filter change the
time until the frame after it, with the page's own render and sort times.  Target
(issue 8): 5,000 thumbnails stay responsive, i.e. every scroll or filter frame
well under 100 ms of page work.  Needs Debian's chromium and playwright.

    python bench/desk_grid.py [--thumbnails N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mesh.desk import serve_desk  # noqa: E402
from mesh.desk_commands import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from mesh.desk_demo import DeviceSpec, fill_thumbnails, make_mesh, runtime_for  # noqa: E402
from protocol.messages import Role  # noqa: E402
from storage.card import Card  # noqa: E402

SCROLL = """(f) => new Promise(done => {
    const t0 = performance.now();
    window.scrollTo(0, f * (document.body.scrollHeight - innerHeight));
    requestAnimationFrame(() => requestAnimationFrame(() =>
        done([performance.now() - t0, window.desk.metrics.renderMs])));
})"""
FILTER = """(v) => new Promise(done => {
    const s = document.getElementById('camera');
    const t0 = performance.now();
    s.value = v; s.dispatchEvent(new Event('change'));
    requestAnimationFrame(() => requestAnimationFrame(() =>
        done([performance.now() - t0, window.desk.metrics.orderMs, window.desk.metrics.renderMs])));
})"""


def measure(url: str, count: int, cameras: list[str]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url + "/")
            page.wait_for_function(f"window.desk && window.desk.tiles.size === {count}")
            metrics = page.evaluate("window.desk.metrics")
            scroll = [page.evaluate(SCROLL, f) for f in (0.25, 0.5, 0.75, 1.0, 0.1, 0.0)]
            filters = [page.evaluate(FILTER, v) for v in (cameras[0], "", cameras[1], "")]
            return {
                "thumbnails": count,
                "first_tiles_ms": round(metrics["firstTiles"]),
                "all_loaded_ms": round(metrics["allLoaded"]),
                "dom_tiles": page.evaluate("document.querySelectorAll('.tile').length"),
                "scroll_to_frame_ms": [round(s[0], 1) for s in scroll],
                "scroll_render_ms": [round(s[1], 1) for s in scroll],
                "filter_to_frame_ms": [round(f[0], 1) for f in filters],
                "filter_sort_ms": [round(f[1], 1) for f in filters],
                "filter_render_ms": [round(f[2], 1) for f in filters],
            }
        finally:
            browser.close()


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cammesh-desk-bench-") as tmp:
        desk_path, *camera_paths = make_mesh(Path(tmp), [
            DeviceSpec("desk", Role.DESK), DeviceSpec("cam-a", Role.CAMERA),
            DeviceSpec("cam-b", Role.CAMERA)])
        cameras = []
        for path in camera_paths:
            with Card.open(path) as card:
                cameras.append(card.device_id)
        fill_thumbnails(desk_path, count, cameras)
        with Card.open(desk_path) as card:
            desk = runtime_for(desk_path, card)
            async with trio.open_nursery() as nursery:
                await nursery.start(desk.run)
                url = await nursery.start(lambda task_status: serve_desk(
                    desk, host="127.0.0.1", port=0, task_status=task_status))
                result = await trio.to_thread.run_sync(measure, url, count, cameras)
                nursery.cancel_scope.cancel()
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thumbnails", type=int, default=5000)
    trio.run(main, parser.parse_args().thumbnails)
