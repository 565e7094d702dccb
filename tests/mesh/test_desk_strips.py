"""mesh/desk_strips.py: which strip frames of a movie have their part on the card (FIG. 15B)."""

from __future__ import annotations

from mesh.desk_board import Board, Facts
from mesh.desk_strips import parts_in, strip_json
from protocol.store import TransferState, Where

POINTS = [(0.0, 48, "interval"), (10.0, 1000, "interval"), (12.0, 1500, "scene"), (20.0, 3000, "interval")]


def test_a_frame_is_marked_once_its_whole_part_is_in_and_only_after_those_before_it() -> None:
    size = 4000
    assert [parts_in(POINTS, done, size) for done in (0, 999, 1000, 1499, 1500, 2999, 3000, 3999)] == [
        0, 0, 1, 1, 2, 2, 3, 3]
    assert parts_in(POINTS, size, size) == 4  # the last part ends with the file


def test_a_frame_whose_offset_the_container_did_not_say_waits_for_the_whole_movie() -> None:
    points = [(0.0, 48, "interval"), (10.0, None, "interval"), (20.0, 3000, "interval")]
    assert parts_in(points, 2999, 4000) == 0  # frame 0's part ends where the next known one starts
    assert parts_in(points, 3000, 4000) == 1  # frame 1: no offset, no mark before the end
    assert parts_in(points, 4000, 4000) == 3


def _facts(where: Where, partial: int = 0) -> Facts:
    return Facts(
        image_id="a" * 64, origin="b" * 64, seq=1, name="C0001.MP4", size=4000, mime="video/mp4",
        capture_time=1.0, metadata={"duration": 30.0}, where=where, thumbnail_at=1.0,
        original_at=None, decision=TransferState.REQUESTED, holders=(), held_for=None,
        strip=tuple(POINTS), partial=partial,
    )


def test_the_board_marks_frames_from_progress_then_keeps_them_until_the_card_says_more() -> None:
    board = Board("c" * 64)
    board.update([_facts(Where.ABSENT, partial=1000)])  # resumed: a partial from before
    tile = board.tiles["a" * 64]
    assert board.tile_json(tile)["strip"] == strip_json(POINTS, 1)
    board.progress("a" * 64, "b" * 64, 3100, 4000)
    assert board.tile_json(tile)["strip"]["in"] == 3
    board.stopped("a" * 64)  # the stream's end reported, the card not read again yet
    assert board.tile_json(tile)["strip"]["in"] == 3
    board.update([_facts(Where.LOCAL)])
    assert board.tile_json(tile)["strip"]["in"] == 4


def test_a_still_has_no_strip() -> None:
    board = Board("c" * 64)
    still = _facts(Where.ABSENT)
    board.update([Facts(**{**{f: getattr(still, f) for f in Facts.__slots__}, "strip": ()})])
    assert board.tile_json(board.tiles["a" * 64])["strip"] is None
