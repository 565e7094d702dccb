"""The desk page's delivery queue in headless Chromium (issue 19, Must show 5's refused server).

A desk with a tagged picture delivers to a loopback port where no server listens yet: the page
shows the queue and the reason.  Then a real FTP server comes up on that port: the page shows
the picture delivered and the reason gone.  The server's reason reaches the page as text.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from mesh.desk_commands import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from mesh.deliver import Deliverer  # noqa: E402
from mesh.deliver_servers import parse_target  # noqa: E402
from mesh.desk import Desk, serve_desk  # noqa: E402
from mesh.desk_demo import DeviceSpec, make_mesh, runtime_for  # noqa: E402
from protocol.messages import Role  # noqa: E402
from storage.card import Card  # noqa: E402
from storage.importer import import_paths  # noqa: E402
from tests.integration.agency_servers import USER, delivered  # noqa: E402
from tests.integration.nodes import write_pictures  # noqa: E402
from tests.integration.test_deliver import server_for  # noqa: E402

WAIT_MS = 90_000


async def test_the_page_shows_the_queue_and_a_refused_servers_reason(tmp_path: Path) -> None:
    server, credentials = server_for("ftp", tmp_path)  # not started yet: refused
    (desk_path,) = make_mesh(tmp_path / "mesh", [DeviceSpec("desk", Role.DESK)])
    shots = write_pictures(tmp_path / "own", 1, side=500, seed=2)
    with Card.open(desk_path) as card:
        (image_id,) = [i.image_id for i in import_paths(card, shots, now=time.time()).imported]
        card.set_marks(image_id, tagged=True, caption="<img src=x onerror=alert(1)>")
        desk = runtime_for(desk_path, card)
        target = parse_target(f"ftp://{USER}@127.0.0.1:{server.port}/in", credentials)
        deliverer = Deliverer(desk, target, poll_s=0.2, backoff=(0.5, 1.0))
        async with trio.open_nursery() as nursery:
            await nursery.start(desk.run)
            board = Desk(desk)
            board.routes.append(deliverer.route)
            await nursery.start(deliverer.run)
            url = await nursery.start(lambda task_status: serve_desk(
                desk, host="127.0.0.1", port=0, desk=board, task_status=task_status))

            def look(page: Any) -> tuple[str, str, str]:
                problem = page.locator("#delivery .problem")
                problem.wait_for(state="visible")
                refused = problem.text_content()
                row = page.locator(f"#delivery li[data-id='{image_id}']").text_content()
                trio.from_thread.run_sync(server.start)
                page.wait_for_selector(f"#delivery li.delivery-delivered[data-id='{image_id}']")
                page.wait_for_selector("#delivery .problem", state="hidden")
                return refused, row, page.locator("#delivery .summary").text_content()

            refused, row, summary = await trio.to_thread.run_sync(in_browser, url, look)
            nursery.cancel_scope.cancel()
    server.kill()
    assert "connection refused" in refused and f"127.0.0.1:{server.port}" in refused
    assert "retry in" in row and "queued" in row
    assert summary.startswith("0 waiting, 1 delivered")
    assert len(delivered(server.log)) == 2  # the original and its sidecar


def in_browser(url: str, script: Any) -> Any:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(url + "/")
            result = script(page)
            assert not errors, f"the page raised: {errors}"
            assert not dialogs, f"a script ran: {dialogs}"
            return result
        finally:
            browser.close()


async def test_the_export_button_writes_the_selects_read_out_of_the_camera(tmp_path: Path) -> None:
    import hashlib

    from mesh.desk_export import DeskExport
    from tests.integration.test_deliver import desk_and_camera

    folder = tmp_path / "selects"
    async with desk_and_camera(tmp_path / "mesh") as mesh:
        picked = mesh.ids[:2]  # on the camera only: the desk pulls thumbnails
        for image_id in picked:
            await mesh.desk.call(mesh.desk.card.set_marks, image_id, tagged=True, rating=3)
        exporter = DeskExport(mesh.desk, folder)
        async with trio.open_nursery() as nursery:
            await nursery.start(exporter.run)
            board = Desk(mesh.desk)
            board.routes.append(exporter.route)
            url = await nursery.start(lambda task_status: serve_desk(
                mesh.desk, host="127.0.0.1", port=0, desk=board, task_status=task_status))

            def press(page: Any) -> str:
                page.locator("#delivery .export-go").click()
                page.wait_for_function(
                    "window.deskExport && !window.deskExport.running && window.deskExport.total")
                return page.locator("#delivery .export-state").text_content()

            said = await trio.to_thread.run_sync(in_browser, url, press)
            nursery.cancel_scope.cancel()
    assert said.startswith("exported 2 of 2"), said
    originals = [p for p in folder.iterdir() if p.suffix != ".xmp"]
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in originals} == set(picked)
    assert all(p.with_suffix(".xmp").exists() for p in originals)
