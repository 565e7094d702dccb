"""The desk's smaller copies, sealed holdings and device names over HTTP (issue 17).

A smaller copy says what it is (its long edge, its bytes, kept or not) and is kept from the
page as `cammesh keep` keeps it; a long edge or quality out of range is refused with the CLI's
own words; a copy held sealed without its key says so; devices are shown by name.  Against a
real card, runtime and hypercorn (tests/mesh/test_desk.py); the page itself is driven in
tests/integration/test_desk_browser.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from PIL import Image

from mesh.card_commands import held_form, held_json
from mesh.control import sealed_without_key
from mesh.desk_board import Board, CopyFacts, Facts
from mesh.identity import short_id_of
from protocol.store import TransferState, Where
from storage.samples import write_sample_jpegs
from tests.mesh.test_desk import Answer, Running, desk_running, http


async def post(desk: Running, path: str, body: dict[str, Any]) -> Answer:
    return await http(desk.port, "POST", path, body=json.dumps(body).encode(),
                      headers={"content-type": "application/json"})


async def tile(desk: Running, image_id: str,
               until: Callable[[dict[str, Any]], object] = bool) -> dict[str, Any]:
    """The tile of ``image_id`` once ``until(tile)`` holds (the board reads the card anew)."""
    with trio.fail_after(20):
        while True:
            tiles = (await http(desk.port, "GET", "/api/tiles")).json()["tiles"]
            t = next(t for t in tiles if t["id"] == image_id)
            if until(t):
                return t
            await trio.sleep(0.05)


def sample_copy(tmp_path: Path) -> tuple[bytes, tuple[int, int]]:
    path = write_sample_jpegs(tmp_path / "copy", 1)[0]
    with Image.open(path) as image:
        return path.read_bytes(), image.size


async def test_a_smaller_copy_says_its_long_edge_and_is_kept_from_the_page(tmp_path: Path) -> None:
    data, (width, height) = sample_copy(tmp_path)
    async with desk_running(tmp_path, smaller=data) as desk:
        t = await tile(desk, desk.peer)
        assert t["mark"] == "smaller"
        assert t["smaller"] == {"size": len(data), "width": width, "height": height,
                                "long_edge": max(width, height), "kept": False}
        kept = await post(desk, "/api/keep", {"ids": [desk.peer]})
        assert kept.status == 200 and kept.json()["kept"] == {desk.peer: True}
        details = await desk.runtime.call(desk.runtime.card.smaller_details)
        assert details[desk.peer].kept
        await tile(desk, desk.peer, lambda t: t["smaller"]["kept"])
        # All or nothing: a picture without a copy refuses the lot, and says why.
        mixed = await post(desk, "/api/keep", {"ids": [desk.peer, desk.local[0]], "keep": False})
        assert mixed.status == 409 and "no smaller copy" in mixed.json()["error"]
        assert (await desk.runtime.call(desk.runtime.card.smaller_details))[desk.peer].kept
        wrong = await post(desk, "/api/keep", {"ids": [desk.peer], "keep": "yes"})
        assert wrong.status == 400 and "true" in wrong.json()["error"]
        let_go = await post(desk, "/api/keep", {"ids": [desk.peer], "keep": False})
        assert let_go.status == 200 and let_go.json()["kept"] == {desk.peer: False}
        await tile(desk, desk.peer, lambda t: not t["smaller"]["kept"])


async def test_a_kept_copy_downloads_apart_from_its_original(tmp_path: Path) -> None:
    data, _ = sample_copy(tmp_path)
    async with desk_running(tmp_path, smaller=data) as desk:
        copy = await http(desk.port, "GET", f"/original/{desk.peer}?copy=1&download=1")
        assert copy.status == 200 and copy.body == data
        assert "IMG_9999-smaller.jpg" in copy.headers["content-disposition"]
        none = await http(desk.port, "GET", f"/original/{desk.local[0]}?copy=1")
        assert none.status == 404 and "no smaller copy" in none.json()["error"]


async def test_a_long_edge_or_quality_out_of_range_is_refused_in_the_cli_s_words(
    tmp_path: Path,
) -> None:
    async with desk_running(tmp_path) as desk:
        for body, words in [
            ({"max_side": "5"}, "the long edge must be a whole number of pixels (empty: the "
                                "original size) from 16 to 16384: 5 is not one"),
            ({"max_side": "12.5"}, "the long edge must be a whole number"),
            ({"max_side": 20000}, "from 16 to 16384: 20000 is not one"),
            ({"max_side": "1024", "quality": "0"}, "the JPEG quality must be a whole number "
                                                   "(empty: 85) from 1 to 100: 0 is not one"),
            ({"quality": 101}, "from 1 to 100: 101 is not one"),
        ]:
            answer = await post(desk, "/api/request", {"ids": [desk.peer], **body})
            assert answer.status == 400 and words in answer.json()["error"], (body, answer.body)
        assert await desk.runtime.call(desk.runtime.card.decision, desk.peer) is None
        # What a person types in the fields: digits as text, blanks for "not given".
        typed = await post(desk, "/api/request", {"ids": [desk.peer], "max_side": " 1024 ",
                                                  "quality": ""})
        assert typed.status == 200
        # No camera is connected: it waits, and the tile says why (the node's own reason).
        waiting = await tile(desk, desk.peer, lambda t: t["mark"] == "requested" and t["note"])
        assert "connected" in waiting["note"]


async def test_a_copy_held_sealed_without_its_key_says_so(tmp_path: Path) -> None:
    async with desk_running(tmp_path, held_sealed=b"ciphertext the desk cannot read" * 40) as desk:
        t = await tile(desk, desk.peer)
        assert t["mark"] == "held" and t["held_for"] == "cam" and t["sealed"] is True
        mine = await tile(desk, desk.local[0])
        assert mine["sealed"] is False
        # `cammesh status` counts it the same way, and `cammesh ls --held` says it.
        card = desk.runtime.card
        assert await desk.runtime.call(sealed_without_key, card) == 1
        [held] = await desk.runtime.call(card.held_originals)
        picture = await desk.runtime.call(card.image, desk.peer)
        assert held_json(held, picture=picture)["sealed_without_key"] is True
        assert held_form(held, picture) == "sealed, no key here"
        keyed = dataclasses.replace(picture, wrapped_key=b"k" * 32)
        assert held_form(held, keyed) == "sealed, key here"
        assert held_form(dataclasses.replace(held, digest=held.image_id), None) == "as it is"


def facts(image_id: str, origin: str, **more: Any) -> Facts:
    values: dict[str, Any] = dict(
        image_id=image_id, origin=origin, seq=1, name="IMG_1.JPG", size=1000, mime="image/jpeg",
        capture_time=1.0, metadata={}, where=Where.ABSENT, thumbnail_at=1.0, original_at=None,
        decision=TransferState.UNTRANSMITTED, holders=(), held_for=None)
    return Facts(**{**values, **more})


def test_devices_are_shown_by_name_with_the_short_id_only_where_names_collide() -> None:
    me, cam_a, cam_b, stranger = "a" * 64, "b" * 64, "c" * 64, "d" * 64
    board = Board(me)
    board.name(me, "desk")
    board.name(cam_a, "cam")
    board.update([facts("1" * 64, cam_a, holders=(me, stranger)),
                  facts("2" * 64, stranger, held_for=cam_a)])
    shown = {t["id"]: t for t in map(board.tile_json, board.tiles.values())}
    assert shown["1" * 64]["holders"] == ["desk", short_id_of(stranger)]
    assert shown["2" * 64]["held_for"] == "cam"
    status = board.status_json()
    assert {c["id"]: c["name"] for c in status["cameras"]} == {
        cam_a: "cam", stranger: short_id_of(stranger)}
    assert status["me"]["name"] == "desk"
    board.name(cam_b, "Cam")  # a second camera of (nearly) that name: both get their short id
    assert board.shown(cam_a) == f"cam ({short_id_of(cam_a)})"
    assert board.shown(cam_b) == f"Cam ({short_id_of(cam_b)})"
    assert board.tile_json(board.tiles["2" * 64])["held_for"] == f"cam ({short_id_of(cam_a)})"


def test_a_copy_without_a_readable_frame_still_says_it_is_a_copy() -> None:
    copy = CopyFacts(size=10, width=None, height=None, kept=True)
    assert copy.as_json() == {"size": 10, "width": None, "height": None, "long_edge": None,
                              "kept": True}
