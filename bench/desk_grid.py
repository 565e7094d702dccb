"""How the desk page copes with many thumbnails, measured in headless Chromium.

Prints one JSON object: time to the first tiles on screen and to the whole board
loaded (ms since navigation), and per scroll jump and per camera-filter change the
time until the frame after it, with the page's own render and sort times.  Target
(issue 8): 5,000 thumbnails stay responsive, i.e. every scroll or filter frame
well under 100 ms of page work.  Issue 19 adds the culling filters (rating at least N,
tagged, colour class, a sort by arrival) and the keyboard's focus moves, on a board
where a third of the pictures carry marks, and a peer in the same run and browser: the
plain page a grid is usually first written as (every tile in the DOM, a filter that
hides tiles, a sort that re-appends them), measured on the same 5,000 pictures; the
ratio is ours over the peer's (below 1: ours is faster).  Needs Debian's chromium and
playwright.

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


SELECT = """([id, v]) => new Promise(done => {
    const s = document.getElementById(id);
    const t0 = performance.now();
    s.value = v; s.dispatchEvent(new Event('change'));
    requestAnimationFrame(() => requestAnimationFrame(() =>
        done([performance.now() - t0, window.desk.order.length])));
})"""
KEY = """(key) => new Promise(done => {
    const t0 = performance.now();
    document.dispatchEvent(new KeyboardEvent('keydown', {key, code: key, bubbles: true}));
    requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
})"""
# The peer: every tile in the DOM at once; a filter hides tiles, a sort re-appends them.
PEER_PAGE = """async () => {
    const tiles = [];
    for (let offset = 0; ; ) {
        const page = await (await fetch(`/api/tiles?offset=${offset}&limit=2000`)).json();
        tiles.push(...page.tiles); offset += page.tiles.length;
        if (!page.tiles.length || offset >= page.total) break;
    }
    document.open(); document.write('<!doctype html><div id=g style="display:flex;flex-wrap:wrap;gap:10px"></div>');
    document.close();
    const g = document.getElementById('g');
    const t0 = performance.now();
    window.peer = tiles.map(t => {
        const el = document.createElement('div');
        el.style.cssText = 'width:190px;height:292px;background:#333';
        el.innerHTML = '<img loading=lazy decoding=async width=160 height=120><div class=n></div><div class=m></div>';
        el.querySelector('img').src = '/thumb/' + t.id;
        el.querySelector('.n').textContent = t.name;
        el.querySelector('.m').textContent = '★'.repeat(t.marks.rating || 0) + (t.marks.tagged ? ' tagged' : '');
        g.appendChild(el);
        return [t, el];
    });
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    return performance.now() - t0;
}"""
PEER_FILTER = """(rating) => new Promise(done => {
    const t0 = performance.now();
    for (const [t, el] of window.peer) el.style.display = (t.marks.rating || 0) >= rating ? '' : 'none';
    requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
})"""
PEER_SORT = """(asc) => new Promise(done => {
    const t0 = performance.now();
    const g = document.getElementById('g');
    window.peer.sort((a, b) => asc ? a[0].time - b[0].time : b[0].time - a[0].time);
    for (const [, el] of window.peer) g.appendChild(el);
    requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
})"""


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


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
            culling = [page.evaluate(SELECT, c) for c in (
                ("f-rating", "3"), ("f-rating", "0"), ("f-tagged", "yes"), ("f-tagged", ""),
                ("f-color", "2"), ("f-color", ""), ("sort", "capture-asc"), ("sort", "capture-desc"),
                ("sort", "arrival-desc"), ("sort", "capture-desc"))]
            keys = [page.evaluate(KEY, k) for k in ["ArrowRight"] * 5 + ["ArrowDown"] * 10 + ["End", "Home"]]
            # The same moves as the peer's, three times each: rating >= 3 then all; sort both ways.
            ours_filter = [page.evaluate(SELECT, ("f-rating", v))[0] for v in ("3", "0") * 3]
            ours_sort = [page.evaluate(SELECT, ("sort", v))[0] for v in ("capture-asc", "capture-desc") * 3]
            peer_build = page.evaluate(PEER_PAGE)
            peer_filter = [page.evaluate(PEER_FILTER, r) for r in (3, 0) * 3]
            peer_sort = [page.evaluate(PEER_SORT, asc) for asc in (True, False) * 3]
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
                "culling_filter_to_frame_ms": {f"{c[0]}={c[1]}": round(r[0], 1) for c, r in zip(
                    (("f-rating", "3"), ("f-rating", "0"), ("f-tagged", "yes"), ("f-tagged", ""),
                     ("f-color", "2"), ("f-color", ""), ("sort", "capture-asc"),
                     ("sort", "capture-desc"), ("sort", "arrival-desc"), ("sort", "capture-desc")),
                    culling, strict=True)},
                "culling_shown": [r[1] for r in culling],
                "key_to_frame_ms": [round(k, 1) for k in keys],
                "target": "every filter, sort and key frame under 100 ms with 5,000 pictures",
                "peer": "the same 5,000 tiles all in the DOM: filter by hiding, sort by re-appending",
                "peer_build_ms": round(peer_build),
                "filter_rating_median_ms": {"ours": round(_median(ours_filter), 1),
                                            "peer": round(_median(peer_filter), 1),
                                            "ratio": round(_median(ours_filter) / _median(peer_filter), 2)},
                "sort_median_ms": {"ours": round(_median(ours_sort), 1),
                                   "peer": round(_median(peer_sort), 1),
                                   "ratio": round(_median(ours_sort) / _median(peer_sort), 2)},
            }
        finally:
            browser.close()


def mark_a_third(card_path: Path, ids: list[str]) -> None:
    """Stars, tags and colour classes on a third of the pictures, as after a first cull."""
    from storage.catalog import CATALOG_NAME, SqliteCatalog
    from storage.marks import Stamped

    catalog = SqliteCatalog(card_path / CATALOG_NAME)
    try:
        with catalog.transaction():
            for n, image_id in enumerate(ids):
                if n % 3 == 0:
                    catalog.put_marks(image_id, {
                        "rating": Stamped(n % 6, 1.0, "bench"), "tagged": Stamped(n % 4 == 0, 1.0, "bench"),
                        "color": Stamped(n % 8 + 1, 1.0, "bench")})
    finally:
        catalog.close()


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cammesh-desk-bench-") as tmp:
        desk_path, *camera_paths = make_mesh(Path(tmp), [
            DeviceSpec("desk", Role.DESK), DeviceSpec("cam-a", Role.CAMERA),
            DeviceSpec("cam-b", Role.CAMERA)])
        cameras = []
        for path in camera_paths:
            with Card.open(path) as card:
                cameras.append(card.device_id)
        ids = fill_thumbnails(desk_path, count, cameras)
        mark_a_third(desk_path, ids)
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
