"""The desk page in real headless Chromium against a desk and two cameras on loopback.

Real cards, real TLS runtimes, real sample JPEGs; the cameras send at a limited
rate so that the queue of originals is visible.  The browser (playwright's sync
API) runs in one worker thread; the mesh runs in the test's trio loop.  What the
page showed is read back from ``window.desk`` (its tiles and its log of every
mark change) and from the DOM.  Timings are printed, never asserted.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from PIL import Image

from mesh.desk_commands import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from mesh.desk import Desk, serve_desk  # noqa: E402
from mesh.desk_demo import (  # noqa: E402
    DeviceSpec,
    fill_thumbnails,
    make_mesh,
    runtime_for,
    write_demo_pictures,
)
from mesh.runtime import Address, Runtime  # noqa: E402
from protocol.config import Policy  # noqa: E402
from protocol.messages import Role  # noqa: E402
from protocol.store import Incoming, Where  # noqa: E402
from storage.card import Card  # noqa: E402
from storage.importer import import_paths  # noqa: E402

WAIT_MS = 90_000  # the longest any one wait in the browser may take


@dataclass
class DeskWithCameras:
    url: str
    desk: Runtime
    board: Desk
    cameras: dict[str, Runtime]  # by name, not yet running until start_cameras
    nursery: trio.Nursery
    desk_port: int

    def origin(self, name: str) -> str:
        return self.cameras[name].identity.device_id

    async def start_cameras(self) -> None:
        """The cameras come on and dial the desk (so the page sees everything arrive live)."""
        for camera in self.cameras.values():
            camera.static_peers.append(Address("127.0.0.1", self.desk_port))
            await self.nursery.start(camera.run)

    def start_cameras_from_thread(self) -> None:
        trio.from_thread.run(self.start_cameras)


@asynccontextmanager
async def running_mesh(
    folder: Path, *, pictures: int, rates: dict[str, float], desk_policy: Policy = Policy.ALL,
    capacities: dict[str, int] | None = None,
) -> AsyncIterator[DeskWithCameras]:
    """A running desk with its page, and cameras with ``pictures`` sample JPEGs each, off."""
    names = list(rates)
    sizes = capacities or {}
    paths = make_mesh(folder, [DeviceSpec("desk", Role.DESK)]
                      + [DeviceSpec(n, Role.CAMERA, sizes.get(n, 2**30)) for n in names])
    cards = [Card.open(p) for p in paths]
    try:
        start = time.time() - 3600
        for index, (name, card) in enumerate(zip(names, cards[1:], strict=True), start=1):
            shots = write_demo_pictures(folder / f"pictures-{name}", pictures, seed=index,
                                        start_time=start + 100 * index)
            import_paths(card, shots, now=time.time())
        cameras = {n: runtime_for(p, c, rate_limit=rates[n])
                   for n, p, c in zip(names, paths[1:], cards[1:], strict=True)}
        async with trio.open_nursery() as nursery:
            desk = runtime_for(paths[0], cards[0], policy=desk_policy)
            port = await nursery.start(desk.run)
            board = Desk(desk)
            url = await nursery.start(lambda task_status: serve_desk(
                desk, host="127.0.0.1", port=0, desk=board, task_status=task_status))
            yield DeskWithCameras(url, desk, board, cameras, nursery, port)
            nursery.cancel_scope.cancel()
    finally:
        for card in cards:
            card.close()


def in_browser(url: str, script: Callable[[Any], Any]) -> Any:
    """Run ``script(page)`` against ``url`` in headless Chromium; returns what it returns."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                          accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/")
            page.wait_for_function("window.desk && window.desk.loaded")
            result = script(page)
            assert not errors, f"the page raised: {errors}"
            return result
        finally:
            browser.close()


def tiles(page: Any) -> dict[str, dict[str, Any]]:
    return dict(page.evaluate("[...window.desk.tiles.entries()]"))


def page_log(page: Any) -> list[tuple[int, str, str, int | None, int | None]]:
    return [tuple(entry) for entry in page.evaluate("window.desk.log")]


def marks_of(log: list[tuple[Any, ...]], image_id: str) -> list[str]:
    return [entry[2] for entry in log if entry[1] == image_id]


def first_index(log: list[tuple[Any, ...]], image_id: str, mark: str) -> int:
    return next(i for i, entry in enumerate(log) if entry[1] == image_id and entry[2] == mark)


# --- thumbnails first, Transfer first, Not necessary, marks, open, download ----------------------


async def test_desk_page_drives_the_mesh(tmp_path: Path) -> None:
    async with running_mesh(tmp_path, pictures=7,
                            rates={"cam-a": 150_000, "cam-b": 100_000}) as mesh:
        cam_a, cam_b = mesh.origin("cam-a"), mesh.origin("cam-b")
        late = write_demo_pictures(tmp_path / "late", 1, seed=9, start_time=time.time())

        def capture_on_cam_a() -> str:
            """A picture taken now on cam-a, while the page is open."""
            rt = mesh.cameras["cam-a"]

            async def capture() -> str:
                summary = await rt.call(import_paths, rt.card, late, now=rt.now())
                image_id = summary.imported[0].image_id
                await rt.call(rt.node.captured, image_id, rt.now())
                return image_id

            return trio.from_thread.run(capture)

        def script(page: Any) -> dict[str, Any]:
            mesh.start_cameras_from_thread()
            page.wait_for_function("window.desk.tiles.size === 14")
            # Transfer (FIG. 14A) on the picture the desk would pull last from cam-a: thumbnails
            # come newest first, so background pulls do too and the oldest waits longest.
            shown = tiles(page)
            waiting = sorted((t for t in shown.values() if t["origin"] == cam_a
                              and t["mark"] == "thumbnail"), key=lambda t: t["seq"])
            assert len(waiting) >= 3, f"cam-a's queue is already gone: {waiting}"
            target = waiting[0]["id"]
            queued_before = {t["id"] for t in waiting[1:]}
            page.check(f'.tile[data-id="{target}"] input[type=checkbox]')
            page.click("#transfer")
            # Not necessary (FIG. 13B) on a cam-b original while its bytes are arriving, early in
            # its stream so that the click lands well before its last chunk.
            refused = page.wait_for_function(
                f"[...window.desk.tiles.values()].find(t => t.origin === '{cam_b}' "
                "&& t.mark === 'transferring' && t.progress[0] < t.progress[1] / 2)?.id"
            ).json_value()
            assert page.is_visible("#busy")  # FIG. 13A, shown with the same update as the tile
            page.click(f'.tile[data-id="{refused}"] button.refuse')
            page.wait_for_selector(f'.tile[data-id="{refused}"][data-mark="refused"]')
            # A picture taken now shows up live, highlighted, at the top, as a thumbnail.
            captured = capture_on_cam_a()
            page.wait_for_selector(f'.tile.fresh[data-id="{captured}"]')
            first_shown = page.evaluate("window.desk.order[0]")
            page.wait_for_function(f"window.desk.tiles.get('{target}').mark === 'received'")
            # Everything else arrives; the refused one never does.
            page.wait_for_function(
                f"[...window.desk.tiles.values()].filter(t => t.id !== '{refused}')"
                ".every(t => t.mark === 'received')")
            page.wait_for_selector("#busy", state="hidden")
            # The full picture opens once it has arrived, and downloads as its exact bytes.
            page.click(f'.tile[data-id="{target}"] .thumb')
            page.wait_for_function(
                "document.getElementById('viewer-img').complete"
                " && document.getElementById('viewer-img').naturalWidth > 0")
            width = page.evaluate("document.getElementById('viewer-img').naturalWidth")
            page.click("#viewer-close")
            with page.expect_download() as download_info:
                page.click(f'.tile[data-id="{target}"] a.download')
            downloaded = Path(download_info.value.path()).read_bytes()
            return {"target": target, "queued_before": queued_before, "refused": refused,
                    "captured": captured, "first_shown": first_shown, "width": width,
                    "downloaded": downloaded, "log": page_log(page), "tiles": tiles(page),
                    "refused_dom": page.get_attribute(f'.tile[data-id="{refused}"]', "data-mark")}

        seen = await trio.to_thread.run_sync(in_browser, mesh.url, script)
        log = seen["log"]
        ids = list(seen["tiles"])

        # Thumbnails appear before their originals, for every picture.
        for image_id in ids:
            marks = marks_of(log, image_id)
            assert marks[0] != "received", f"{image_id[:12]}: the original came with no thumbnail first"
        # Marks change as transfers progress: thumbnail -> transferring (with progress) -> received.
        progressed = [i for i in ids if {"transferring", "received"} <= set(marks_of(log, i))
                      and first_index(log, i, "transferring") < first_index(log, i, "received")]
        assert len(progressed) >= 3, "the page never showed an original being transferred"
        assert any(e[3] is not None and e[4] is not None and 0 < e[3] < e[4] for e in log)
        # Transfer: the target overtook originals queued before it.
        target_at = first_index(log, seen["target"], "received")
        overtaken = [i for i in seen["queued_before"] if first_index(log, i, "received") > target_at]
        assert overtaken, "the requested original arrived after every one queued before it"
        # Not necessary: its stream stopped and never finished.
        assert seen["refused_dom"] == "refused"
        assert "received" not in marks_of(log, seen["refused"])
        record = await mesh.desk.call(mesh.desk.card.image, seen["refused"])
        assert record is not None and record.where is Where.ABSENT
        partial = await mesh.desk.call(mesh.desk.card.partial_offset, seen["refused"], Incoming.ORIGINAL)
        assert partial == 0
        # The live capture appeared at the top, as a thumbnail first.
        assert seen["first_shown"] == seen["captured"]
        assert marks_of(log, seen["captured"])[0] != "received"
        # The full picture and its download are the original's bytes.
        assert seen["width"] == 1024
        assert hashlib.sha256(seen["downloaded"]).hexdigest() == seen["target"]
        print(json.dumps({"desk_e2e": {"overtaken": len(overtaken), "log_entries": len(log)}}))


async def test_smaller_copies_typed_marked_kept_and_the_original_after_them(tmp_path: Path) -> None:
    """Issue 17: any long edge and quality, typed; a copy says it is one, with its size; a kept
    copy stays once its original is here, an unkept one goes."""
    # The desk pulls only what is asked for, so no original arrives by the background policy.
    async with running_mesh(tmp_path, pictures=2, rates={"cam-a": 2_000_000},
                            desk_policy=Policy.REQUESTED) as mesh:

        def transfer(page: Any, ids: list[str], edge: str, quality: str) -> None:
            page.fill("#long-edge", edge)
            page.fill("#quality", quality)
            for image_id in ids:
                page.check(f'.tile[data-id="{image_id}"] input[type=checkbox]')
            page.click("#transfer")

        def script(page: Any) -> dict[str, Any]:
            mesh.start_cameras_from_thread()
            page.wait_for_function("window.desk.tiles.size === 2")
            kept, dropped = page.evaluate("window.desk.order")
            # A long edge out of range is refused in words; the selection stays to mend it.
            transfer(page, [kept], "5", "")
            page.wait_for_selector("#toast:not([hidden])")
            refusal = {"toast": page.text_content("#toast"),
                       "selected": page.evaluate("[...window.desk.selected]")}
            transfer(page, [dropped], "300", "60")
            for image_id in (kept, dropped):
                page.wait_for_selector(f'.tile[data-id="{image_id}"][data-mark="smaller"]')
            copies = {i: {"badge": page.text_content(f'.tile[data-id="{i}"] .badge'),
                          "where": page.text_content(f'.tile[data-id="{i}"] .where')}
                      for i in (kept, dropped)}
            page.click(f'.tile[data-id="{kept}"] button.keep')
            page.wait_for_function(f"window.desk.tiles.get('{kept}').smaller.kept")
            page.wait_for_selector(f'.tile[data-id="{kept}"] button.keep[aria-pressed="true"]')
            kept_where = page.text_content(f'.tile[data-id="{kept}"] .where')
            # The larger view says so too, and shows the copy's own pixels.
            page.click(f'.tile[data-id="{kept}"] .thumb')
            page.wait_for_function(
                "!document.getElementById('viewer-img').hidden"
                " && document.getElementById('viewer-img').naturalWidth > 0")
            viewer = {"name": page.text_content("#viewer-name"),
                      "state": page.text_content("#viewer-state"),
                      "width": page.evaluate("document.getElementById('viewer-img').naturalWidth"),
                      "keep": page.text_content("#viewer-keep")}
            page.click("#viewer-close")
            # Then the originals themselves: both fields empty.
            transfer(page, [kept, dropped], "", "")
            page.wait_for_function(f"['{kept}', '{dropped}'].every(i => window.desk.tiles.get(i)"
                                   ".mark === 'received')")
            page.wait_for_function(f"window.desk.tiles.get('{dropped}').smaller === null"
                                   f" && window.desk.tiles.get('{kept}').smaller !== null")
            return {"kept": kept, "dropped": dropped, "refusal": refusal, "copies": copies,
                    "kept_where": kept_where, "viewer": viewer, "log": page_log(page),
                    "after": {i: page.text_content(f'.tile[data-id="{i}"] .where')
                              for i in (kept, dropped)}}

        seen = await trio.to_thread.run_sync(in_browser, mesh.url, script)
        kept, dropped = seen["kept"], seen["dropped"]
        assert "the long edge must be a whole number of pixels" in seen["refusal"]["toast"]
        assert "from 16 to 16384: 5 is not one" in seen["refusal"]["toast"]
        assert seen["refusal"]["selected"] == [kept]
        for image_id in (kept, dropped):
            marks = marks_of(seen["log"], image_id)
            assert marks[0] == "thumbnail" and "smaller" in marks and marks[-1] == "received"
            assert seen["copies"][image_id]["badge"] == "Smaller copy, 300 px"
            assert seen["copies"][image_id]["where"].startswith("copy: ")
        assert seen["kept_where"].endswith(" kB · kept")
        assert seen["viewer"]["name"].startswith("IMG_") and "(smaller copy, 300 px)" in seen["viewer"]["name"]
        assert seen["viewer"]["state"].startswith("A smaller copy, 300 px (")
        assert "not the original" in seen["viewer"]["state"] and seen["viewer"]["width"] == 300
        assert seen["viewer"]["keep"].startswith("Copy kept")
        assert seen["after"] == {kept: "+ kept copy, 300 px", dropped: ""}
        card = mesh.desk.card
        copies = await mesh.desk.call(card.smaller_details)
        assert set(copies) == {kept} and copies[kept].kept
        for image_id in (kept, dropped):
            record = await mesh.desk.call(card.image, image_id)
            assert record is not None and record.where is Where.LOCAL
        data = await mesh.desk.call(card.read_smaller, kept, 0, copies[kept].size)
        with Image.open(io.BytesIO(data)) as image:
            assert max(image.size) == 300


async def test_dispersed_original_shows_its_holder(tmp_path: Path) -> None:
    # A camera above its high-water mark disperses its oldest original to the desk (desks
    # first); the desk's page marks it as held here, for that camera (FIG. 14B).
    async with running_mesh(tmp_path, pictures=4, rates={"cam-c": 2_000_000},
                            desk_policy=Policy.THUMBNAILS,
                            capacities={"cam-c": 1_300_000}) as mesh:

        def script(page: Any) -> dict[str, Any]:
            mesh.start_cameras_from_thread()
            held = page.wait_for_function(
                "[...window.desk.tiles.values()].find(t => t.mark === 'held')?.id").json_value()
            tile = f'.tile[data-id="{held}"]'
            return {"held": held, "log": page_log(page), "order": page.evaluate("window.desk.order"),
                    "badge": page.text_content(f"{tile} .badge"),
                    "where": page.text_content(f"{tile} .where")}

        seen = await trio.to_thread.run_sync(in_browser, mesh.url, script)
        # Sealed for its owner, and no key was wrapped for this desk (issue 17).
        assert seen["badge"] == "Held here" and seen["where"] == "held here for cam-c · sealed, no key here"
        assert marks_of(seen["log"], seen["held"])[-1] == "held"
        assert seen["order"][-1] == seen["held"]  # the oldest picture is the one dispersed
        held = await mesh.desk.call(mesh.desk.card.held, seen["held"])
        assert held is not None and held.owner == mesh.origin("cam-c")


# --- 5,000 thumbnails stay responsive -----------------------------------------------------------


async def test_five_thousand_thumbnails_stay_responsive(tmp_path: Path) -> None:
    count = 5000
    [desk_path, a_path, b_path] = make_mesh(tmp_path, [DeviceSpec("desk", Role.DESK),
                                                       DeviceSpec("cam-a", Role.CAMERA),
                                                       DeviceSpec("cam-b", Role.CAMERA)])
    origins = [Card.open(p) for p in (a_path, b_path)]
    ids = [c.device_id for c in origins]
    for c in origins:
        c.close()
    fill_thumbnails(desk_path, count, ids)
    with Card.open(desk_path) as card:
        desk = runtime_for(desk_path, card)
        async with trio.open_nursery() as nursery:
            await nursery.start(desk.run)
            url = await nursery.start(lambda task_status: serve_desk(
                desk, host="127.0.0.1", port=0, task_status=task_status))

            def script(page: Any) -> dict[str, Any]:
                page.wait_for_function(f"window.desk.tiles.size === {count}")
                metrics = page.evaluate("window.desk.metrics")
                navigation = page.evaluate(
                    "performance.getEntriesByType('navigation')[0].responseEnd")
                dom_tiles = page.evaluate("document.querySelectorAll('.tile').length")
                loaded_imgs = page.evaluate(
                    "[...document.images].filter(i => i.closest('.tile')).length")
                # Scroll latency: jump, then wait for the frame that shows the tiles there.
                scroll_ms = []
                for fraction in (0.25, 0.5, 0.75, 1.0, 0.1):
                    scroll_ms.append(page.evaluate("""(f) => new Promise(done => {
                        const t0 = performance.now();
                        window.scrollTo(0, f * (document.body.scrollHeight - innerHeight));
                        requestAnimationFrame(() => requestAnimationFrame(() =>
                            done([performance.now() - t0, window.desk.metrics.renderMs,
                                  document.querySelectorAll('.tile').length,
                                  Math.max(...[...document.querySelectorAll('.tile')]
                                      .map(e => window.desk.order.indexOf(e.dataset.id)))])));
                    })""", fraction))
                # Filter latency: one camera, then all again.
                filter_ms = []
                for value in (ids[0], "", ids[1]):
                    filter_ms.append(page.evaluate("""(v) => new Promise(done => {
                        const s = document.getElementById('camera');
                        const t0 = performance.now();
                        s.value = v; s.dispatchEvent(new Event('change'));
                        requestAnimationFrame(() => requestAnimationFrame(() =>
                            done([performance.now() - t0, window.desk.order.length,
                                  window.desk.metrics.orderMs, window.desk.metrics.renderMs])));
                    })""", value))
                shown_origins = page.evaluate(
                    "[...new Set(window.desk.order.map(id => window.desk.tiles.get(id).origin))]")
                return {"metrics": metrics, "navigation_ms": navigation, "dom_tiles": dom_tiles,
                        "imgs": loaded_imgs, "scroll": scroll_ms, "filter": filter_ms,
                        "shown_origins": shown_origins}

            seen = await trio.to_thread.run_sync(in_browser, url, script)
            nursery.cancel_scope.cancel()
    # Behaviour: the grid is virtualised (a few rows in the DOM, not 5,000 tiles), scrolling
    # renders the tiles at the new place, the filter keeps one camera's pictures.
    assert 0 < seen["dom_tiles"] < 200
    assert seen["imgs"] == seen["dom_tiles"]
    for _, _, rendered, _ in seen["scroll"][:4]:
        assert 0 < rendered < 200
    assert seen["scroll"][3][3] == count - 1  # scrolled to the end: the oldest tile is there
    assert [f[1] for f in seen["filter"]] == [count // 2, count, count // 2]
    assert seen["shown_origins"] == [ids[1]]
    print(json.dumps({"desk_5000": {
        "first_tiles_ms": round(seen["metrics"]["firstTiles"]),
        "all_loaded_ms": round(seen["metrics"]["allLoaded"]),
        "html_response_end_ms": round(seen["navigation_ms"]),
        "dom_tiles": seen["dom_tiles"],
        "scroll_to_frame_ms": [round(s[0], 1) for s in seen["scroll"]],
        "scroll_render_ms": [round(s[1], 1) for s in seen["scroll"]],
        "filter_to_frame_ms": [round(f[0], 1) for f in seen["filter"]],
        "filter_sort_ms": [round(f[2], 1) for f in seen["filter"]],
        "filter_render_ms": [round(f[3], 1) for f in seen["filter"]],
    }}))



# --- a real `cammesh desk --ftp`: its FTP cameras, and the photographer filter ----------------------


def test_desk_page_shows_its_ftp_cameras_and_filters_by_photographer(tmp_path: Path) -> None:
    """Issue 16: the panel shows each FTP camera (account, photographer, frames, the upload
    under way); choosing a photographer hides the other's pictures.  One name is markup, to
    show that names are text on the page, never HTML."""
    import subprocess
    import sys

    from storage.samples import write_sample_jpegs
    from tests.integration.devices import free_port
    from tests.integration.ftp_camera import DATED, add_account, camera, finish, send_part, sha256
    from tests.integration.nodes import ROOT

    [card] = make_mesh(tmp_path / "mesh", [DeviceSpec("desk", Role.DESK)])
    marked_up = "Ana <img src=x onerror=alert(1)> Lopez"
    passwords = {"nikon": add_account(card, "nikon", marked_up),
                 "canon": add_account(card, "canon", "Ben Okafor")}
    ftp_port, web_port = free_port(), free_port()
    log = (tmp_path / "desk.log").open("w")
    desk = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "desk", str(card), "--listen", f"127.0.0.1:{web_port}",
         "--node-listen", "127.0.0.1:0", "--no-discovery", "--ftp", f"127.0.0.1:{ftp_port}",
         "--ftp-login-delay", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert desk.stdout is not None
        line = desk.stdout.readline()
        assert "the desk is on" in line, (line, (tmp_path / "desk.log").read_text()[-3000:])
        shots = write_sample_jpegs(tmp_path / "shots", 4, seed=41)
        by = {"nikon": shots[:2], "canon": shots[2:3]}
        for user, pictures in by.items():
            ftp = camera(ftp_port, user, passwords[user])
            ftp.mkd(DATED)
            ftp.cwd(DATED)
            for picture in pictures:
                with picture.open("rb") as f:
                    assert ftp.storbinary(f"STOR {picture.name}", f).startswith("226")
            ftp.quit()
        nikon_ids = {sha256(p) for p in by["nikon"]}
        canon_ids = {sha256(p) for p in by["canon"]}
        late = shots[3]

        def script(page: Any) -> dict[str, Any]:
            page.wait_for_function(
                "(n) => window.desk.tiles.size >= n && window.desk.ftp", arg=3)
            rows = "#ftp-rows tr"
            page.wait_for_function(
                "() => [...document.querySelectorAll('#ftp-rows tr')].some(r => "
                "r.dataset.account === 'nikon' && r.cells[2].textContent === '2')")
            panel = page.eval_on_selector_all(rows, "rs => rs.map(r => [...r.cells].map(c => "
                                              "c.textContent))")
            # An upload under way shows in the panel while it lasts.
            ftp = camera(ftp_port, "canon", passwords["canon"])
            ftp.cwd(DATED)
            data = late.read_bytes()
            conn = send_part(ftp, late.name, data[: len(data) // 2])
            page.wait_for_function(
                "(name) => [...document.querySelectorAll('#ftp-rows tr')]"
                ".some(r => r.dataset.account === 'canon' && r.cells[4].textContent.includes(name))",
                arg=late.name)
            conn.sendall(data[len(data) // 2 :])
            assert finish(ftp, conn).startswith("226")
            ftp.quit()
            page.wait_for_function("(n) => window.desk.tiles.size >= n", arg=4)
            options = page.eval_on_selector_all("#photographer option",
                                                "os => os.map(o => [o.value, o.textContent])")
            page.select_option("#photographer", value=marked_up)
            page.wait_for_function("(n) => window.desk.order.length === n", arg=2)
            shown_ana = page.evaluate("window.desk.order")
            dom_ana = page.eval_on_selector_all("#grid .tile", "ts => ts.map(t => t.dataset.id)")
            page.select_option("#photographer", value="Ben Okafor")
            page.wait_for_function("(n) => window.desk.order.length === n", arg=2)
            shown_ben = page.evaluate("window.desk.order")
            page.select_option("#photographer", value="")
            page.wait_for_function("(n) => window.desk.order.length === n", arg=4)
            return {"panel": panel, "options": options, "ana": shown_ana, "dom_ana": dom_ana,
                    "ben": shown_ben,
                    "injected": page.evaluate("document.querySelectorAll('#bar img, #ftp img')"
                                              ".length")}

        seen = in_browser(f"http://127.0.0.1:{web_port}", script)
    finally:
        desk.terminate()
        desk.communicate(timeout=30)
        log.close()
    panel = {row[0]: row for row in seen["panel"]}
    assert set(panel) == {"nikon", "canon"}
    assert panel["nikon"][1] == marked_up and panel["nikon"][2] == "2"  # as text, verbatim
    assert panel["canon"][1] == "Ben Okafor" and panel["canon"][2] == "1"
    assert by["nikon"][1].name in panel["nikon"][3]  # the last frame
    assert seen["injected"] == 0  # the name's <img> was never made an element
    assert [v for v, _ in seen["options"]] == ["", marked_up, "Ben Okafor"]
    assert set(seen["ana"]) == nikon_ids and set(seen["dom_ana"]) == nikon_ids
    assert set(seen["ben"]) == canon_ids | {sha256(late)}
