"""Culling on the desk page by keyboard (issue 19, Must show 1 and 5) in headless Chromium.

A real desk and two cameras on loopback (tests/integration/test_desk_browser.py's mesh);
the editor's keys go to the page as a user's key presses; what the page shows is read from
the DOM and ``window.desk``, what the desk stored from its card, and after the test from a
restarted ``cammesh desk`` process.  Set CAMMESH_SCREENSHOTS=DIR to keep the page's pictures
(docs/desk-grid.png, docs/desk-larger-view.png are made so).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from protocol.config import Policy
from storage.marks import Marks

# Skips this module too where the browser tests cannot run (no playwright, no Chromium).
from tests.integration.test_desk_browser import in_browser, running_mesh, tiles

pytestmark = pytest.mark.integration

PWNED = "window.__pwned"
MARKUP = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def keep_screenshot(path: Path, name: str) -> None:
    """Keep a copy in $CAMMESH_SCREENSHOTS, in 256 colours (a third of the bytes for docs/)."""
    from PIL import Image

    folder = os.environ.get("CAMMESH_SCREENSHOTS")
    if folder:
        with Image.open(path) as shot:
            shot.convert("RGB").quantize(256).save(Path(folder) / name, optimize=True)


def focus(page: Any) -> str | None:
    return page.evaluate("window.desk.focus")


def press(page: Any, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def wait_marks(page: Any, image_id: str, condition: str) -> None:
    page.wait_for_function(f"(() => {{ const m = window.desk.tiles.get('{image_id}').marks; return {condition}; }})()")


async def test_culling_twenty_pictures_by_keyboard_then_filters_and_order(tmp_path: Path) -> None:
    async with running_mesh(tmp_path, pictures=10, rates={"cam-a": 3_000_000, "cam-b": 3_000_000},
                            desk_policy=Policy.REQUESTED) as mesh:
        cam_a = mesh.origin("cam-a")

        def script(page: Any) -> dict[str, Any]:
            mesh.start_cameras_from_thread()
            page.wait_for_function("window.desk.tiles.size === 20")
            order = page.evaluate("window.desk.order")
            cols = page.evaluate("geometry.cols")
            # Focus: the first arrow lands on the newest picture; right, down, left move it.
            press(page, "ArrowRight")
            assert focus(page) == order[0]
            press(page, "ArrowRight", "ArrowDown")
            assert focus(page) == order[1 + cols]
            press(page, "ArrowLeft", "Home")
            assert focus(page) == order[0]
            # Cull every one of the 20: stars, colour classes, tags, by key alone.
            wanted: dict[str, dict[str, Any]] = {}
            for i, image_id in enumerate(order):
                assert focus(page) == image_id
                stars, color = i % 6, (i % 8) + 1
                press(page, str(stars))
                if i % 2 == 0:
                    press(page, f"Shift+Digit{color}")
                if i % 3 == 0:
                    press(page, "t")
                wanted[image_id] = {"rating": stars, "color": color if i % 2 == 0 else None,
                                    "tagged": i % 3 == 0}
                wait_marks(page, image_id, f"m.rating === {stars} && m.tagged === {str(i % 3 == 0).lower()}")
                press(page, "ArrowRight")
            assert focus(page) == order[-1]  # the last stays focused at the end of the grid
            # Untag one again, clear a colour with Shift+0.
            press(page, "End", "t", "Shift+Digit0")
            wanted[order[-1]]["tagged"] = not wanted[order[-1]]["tagged"]
            wanted[order[-1]]["color"] = None
            wait_marks(page, order[-1], f"m.tagged === {str(wanted[order[-1]]['tagged']).lower()} && m.color === null")
            # The larger view: the thumbnail at once; R asks for the original, which replaces it.
            press(page, "Home", "ArrowRight")
            viewed = focus(page)
            press(page, "Enter")
            page.wait_for_selector("#viewer:not([hidden])")
            thumb_first = page.evaluate(
                "[!document.getElementById('viewer-thumb').hidden, document.getElementById('viewer-img').hidden,"
                " document.getElementById('viewer-state').textContent]")
            press(page, "r")
            page.wait_for_function(
                "!document.getElementById('viewer-img').hidden"
                " && document.getElementById('viewer-img').naturalWidth > 0")
            viewer_width = page.evaluate("document.getElementById('viewer-img').naturalWidth")
            press(page, "4", "Shift+Digit3")
            wait_marks(page, viewed, "m.rating === 4 && m.color === 3")
            wanted[viewed].update(rating=4, color=3)
            page.wait_for_function("document.getElementById('viewer-marks').textContent.startsWith('★★★★ ')")
            shot = tmp_path / "viewer.png"
            page.screenshot(path=str(shot))
            keep_screenshot(shot, "desk-larger-view.png")
            # In the larger view the arrows go to the next picture; marks keys still work there.
            press(page, "ArrowRight")
            assert focus(page) == order[2]
            press(page, "Escape")
            assert page.is_hidden("#viewer")
            # N: not necessary; S: a smaller copy (of the size menu's choice, or 1024 px).
            press(page, "ArrowRight")
            refused = focus(page)
            press(page, "n", "ArrowRight")
            smaller = focus(page)
            press(page, "s")
            page.wait_for_selector(f'.tile[data-id="{refused}"][data-mark="refused"]')
            page.wait_for_selector(f'.tile[data-id="{smaller}"][data-mark="smaller"]')
            press(page, "?")
            keys_shown = page.is_visible("#keys") and "colour class" in page.text_content("#keys")
            press(page, "Escape")
            shot = tmp_path / "grid.png"
            page.screenshot(path=str(shot))
            keep_screenshot(shot, "desk-grid.png")
            # Filters and their counts.
            page.select_option("#f-rating", "3")
            rated = page.evaluate("window.desk.order")
            rating_option = page.text_content('#f-rating option[value="3"]')
            page.select_option("#f-rating", "0")
            page.select_option("#f-tagged", "yes")
            tagged = page.evaluate("window.desk.order")
            page.select_option("#f-tagged", "")
            page.select_option("#f-color", "1")
            colour_one = page.evaluate("window.desk.order")
            page.select_option("#f-color", "")
            page.select_option("#f-state", "here")
            here = page.evaluate("window.desk.order")
            page.select_option("#f-state", "refused")
            not_needed = page.evaluate("window.desk.order")
            page.select_option("#f-state", "")
            page.select_option("#camera", cam_a)
            page.select_option("#f-rating", "1")
            cam_a_rated = page.evaluate("window.desk.order")
            page.select_option("#camera", "")
            page.select_option("#f-rating", "0")
            page.select_option("#f-time", "600")
            last_ten_minutes = page.evaluate("window.desk.order")
            page.select_option("#f-time", "0")
            page.select_option("#sort", "capture-asc")
            oldest_first = page.evaluate("window.desk.order")
            page.select_option("#sort", "arrival-desc")
            by_arrival = page.evaluate("window.desk.order")
            return {"order": order, "wanted": wanted, "viewed": viewed, "thumb_first": thumb_first,
                    "viewer_width": viewer_width, "refused": refused, "smaller": smaller,
                    "keys_shown": keys_shown, "rated": rated, "rating_option": rating_option,
                    "tagged": tagged, "colour_one": colour_one, "here": here, "not_needed": not_needed,
                    "cam_a_rated": cam_a_rated, "last_ten": last_ten_minutes,
                    "oldest_first": oldest_first, "by_arrival": by_arrival, "tiles": tiles(page)}

        seen = await trio.to_thread.run_sync(in_browser, mesh.url, script)
        card = mesh.desk.card
        stored = {i: await mesh.desk.call(card.marks, i) for i in seen["order"]}
        desk_path = card.path
    wanted, shown = seen["wanted"], seen["tiles"]
    for image_id, marks in wanted.items():
        assert stored[image_id] == Marks(**marks), image_id[:12]
    # The larger view showed the thumbnail at once, then the original that R requested.
    assert seen["thumb_first"][:2] == [True, True] and "R requests" in seen["thumb_first"][2]
    assert seen["viewer_width"] == 1024 and shown[seen["viewed"]]["mark"] == "received"
    assert shown[seen["refused"]]["mark"] == "refused" and shown[seen["smaller"]]["mark"] == "smaller"
    assert seen["keys_shown"]
    # Each filter keeps exactly the pictures it names; its option counts them.
    assert set(seen["rated"]) == {i for i, m in wanted.items() if m["rating"] >= 3}
    assert seen["rating_option"].endswith(f"({len(seen['rated'])})")
    assert set(seen["tagged"]) == {i for i, m in wanted.items() if m["tagged"]}
    assert set(seen["colour_one"]) == {i for i, m in wanted.items() if m["color"] == 1}
    assert set(seen["here"]) == {seen["viewed"]}
    assert seen["not_needed"] == [seen["refused"]]
    assert set(seen["cam_a_rated"]) == {i for i, m in wanted.items()
                                        if m["rating"] >= 1 and shown[i]["origin"] == cam_a}
    assert seen["last_ten"] == []  # the pictures were taken an hour before
    assert seen["oldest_first"] == seen["order"][::-1]
    arrivals = [shown[i]["arrived"] for i in seen["by_arrival"]]
    assert arrivals == sorted(arrivals, reverse=True)

    # Marks survive a restart of the desk: a real `cammesh desk` process on the same card.
    restarted = restart_desk(tmp_path, desk_path, lambda page: tiles(page))
    for image_id, marks in wanted.items():
        m = restarted[image_id]["marks"]
        assert (m["rating"], m["color"], m["tagged"]) == (marks["rating"], marks["color"], marks["tagged"])


def restart_desk(tmp_path: Path, card: Path, script: Any) -> Any:
    from tests.integration.devices import free_port
    from tests.integration.nodes import ROOT

    port = free_port()
    log = (tmp_path / "restarted.log").open("w")
    desk = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "desk", str(card), "--listen", f"127.0.0.1:{port}",
         "--node-listen", "127.0.0.1:0", "--no-discovery"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert desk.stdout is not None
        line = desk.stdout.readline()
        assert "the desk is on" in line, (tmp_path / "restarted.log").read_text()[-3000:]
        return in_browser(f"http://127.0.0.1:{port}", script)
    finally:
        desk.terminate()
        desk.communicate(timeout=30)
        log.close()


async def test_captions_labels_and_codes_are_text_and_bounded(tmp_path: Path) -> None:
    """Must show 5: markup in a caption and a label is shown as text and never runs; a
    control character or an over-long caption is refused with the desk's reason on the page."""
    async with running_mesh(tmp_path, pictures=3, rates={"cam-a": 3_000_000},
                            desk_policy=Policy.REQUESTED) as mesh:
        cam_a = mesh.origin("cam-a")

        def script(page: Any) -> dict[str, Any]:
            mesh.start_cameras_from_thread()
            page.wait_for_function("window.desk.tiles.size === 3")
            order = page.evaluate("window.desk.order")
            # Code replacements, loaded from a Photo Mechanic file through the page.
            codes = tmp_path / "codes.txt"
            codes.write_text("ana\tAna Lopez\nfcp\tFC Porto\n", encoding="utf-8")
            page.set_input_files("#codes-file", str(codes))
            page.wait_for_function("Object.keys(window.desk.codes).length === 2")
            press(page, "ArrowRight", "c")
            assert page.evaluate("document.activeElement.id") == "p-caption"
            page.keyboard.type("\\ana\\ scores for \\fcp\\ ")
            page.keyboard.type(MARKUP)
            caption_typed = page.input_value("#p-caption")
            press(page, "Tab")  # leaving the field saves it
            page.fill("#p-headline", "<b>Cup</b>\u202efinal")
            press(page, "Tab")
            wait_marks(page, order[0], "m.headline.length > 0 && m.caption.length > 0")
            page.click("details:has(#labels) summary")
            page.fill("#label-1", MARKUP[:60])
            press(page, "Tab")
            page.wait_for_function("window.desk.labels['1'].startsWith('<img')")
            page.evaluate("document.getElementById('p-thumb').focus()")
            page.evaluate("document.activeElement.blur()")
            press(page, "Shift+Digit1")
            wait_marks(page, order[0], "m.color === 1")
            press(page, "Enter")
            page.wait_for_selector("#viewer:not([hidden])")
            viewer = {"caption": page.text_content("#viewer-caption"), "marks": page.text_content("#viewer-marks"),
                      "stored": page.evaluate("(id) => window.desk.tiles.get(id).marks", order[0])}
            press(page, "Escape")
            tile_label = page.text_content(f'.tile[data-id="{order[0]}"] .thumb .color')
            # The mouse: a tile's third star, its Tag button, a colour from the panel.
            page.click(f'.tile[data-id="{order[1]}"] .stars b[data-n="3"]')
            page.click(f'.tile[data-id="{order[1]}"] .tag')
            page.select_option("#p-color", "4")
            wait_marks(page, order[1], "m.rating === 3 && m.tagged && m.color === 4")
            mouse_focus = focus(page)
            # Refused: a caption over the limit, a control character, a label too long.
            page.click(f'.tile[data-id="{order[0]}"] .info')
            page.fill("#p-caption", "x" * 2001)
            press(page, "Tab")
            page.wait_for_selector("#toast:not([hidden])")
            too_long = page.text_content("#toast")
            bell = page.evaluate("""async (id) => {
                const r = await fetch('/api/marks', {method: 'POST', headers: {'content-type': 'application/json'},
                    body: JSON.stringify({ids: [id], set: {credit: 'bell\\u0007'}})});
                return [r.status, (await r.json()).error];
            }""", order[0])
            long_label = page.evaluate("""async () => {
                const r = await fetch('/api/labels', {method: 'POST', headers: {'content-type': 'application/json'},
                    body: JSON.stringify({class: 2, label: 'x'.repeat(65)})});
                return [r.status, (await r.json()).error];
            }""")
            # A template: the credit on every picture of the camera that has none yet.
            page.fill("#p-caption", "")
            page.fill("#p-headline", "")
            page.fill("#p-keywords", "")
            page.fill("#p-credit", "")
            page.keyboard.type("\\ana\\ / Agency")
            page.click("#p-template")
            page.wait_for_function(
                "[...window.desk.tiles.values()].every(t => t.marks.credit === 'Ana Lopez / Agency')")
            return {"order": order, "typed": caption_typed, "viewer": viewer, "tile_label": tile_label,
                    "too_long": too_long, "bell": bell, "mouse_focus": mouse_focus, "long_label": long_label,
                    "pwned": page.evaluate(PWNED),
                    "injected": page.evaluate("document.querySelectorAll('#panel img:not(#p-thumb), "
                                              ".tile .marks img, #viewer-caption :not(span), #viewer-caption span *, script:not([src])').length")}

        seen = await trio.to_thread.run_sync(in_browser, mesh.url, script)
        card = mesh.desk.card
        first = await mesh.desk.call(card.marks, seen["order"][0])
        others = [await mesh.desk.call(card.marks, i) for i in seen["order"][1:]]
        labels = await mesh.desk.call(card.color_labels)
        origins = {(await mesh.desk.call(card.image, i)).origin for i in seen["order"]}  # type: ignore[union-attr]
    assert seen["typed"] == "Ana Lopez scores for FC Porto " + MARKUP
    shown = seen["viewer"]["stored"]
    assert shown["caption"] == seen["typed"] and shown["headline"] == "<b>Cup</b>\u202efinal"
    assert first.color == 1 and labels[1] == MARKUP[:60]
    assert seen["viewer"]["caption"] == f"<b>Cup</b>\u202efinal{seen['typed']}"  # two spans
    assert MARKUP[:60] in seen["viewer"]["marks"] and seen["tile_label"] == MARKUP[:60]
    assert seen["pwned"] is None and seen["injected"] == 0
    assert "at most 2000" in seen["too_long"]
    assert seen["mouse_focus"] == seen["order"][1] and others[0].rating == 3 and others[0].color == 4
    assert seen["bell"][0] == 400 and "control characters" in seen["bell"][1]
    assert seen["long_label"][0] == 400 and "at most 64" in seen["long_label"][1]
    assert all(m.credit == "Ana Lopez / Agency" for m in [first, *others]) and origins == {cam_a}
