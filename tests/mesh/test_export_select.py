"""Which pictures `cammesh export` takes: its filters combine, a label names a colour class."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.errors import MeshError
from mesh.export_commands import label_class, select
from protocol.store import ImageRecord, Where
from storage.marks import DEFAULT_COLOR_LABELS, Marks


def record(n: int) -> ImageRecord:
    return ImageRecord(image_id=f"{n:064x}", origin="o" * 64, seq=n, name=f"{n}.jpg", size=1,
                       mime="image/jpeg", capture_time=100.0 - n, metadata={}, thumbnail=b"",
                       where=Where.LOCAL)


RECORDS = [record(n) for n in range(5)]
MARKS = {RECORDS[0].image_id: Marks(tagged=True, rating=4, color=1),
         RECORDS[1].image_id: Marks(tagged=True, rating=2),
         RECORDS[2].image_id: Marks(rating=5, color=1),
         RECORDS[3].image_id: Marks(color=2)}
LABELS = {**DEFAULT_COLOR_LABELS, 1: "Front page"}


def chosen(**filters: object) -> list[int]:
    options = {"tagged": False, "rating": None, "label": None, **filters}
    return [r.seq for r in select(RECORDS, MARKS, LABELS, **options)]  # type: ignore[arg-type]


def test_filters_combine_and_the_oldest_capture_comes_first() -> None:
    assert chosen() == [4, 3, 2, 1, 0]
    assert chosen(tagged=True) == [1, 0]
    assert chosen(rating=4) == [2, 0]
    assert chosen(label="front PAGE") == [2, 0]
    assert chosen(label="2") == [3]
    assert chosen(tagged=True, rating=3, label="Front page") == [0]


def test_an_unknown_label_is_refused_with_the_labels_there_are() -> None:
    assert label_class("Winner alt", LABELS) == 2
    with pytest.raises(MeshError, match="'Front page'"):
        label_class("Winner", LABELS)


def test_the_page_export_refuses_bad_filters_and_a_second_export_at_once(tmp_path: Path) -> None:
    from mesh.desk_export import DeskExport

    export = DeskExport(None, tmp_path)  # type: ignore[arg-type]
    assert export._start(None)[0] == 400
    assert export._start({"rating": 9})[0] == 400
    assert export._start({"rating": True})[0] == 400
    assert export._start({"label": ["x"]})[0] == 400
    assert export._start({"tagged": True, "rating": 3})[0] == 200
    status, answer = export._start({"tagged": True})
    assert status == 409 and "under way" in answer["error"]
