"""The desk's marks routes over real HTTP: set, read back, refuse with a reason; codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from mesh.desk_marks import expand_codes, parse_codes
from storage.marks import Marks
from tests.mesh.test_desk import desk_running, http


async def post(port: int, path: str, value: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    answer = await http(port, "POST", path, body=json.dumps(value).encode())
    return answer.status, answer.json()


async def test_marks_set_over_http_are_on_the_card_and_in_the_tiles(tmp_path: Path) -> None:
    async with desk_running(tmp_path) as desk:
        ids = [desk.peer, desk.local[0]]
        status, answer = await post(desk.port, "/api/marks", {
            "ids": ids, "set": {"rating": 4, "tagged": True, "keywords": ["rain", " ", "pitch"]}})
        assert status == 200 and answer["marks"][desk.peer]["rating"] == 4
        card = desk.runtime.card
        for image_id in ids:
            assert await desk.runtime.call(card.marks, image_id) == Marks(
                rating=4, tagged=True, keywords=("rain", "pitch"))
        with trio.fail_after(10):
            while True:
                tiles = {t["id"]: t for t in (await http(desk.port, "GET", "/api/tiles")).json()["tiles"]}
                if tiles[desk.peer]["marks"]["rating"] == 4:
                    break
                await trio.sleep(0.05)
        assert tiles[desk.local[1]]["marks"]["rating"] is None
        assert tiles[desk.peer]["marks"]["keywords"] == ["rain", "pitch"]


@pytest.mark.parametrize("body, reason", [
    ({"ids": ["x"], "set": {"rating": 1}}, "64 lowercase"),
    ({"ids": [], "set": {"rating": 1}}, "list of 1"),
    ({"set": {"rating": 1}}, "list of 1"),
    ({"ids": "ID", "set": {"stars": 1}}, "no mark is called stars"),
    ({"ids": "ID", "set": {"rating": 6}}, "0-5 stars"),
    ({"ids": "ID", "set": {"color": "red"}}, "colour class is 1-8"),
    ({"ids": "ID", "set": {"caption": "x" * 2001}}, "at most 2000"),
    ({"ids": "ID", "set": {"headline": "a\x00b"}}, "control characters"),
    ({"ids": "ID", "set": {"keywords": "rain"}}, "list of words"),
    ({"ids": "ID", "set": {}}, "object of marks"),
])
async def test_a_bad_mark_is_400_with_its_reason_and_changes_nothing(
    tmp_path: Path, body: dict, reason: str  # type: ignore[type-arg]
) -> None:
    async with desk_running(tmp_path) as desk:
        if body.get("ids") == "ID":
            body = {**body, "ids": [desk.local[0], desk.peer]}
        status, answer = await post(desk.port, "/api/marks", body)
        assert status == 400 and reason in answer["error"], answer
        for image_id in [desk.peer, *desk.local]:
            assert await desk.runtime.call(desk.runtime.card.marks, image_id) == Marks()


async def test_labels_templates_and_codes(tmp_path: Path) -> None:
    async with desk_running(tmp_path) as desk:
        labels = (await http(desk.port, "GET", "/api/labels")).json()["labels"]
        assert labels["1"] == "Winner" and len(labels) == 8
        status, answer = await post(desk.port, "/api/labels", {"class": 3, "label": "<b>Pick</b>"})
        assert status == 200 and answer["labels"]["3"] == "<b>Pick</b>"
        assert (await desk.runtime.call(desk.runtime.card.color_labels))[3] == "<b>Pick</b>"
        for bad in ({"class": 9, "label": "x"}, {"class": 1, "label": "x" * 65}, {"class": 1}):
            assert (await post(desk.port, "/api/labels", bad))[0] == 400
        # A template for the camera's pictures: only where the caption is still empty.
        camera = (await desk.runtime.call(desk.runtime.card.image, desk.peer)).origin  # type: ignore[union-attr]
        status, answer = await post(desk.port, "/api/template", {
            "origin": camera, "set": {"credit": "Ana Lopez / Agency", "caption": "Cup final"},
            "only_empty": True})
        assert status == 200 and answer["pictures"] == 1
        marks = await desk.runtime.call(desk.runtime.card.marks, desk.peer)
        assert (marks.credit, marks.caption) == ("Ana Lopez / Agency", "Cup final")
        assert (await post(desk.port, "/api/template", {"origin": camera, "set": {"rating": 5}}))[0] == 400
        status, answer = await post(desk.port, "/api/codes", {"text": "ana\tAna Lopez\nfc\tFC Porto\n"})
        assert status == 200 and answer["codes"] == 2
        codes = (await http(desk.port, "GET", "/api/codes")).json()["codes"]
        assert codes == {"ana": "Ana Lopez", "fc": "FC Porto"}


def test_code_replacement_files_as_photo_mechanic_writes_them() -> None:
    codes = parse_codes("ana\tAna Lopez\r\n\n# a comment without tab\nfc\tFC Porto\tFCP\nana\tAna M. Lopez\n")
    assert codes == {"ana": "Ana M. Lopez", "fc": "FC Porto"}
    assert expand_codes(r"\ana\ scores for \fc\, \nope\ and a \ lone", codes) == \
        r"Ana M. Lopez scores for FC Porto, \nope\ and a \ lone"
    with pytest.raises(ValueError, match="line 1"):
        parse_codes("x\tbell\x07")


async def test_a_kept_template_captions_the_cameras_later_pictures(tmp_path: Path) -> None:
    from mesh.desk import Desk
    from protocol.store import ImageRecord, Where

    async with desk_running(tmp_path) as desk:
        rt = desk.runtime
        board = Desk(rt)
        async with trio.open_nursery() as nursery:
            await nursery.start(board.run)
            camera = board.board.tiles[desk.peer].facts.origin
            answer = await board.marks.answer("POST", "/api/template", {
                "origin": camera, "set": {"credit": "Agency"}, "keep": True})
            assert answer == {"ok": True, "pictures": 1}
            later = "ab" * 32
            await rt.call(rt.card.add_thumbnail, ImageRecord(
                image_id=later, origin=camera, seq=2, name="IMG_2.JPG", size=10, mime="image/jpeg",
                capture_time=None, metadata={}, thumbnail=b"", where=Where.ABSENT), rt.now())
            board.reread([later])  # as the thumbnail's arrival makes the desk do
            with trio.fail_after(10):
                while (await rt.call(rt.card.marks, later)).credit != "Agency":
                    await trio.sleep(0.02)
            # Forgotten: a camera's next picture keeps its own (empty) credit.
            await board.marks.answer("POST", "/api/template", {"origin": camera, "set": {}, "keep": True})
            assert board.marks.templates == {}
            assert (await rt.call(rt.card.marks, desk.local[0])).credit == ""  # another camera's
            nursery.cancel_scope.cancel()
