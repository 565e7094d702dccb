"""The card as a folder: atomic originals by hash, capacity on disk, recovery on open, threads."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.store import DispersalState, ImageRecord, Incoming, Where
from storage.card import Card, GivenExtraction, display_name, iter_card_files
from storage.errors import (
    AmbiguousId,
    CardBusy,
    CardExists,
    CardFullError,
    NotACard,
    NotFound,
    StoreError,
)

DEVICE = "a" * 64
PEER = "b" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bytes_on_disk(card: Card) -> int:
    return sum(f.stat().st_size for f in iter_card_files(card.path))


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    opened = Card.create(
        tmp_path / "card", device_id=DEVICE, name="cam", capacity=10_000, reserve=0
    )
    yield opened
    opened.close()


def test_create_then_open_keeps_the_settings(tmp_path: Path) -> None:
    Card.create(
        tmp_path / "c", device_id=DEVICE, name="desk one", capacity=10**9, role="desk"
    ).close()
    with Card.open(tmp_path / "c") as card:
        assert (card.device_id, card.name, card.role, card.capacity) == (
            DEVICE,
            "desk one",
            "desk",
            10**9,
        )
        assert card.reserve_bytes == 10**7  # the default: 1%
        assert card.usage().reserved == 10**7
        assert card.recovered == []


def test_a_card_is_not_created_twice(tmp_path: Path) -> None:
    Card.create(tmp_path / "c", device_id=DEVICE, name="cam", capacity=1000).close()
    with pytest.raises(CardExists):
        Card.create(tmp_path / "c", device_id=DEVICE, name="cam", capacity=1000)


def test_a_folder_with_other_things_can_become_a_card(tmp_path: Path) -> None:
    (tmp_path / "c" / "mesh").mkdir(parents=True)  # the device identity goes first
    Card.create(tmp_path / "c", device_id=DEVICE, name="cam", capacity=1000).close()
    assert (tmp_path / "c" / "mesh").is_dir()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device_id": "xyz"}, "device id"),
        ({"role": "phone"}, "role"),
        ({"name": "a/b"}, "card name"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": 100, "reserve": 100}, "reserve"),
    ],
)
def test_bad_settings_are_refused_and_leave_no_card(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    settings: dict[str, object] = {"device_id": DEVICE, "name": "cam", "capacity": 1000, **kwargs}
    with pytest.raises(StoreError, match=match):
        Card.create(tmp_path / "c", **settings)  # type: ignore[arg-type]
    with pytest.raises(NotACard):
        Card.open(tmp_path / "c")


def test_a_folder_without_a_catalog_is_not_a_card(tmp_path: Path) -> None:
    with pytest.raises(NotACard, match="cammesh init"):
        Card.open(tmp_path)
    with pytest.raises(NotACard):
        Card.open(tmp_path / "missing")


def test_an_original_is_stored_byte_identical_under_its_hash(card: Card) -> None:
    data = bytes(range(256)) * 7
    record = card.add_local(data, name="IMG_1.JPG", now=3.0)
    path = card.original_path(record.image_id)
    assert path == card.path / "originals" / record.image_id[:2] / record.image_id
    assert path.read_bytes() == data
    assert record.image_id == sha(data)
    assert list((card.path / "tmp").iterdir()) == []
    assert card.usage().used == bytes_on_disk(card) == len(data)


def test_pictures_and_usage_survive_a_reopen(card: Card) -> None:
    records = [card.add_local(b"%d" % i * 100, name=f"{i}.jpg", now=float(i)) for i in range(5)]
    usage = card.usage()
    card.close()
    with Card.open(card.path) as again:
        assert again.images() == records
        assert again.usage() == usage
        assert again.add_local(b"new" * 9, name="n.jpg", now=9.0).seq == 6


def test_a_write_past_capacity_leaves_nothing_behind(card: Card, tmp_path: Path) -> None:
    card.add_local(b"x" * 9000, name="big.jpg", now=1.0)
    source = tmp_path / "too-big.jpg"
    source.write_bytes(b"y" * 1001)
    with pytest.raises(CardFullError, match=r"1\.0 kB") as caught:
        card.add_original(
            source, name="too-big.jpg", now=2.0, extracted=lambda p: pytest.fail("no extract")
        )
    assert "free" in str(caught.value)
    assert len(card.images()) == 1
    assert list((card.path / "tmp").iterdir()) == []
    assert card.usage().used == bytes_on_disk(card) == 9000


def test_a_duplicate_needs_no_room_even_on_a_full_card(card: Card, tmp_path: Path) -> None:
    source = tmp_path / "a.jpg"
    source.write_bytes(b"z" * 6000)
    first, new = card.add_original(source, name="a.jpg", now=1.0, extracted=GivenExtraction())
    assert new
    again, new = card.add_original(
        source, name="copy.jpg", now=2.0, extracted=lambda p: pytest.fail("x")
    )
    assert (again, new) == (first, False)


def test_importing_a_picture_known_by_thumbnail_makes_it_local(card: Card) -> None:
    data = b"from a peer" * 10
    peer = ImageRecord(
        sha(data), PEER, 7, "P.JPG", len(data), "image/jpeg", None, {}, b"t", Where.ABSENT
    )
    card.add_thumbnail(peer, 5.0)
    record, new = card.add_original(
        data, name="P.JPG", now=6.0, extracted=lambda p: pytest.fail("x")
    )
    assert not new
    assert (record.where, record.origin, record.seq, record.original_at) == (
        Where.LOCAL,
        PEER,
        7,
        6.0,
    )
    assert card.read_original(record.image_id, 0, 1000) == data


def test_open_removes_and_reports_what_an_interrupted_write_left(card: Card) -> None:
    kept = card.add_local(b"kept" * 50, name="k.jpg", now=1.0)
    held_id = sha(b"held")
    card.reserve(held_id, 100)
    card.write_partial(held_id, Incoming.HELD, 0, b"0123456789")
    card.close()
    (card.path / "tmp" / "in-123").write_bytes(b"half a picture")
    stray = card.path / "originals" / "ee" / ("e" * 64)
    stray.parent.mkdir()
    stray.write_bytes(b"renamed but never listed")
    (card.path / "held" / ("c" * 64)).write_bytes(b"never listed")
    (card.path / "originals" / "stray.txt").write_bytes(b"not a shard folder")
    with (card.path / "partial" / "held" / held_id).open("ab") as f:
        f.write(b"torn tail")  # written, but its length never committed
    with Card.open(card.path) as again:
        report = " | ".join(again.recovered)
        assert "unfinished write in-123" in report
        assert "eeeeeeeeeeee" in report and "cccccccccccc" in report
        assert "trimmed partial held" in report
        assert not stray.exists()
        assert not (card.path / "originals" / "stray.txt").exists()
        assert list((card.path / "tmp").iterdir()) == []
        assert again.partial_offset(held_id, Incoming.HELD) == 10
        assert (card.path / "partial" / "held" / held_id).read_bytes() == b"0123456789"
        assert again.read_original(kept.image_id, 0, 4) == b"kept"
        assert again.usage().used == bytes_on_disk(again) == 200 + 10


def test_an_original_deleted_by_hand_is_reported_and_marked_absent(card: Card) -> None:
    record = card.add_local(b"gone" * 10, name="g.jpg", now=1.0)
    card.close()
    (card.path / "originals" / record.image_id[:2] / record.image_id).unlink()
    with Card.open(card.path) as again:
        assert any("missing" in line for line in again.recovered)
        got = again.image(record.image_id)
        assert got is not None and got.where is Where.ABSENT
        assert again.usage().used == 0


def test_freeing_an_original_removes_its_file(card: Card) -> None:
    record = card.add_local(b"f" * 500, name="f.jpg", now=1.0)
    card.set_dispersion(record.image_id, PEER, DispersalState.STORED, 2.0)
    card.free_original(record.image_id, 3.0)
    assert not (card.path / "originals" / record.image_id[:2] / record.image_id).exists()
    assert card.usage().used == bytes_on_disk(card) == 0
    with pytest.raises(NotFound):
        card.original_path(record.image_id)


def test_a_peer_cannot_choose_a_path(card: Card) -> None:
    with pytest.raises(StoreError, match="not an image id"):
        card.write_partial("../../etc/passwd", Incoming.HELD, 0, b"x")
    assert bytes_on_disk(card) == 0


def test_an_original_for_an_unknown_picture_is_refused_and_kept(card: Card) -> None:
    image_id = sha(b"data")
    card.write_partial(image_id, Incoming.ORIGINAL, 0, b"data")
    with pytest.raises(NotFound, match="thumbnail must come first"):
        card.finish_partial(image_id, Incoming.ORIGINAL, image_id, 1.0)
    assert card.partial_offset(image_id, Incoming.ORIGINAL) == 4
    with pytest.raises(NotFound):
        card.set_dispersion(image_id, PEER, DispersalState.REQUESTED, 1.0)
    with pytest.raises(StoreError, match="owner"):
        card.finish_partial(image_id, Incoming.HELD, image_id, 1.0)


def test_a_smaller_copy_of_a_non_picture_is_a_clear_error(card: Card) -> None:
    record = card.add_local(b"not a picture at all", name="notes.txt", now=1.0, mime="text/plain")
    with pytest.raises(StoreError, match=r"cannot make a smaller copy of 'notes\.txt'"):
        card.smaller_copy(record.image_id, 100, 50)


def test_ids_resolve_from_unique_prefixes(card: Card) -> None:
    records = [card.add_local(b"%d" % i * 30, name=f"{i}.jpg", now=1.0) for i in range(40)]
    target = records[0].image_id
    assert card.resolve(target[:12].upper()) == target
    with pytest.raises(AmbiguousId):
        card.resolve(target[0])  # 40 ids: some share the first digit
    with pytest.raises(NotFound, match="hexadecimal"):
        card.resolve("xyz")
    missing = next(
        p
        for p in (f"{i:02x}" for i in range(256))
        if not any(r.image_id.startswith(p) for r in records)
    )
    with pytest.raises(NotFound, match="no picture"):
        card.resolve(missing)


def test_a_closed_card_refuses_calls(card: Card) -> None:
    card.close()
    with pytest.raises(StoreError, match="closed"):
        card.images()
    card.close()  # closing twice is harmless


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("IMG_0001.JPG", "IMG_0001.JPG"),
        ("../../etc/passwd", "passwd"),
        ("C:\\DCIM\\IMG.JPG", "IMG.JPG"),
        ("ctrl\x01\x1b[31m\n.jpg", "ctrl__[31m_.jpg"),
        ("", "unnamed"),
        ("/", "unnamed"),
        ("x" * 300, "x" * 255),
    ],
)
def test_names_are_made_safe_to_show(name: str, shown: str) -> None:
    assert display_name(name) == shown


def test_calls_from_many_threads_are_serialised(card: Card) -> None:
    errors: list[BaseException] = []

    def capture(worker: int) -> None:
        try:
            for i in range(10):
                card.add_local(b"w%d-%d" % (worker, i), name=f"{worker}-{i}.jpg", now=1.0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=capture, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.seq for r in card.images()) == list(range(1, 41))
    assert card.usage().used == bytes_on_disk(card)


def test_one_process_at_a_time(card: Card) -> None:
    with pytest.raises(CardBusy, match="in use by another process"):
        Card.open(card.path)
    card.close()
    Card.open(card.path).close()  # closing released it


def test_deferred_sync_is_for_a_block_and_always_ends_power_safe(card: Card) -> None:
    def synchronous() -> int:
        return int(card._catalog._db.execute("PRAGMA synchronous").fetchone()[0])

    assert synchronous() == 2  # FULL
    with pytest.raises(RuntimeError), card.deferred_sync(every=2):
        assert synchronous() == 1  # NORMAL: process-crash safe only, until the sync
        for i in range(5):
            card.add_local(b"bulk %d" % i, name=f"{i}.jpg", now=1.0)
        raise RuntimeError("the import stopped")
    assert synchronous() == 2
    card.close()
    with Card.open(card.path) as again:
        assert len(again.images()) == 5


def test_smaller_copies_are_listed_read_back_and_replaced(card: Card) -> None:
    """Contract of smaller_copies/read_smaller: only finished, verified copies are listed;
    their bytes read back exactly; a new copy replaces the old; they survive a reopen."""
    original = b"the full picture" * 20
    image_id = sha(original)
    card.add_thumbnail(ImageRecord(image_id, PEER, 1, "P.JPG", len(original), "image/jpeg",
                                   None, {}, b"t", Where.ABSENT), 1.0)
    assert card.smaller_copies() == {}
    with pytest.raises(NotFound, match="no smaller copy"):
        card.read_smaller(image_id, 0, 10)

    first = b"small, quality 60"
    card.write_partial(image_id, Incoming.SMALLER, 0, first)
    assert card.smaller_copies() == {}  # still arriving: not a copy yet
    card.finish_partial(image_id, Incoming.SMALLER, sha(first), 2.0)
    assert card.smaller_copies() == {image_id: len(first)}
    assert card.read_smaller(image_id, 0, 1000) == first
    assert card.read_smaller(image_id, 7, 3) == first[7:10]

    wrong = b"bytes that do not hash to what was promised"
    card.write_partial(image_id, Incoming.SMALLER, 0, wrong)
    with pytest.raises(StoreError):
        card.finish_partial(image_id, Incoming.SMALLER, sha(b"something else"), 3.0)
    assert card.read_smaller(image_id, 0, 1000) == first  # the verified copy stays

    second = b"larger, quality 85, side 2048"
    card.write_partial(image_id, Incoming.SMALLER, 0, second)
    card.finish_partial(image_id, Incoming.SMALLER, sha(second), 4.0)
    assert card.smaller_copies() == {image_id: len(second)}
    assert card.usage().used == bytes_on_disk(card) == len(second)
    assert (card.image(image_id) or pytest.fail("gone")).where is Where.ABSENT  # not the original
    with pytest.raises(NotFound):
        card.read_original(image_id, 0, 10)
    card.close()
    with Card.open(card.path) as again:
        assert again.smaller_copies() == {image_id: len(second)}
        assert again.read_smaller(image_id, 0, 1000) == second


def test_a_smaller_copy_deleted_by_hand_is_no_longer_listed(card: Card) -> None:
    data = b"small"
    image_id = sha(b"the original")
    card.add_thumbnail(ImageRecord(image_id, PEER, 1, "Q.JPG", 12, "image/jpeg",
                                   None, {}, b"t", Where.ABSENT), 1.0)
    card.write_partial(image_id, Incoming.SMALLER, 0, data)
    card.finish_partial(image_id, Incoming.SMALLER, sha(data), 2.0)
    card.close()
    (card.path / "smaller" / image_id).unlink()
    with Card.open(card.path) as again:
        assert again.smaller_copies() == {}
        with pytest.raises(NotFound):
            again.read_smaller(image_id, 0, 5)


def test_an_adopted_file_is_linked_in_not_copied_and_keeps_its_own_name(
    card: Card, tmp_path: Path
) -> None:
    source = tmp_path / "ready" / "DSC_0001.JPG"
    source.parent.mkdir()
    source.write_bytes(b"an upload" * 100)
    record, new = card.add_original(
        source, name=source.name, now=1.0, extracted=GivenExtraction(), adopt=True
    )
    assert new and record.image_id == sha(source.read_bytes())
    stored = card.original_path(record.image_id)
    assert stored.stat().st_ino == source.stat().st_ino  # one set of bytes, two names
    assert source.exists()  # removed by its owner once the import is done, not by the card
    assert list((card.path / "tmp").iterdir()) == []
    source.unlink()
    assert card.read_original(record.image_id, 0, 10_000) == b"an upload" * 100


def test_an_adopted_file_that_does_not_fit_stays_where_it_was(card: Card, tmp_path: Path) -> None:
    card.add_local(b"x" * 9000, name="big.jpg", now=1.0)
    source = tmp_path / "too-big.jpg"
    source.write_bytes(b"y" * 1001)
    with pytest.raises(CardFullError):
        card.add_original(source, name=source.name, now=2.0, extracted=GivenExtraction(),
                          adopt=True)
    assert source.read_bytes() == b"y" * 1001
    assert list((card.path / "tmp").iterdir()) == []
    assert card.usage().used == bytes_on_disk(card) == 9000


def test_an_adopted_file_on_another_filesystem_is_copied(
    card: Card, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    source = tmp_path / "far.jpg"
    source.write_bytes(b"far away" * 10)
    record, new = card.add_original(
        source, name=source.name, now=1.0, extracted=GivenExtraction(), adopt=True
    )
    assert new
    assert card.original_path(record.image_id).stat().st_ino != source.stat().st_ino
    assert card.read_original(record.image_id, 0, 1000) == b"far away" * 10


def test_an_adopted_file_with_its_digest_is_not_read_again(
    card: Card, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "hashed.jpg"
    source.write_bytes(b"hashed as it arrived" * 10)
    digest = sha(source.read_bytes())
    reads: list[int] = []
    real_open = Path.open

    def counting_open(self: Path, *args: object, **kwargs: object) -> object:
        handle = real_open(self, *args, **kwargs)  # type: ignore[call-overload]
        if self.parent.name == "tmp":
            real_read = handle.read
            handle.read = lambda *a: reads.append(1) or real_read(*a)  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(Path, "open", counting_open)
    record, new = card.add_original(
        source, name=source.name, now=1.0, extracted=GivenExtraction(), adopt=True, digest=digest
    )
    monkeypatch.undo()
    assert new and record.image_id == digest and reads == []
    assert card.read_original(record.image_id, 0, 1000) == source.read_bytes()
