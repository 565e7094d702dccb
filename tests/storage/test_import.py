"""Import: folders, duplicates, RAW and movies, hostile files, a full card, a broken extractor."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.store import Where
from storage import thumbnails
from storage.card import Card, iter_card_files
from storage.importer import import_paths
from storage.samples import write_hostile_files, write_sample_jpegs, write_sample_raw

DEVICE = "a" * 64


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    opened = Card.create(tmp_path / "card", device_id=DEVICE, name="cam", capacity=10**8, reserve=0)
    yield opened
    opened.close()


def check_card(card: Card) -> None:
    """Every row's original is complete and hash-correct, and nothing else takes room."""
    for record in card.images():
        if record.where is Where.LOCAL:
            data = card.original_path(record.image_id).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record.image_id
            assert len(data) == record.size
    assert card.usage().used == sum(f.stat().st_size for f in iter_card_files(card.path))


def test_a_folder_is_imported_recursively_with_thumbnails_and_metadata(
    card: Card, tmp_path: Path
) -> None:
    write_sample_jpegs(tmp_path / "DCIM" / "100CAM", 3, seed=1)
    write_sample_jpegs(tmp_path / "DCIM" / "101CAM", 2, seed=2)
    summary = import_paths(card, [tmp_path / "DCIM"], now=1000.0)
    assert len(summary.imported) == 5 and not summary.duplicates and not summary.rejected
    records = card.images()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.name for r in records] == [f"IMG_1_000{i}.JPG" for i in range(3)] + [
        f"IMG_2_000{i}.JPG" for i in range(2)
    ]
    for record in records:
        assert record.thumbnail.startswith(b"\xff\xd8")
        assert record.mime == "image/jpeg"
        assert record.capture_time is not None
        assert record.metadata["make"]
        assert (record.where, record.original_at, record.thumbnail_at) == (
            Where.LOCAL,
            1000.0,
            None,
        )
    assert set(card.thumbnail_sources().values()) == {"embedded"}
    check_card(card)


def test_duplicates_are_recognised_by_their_bytes(card: Card, tmp_path: Path) -> None:
    [picture] = write_sample_jpegs(tmp_path / "a", 1, seed=3)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "renamed.jpg").write_bytes(picture.read_bytes())
    summary = import_paths(card, [tmp_path / "a", tmp_path / "b"], now=1.0)
    assert len(summary.imported) == 1
    assert [d.path for d in summary.duplicates] == [str(tmp_path / "b" / "renamed.jpg")]
    assert summary.duplicates[0].image_id == summary.imported[0].image_id
    again = import_paths(card, [tmp_path], now=2.0)  # tmp_path holds the card too
    assert (len(again.imported), len(again.duplicates)) == (0, 2)
    assert [r.reason for r in again.rejected] == ["it is the card being imported into"]
    assert len(card.images()) == 1
    check_card(card)


def test_raw_jpeg_pairs_and_movies_are_stored_and_listed(card: Card, tmp_path: Path) -> None:
    folder = tmp_path / "shoot"
    [jpeg] = write_sample_jpegs(folder, 1, seed=4)
    write_sample_raw(folder / jpeg.with_suffix(".ARW").name, seed=4)
    write_sample_raw(folder / "DSC_0002.NEF", seed=5, preview_in_ifd=False)
    (folder / "CLIP0001.MOV").write_bytes(b"\0\0\0\x14ftypqt  \0\0\0\0qt  " + bytes(5000))
    summary = import_paths(card, [folder], now=1.0)
    assert len(summary.imported) == 4 and not summary.rejected
    by_name = {r.name: r for r in card.images()}
    assert set(by_name) == {"IMG_4_0000.JPG", "IMG_4_0000.ARW", "DSC_0002.NEF", "CLIP0001.MOV"}
    sources = card.thumbnail_sources()
    assert sources[by_name["IMG_4_0000.ARW"].image_id] == "raw-preview"
    assert sources[by_name["CLIP0001.MOV"].image_id] == "placeholder"
    movie = next(i for i in summary.imported if i.name == "CLIP0001.MOV")
    assert movie.reason
    check_card(card)


def test_hostile_files_are_imported_or_rejected_with_a_reason(card: Card, tmp_path: Path) -> None:
    files = write_hostile_files(tmp_path / "hostile")
    summary = import_paths(card, [tmp_path / "hostile"], now=1.0)
    rejected = {Path(r.path).name: r.reason for r in summary.rejected}
    assert set(rejected) == {"zero-byte.jpg"}
    assert "empty" in rejected["zero-byte.jpg"]
    imported = {Path(i.path).name: i for i in summary.imported}
    for name in ("truncated.jpg", "text.jpg", "bomb.png", "bomb.jpg", "movie.MOV"):
        assert imported[name].thumbnail_source == "placeholder", name
        assert imported[name].reason, name
    total = len(summary.imported) + len(summary.duplicates) + len(summary.rejected)
    assert total == sum(1 for p in (tmp_path / "hostile").rglob("*") if p.is_file())
    for record in card.images():  # names fit to show: no separators, no control characters
        assert "/" not in record.name and all(c.isprintable() for c in record.name)
    assert any(r.name.startswith("ctrl") for r in card.images()) == any(
        "ctrl" in str(p) for p in files.values()
    )
    check_card(card)


def test_what_is_not_a_regular_file_is_rejected_without_blocking(
    card: Card, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    summary = import_paths(card, [tmp_path / "pipe.jpg", tmp_path / "missing.jpg"], now=1.0)
    reasons = [r.reason for r in summary.rejected]
    assert "not a regular file" in reasons[0]
    assert "No such file" in reasons[1]
    assert summary.nothing_read


def test_a_full_card_rejects_what_does_not_fit_and_goes_on(tmp_path: Path) -> None:
    pictures = write_sample_jpegs(tmp_path / "in", 4, seed=6)
    room = sum(p.stat().st_size for p in pictures[:2]) + 100
    with Card.create(
        tmp_path / "card", device_id=DEVICE, name="small", capacity=room, reserve=0
    ) as card:
        summary = import_paths(card, [tmp_path / "in"], now=1.0)
        assert len(summary.imported) == 2
        assert len(summary.rejected) == 2
        assert all("full" in r.reason for r in summary.rejected)
        assert list((card.path / "tmp").iterdir()) == []
        check_card(card)


def test_a_broken_extractor_does_not_stop_the_import(
    card: Card, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pictures = write_sample_jpegs(tmp_path / "in", 2, seed=7)

    def broken(path: Path) -> thumbnails.Extracted:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(thumbnails, "extract", broken)
    summary = import_paths(card, pictures, now=1.0)
    assert len(summary.imported) == 2
    assert all(
        i.thumbnail_source == "placeholder" and "extractor bug" in (i.reason or "")
        for i in summary.imported
    )
    assert "extractor bug" in caplog.text
    check_card(card)


def test_progress_is_reported_per_file(card: Card, tmp_path: Path) -> None:
    write_sample_jpegs(tmp_path / "in", 3, seed=8)
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    seen: list[tuple[int, int]] = []
    import_paths(
        card,
        [tmp_path / "in"],
        now=1.0,
        progress=lambda done, total, path: seen.append((done, total)),
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_raw_and_its_jpeg_in_one_folder_share_a_pair_key(card: Card, tmp_path: Path) -> None:
    """storage/pairs.py: same folder, same stem (case aside); imported in two runs and in
    either order, the key is the same, as it is for FTP uploads arriving one at a time."""
    folder = tmp_path / "DCIM" / "100NIKON"
    [jpeg, other] = write_sample_jpegs(folder, 2, seed=7)
    raw = write_sample_raw(folder / jpeg.with_suffix(".nef").name, seed=7)
    write_sample_raw(folder / "LONE_0001.NEF", seed=8)
    [another] = write_sample_jpegs(tmp_path / "DCIM" / "101NIKON", 1, seed=9)
    elsewhere = another.rename(another.with_name(jpeg.name))  # another shot, the same name
    (folder / "notes.txt").write_text("not a picture")
    import_paths(card, [raw], now=1.0)  # the RAW first, on its own
    import_paths(card, [tmp_path / "DCIM"], now=2.0)
    key = {Path(r.name).stem + Path(r.name).suffix.lower(): r.metadata.get("pair")
           for r in card.images() if r.name != jpeg.name}
    shot = {r.image_id: r.metadata.get("pair") for r in card.images() if r.name == jpeg.name}
    here = shot[hashlib.sha256(jpeg.read_bytes()).hexdigest()]
    there = shot[hashlib.sha256(elsewhere.read_bytes()).hexdigest()]
    assert here == key[jpeg.stem + ".nef"] and here is not None
    assert len({here, there, key[other.stem + ".jpg"], key["LONE_0001.nef"]}) == 4
    assert key["notes.txt"] is None
