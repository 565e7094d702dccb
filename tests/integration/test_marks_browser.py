"""Marks set by keyboard on one desk's page travel (issue 19, Must show 1), in headless Chromium.

A camera and two desks as real processes (tests/integration/test_marks.py); the editor marks
a picture on desk-a's page by keys alone; desk-a's process is restarted and its page shows
the marks again; desk-b's page shows them, as does the camera's ``cammesh ls --json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.nodes import wait_until

# Skips this module where the browser tests cannot run (no playwright, no Chromium).
from tests.integration.test_desk_browser import in_browser, tiles
from tests.integration.test_marks import camera_and_two_desks, shown

pytestmark = pytest.mark.integration


def test_marks_set_by_keyboard_survive_a_desk_restart_and_show_at_the_other_desk(
    tmp_path: Path,
) -> None:
    with camera_and_two_desks(tmp_path) as mesh:
        a, b = mesh.desks["desk-a"], mesh.desks["desk-b"]

        def cull(page: Any) -> str:
            page.wait_for_function("window.desk.tiles.size === 3")
            page.keyboard.press("ArrowRight")  # the focus lands on the newest picture
            focused: str = page.evaluate("window.desk.focus")
            for key in ("4", "t", "Shift+Digit3"):
                page.keyboard.press(key)
            page.wait_for_function(
                f"(() => {{ const m = window.desk.tiles.get('{focused}').marks;"
                " return m.rating === 4 && m.tagged && m.color === 3; })()")
            return focused

        image_id = in_browser(a.url, cull)
        want = {"rating": 4, "tagged": True, "color": 3}
        a.stop()
        a.start()

        def marks_shown(page: Any) -> dict[str, Any]:
            page.wait_for_function("window.desk.tiles.size === 3")
            return shown(tiles(page)[image_id]["marks"])

        assert in_browser(a.url, marks_shown) == want  # the restarted desk, from its card
        wait_until("desk-b to have the marks", lambda: shown(b.tiles()[image_id]["marks"]) == want)
        assert in_browser(b.url, marks_shown) == want
        assert shown(mesh.camera_marks()[image_id]["marks"]) == want
