"""Smaller copies worth keeping (issue 17, FIG. 10 S64-S65): the original's EXIF read back with
Pillow, and the receiver's copy dropped once the original is there unless kept on purpose."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from protocol.store import ImageRecord, Incoming, Where
from storage.card import Card
from storage.errors import NotFound
from storage.samples import encode_sample, sample_exif
from storage.smaller import smaller_jpeg

DEVICE = "d" * 64
PEER = "e" * 64
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
T = ExifTags.Base


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def original(tmp_path: Path, *, orientation: int = 1, size: tuple[int, int] = (1200, 800)) -> Path:
    """A sample camera JPEG (storage.samples): make, model, lens, exposure, GPS, orientation."""
    picture = Image.linear_gradient("L").resize(size).convert("RGB")
    path = tmp_path / f"IMG_{orientation}.JPG"
    path.write_bytes(encode_sample(picture, sample_exif(3, seed=2, orientation=orientation),
                                   quality=90))
    return path


def exif_of(data: bytes) -> tuple[tuple[int, int], dict[int, object], dict[int, object],
                                   dict[int, object]]:
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        return image.size, dict(exif), dict(exif.get_ifd(EXIF_IFD)), dict(exif.get_ifd(GPS_IFD))


def test_a_smaller_copy_keeps_the_originals_exif(tmp_path: Path) -> None:
    path = original(tmp_path)
    _, before, sub_before, gps_before = exif_of(path.read_bytes())
    size, top, sub, gps = exif_of(smaller_jpeg(path, path.name, 600, 70))
    assert size == (600, 400)
    assert (top[T.Make], top[T.Model]) == (before[T.Make], before[T.Model]) == ("Cammesh Optics", "CM-3")
    for tag in (T.DateTimeOriginal, T.OffsetTimeOriginal, T.ExposureTime, T.FNumber,
                T.ISOSpeedRatings, T.FocalLength, T.LensModel, T.MeteringMode):
        assert sub[tag] == sub_before[tag], T(tag).name
    assert (sub[T.ExifImageWidth], sub[T.ExifImageHeight]) == (600, 400)  # the copy's own pixels
    assert gps == gps_before
    assert top[T.Orientation] == 1


def test_a_turned_original_gives_an_upright_copy_with_orientation_reset(tmp_path: Path) -> None:
    path = original(tmp_path, orientation=6)  # "rotate 90 CW to view": stored landscape
    size, top, sub, _ = exif_of(smaller_jpeg(path, path.name, 300, None))
    assert size == (200, 300)  # upright: portrait pixels
    assert top[T.Orientation] == 1  # a viewer must not turn it again
    assert (sub[T.ExifImageWidth], sub[T.ExifImageHeight]) == (200, 300)
    assert sub[T.DateTimeOriginal] == "2023:11:14 17:13:26"


def test_a_copy_of_a_picture_without_exif_has_none_and_is_still_made(tmp_path: Path) -> None:
    path = tmp_path / "plain.jpg"
    Image.new("RGB", (900, 300), (20, 40, 60)).save(path, "JPEG")
    size, top, _, _ = exif_of(smaller_jpeg(path, path.name, 300, 50))
    assert size == (300, 100) and top == {}


# --- the receiver's copy ---------------------------------------------------------------------


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    opened = Card.create(tmp_path / "card", device_id=DEVICE, name="desk", capacity=10**7,
                         reserve=0, role="desk")
    yield opened
    opened.close()


DATA = b"the original from the camera " * 200
COPY = b"a smaller jpeg " * 30


def with_copy(card: Card) -> str:
    """A peer's picture known by thumbnail, with a smaller copy received."""
    record = ImageRecord(sha(DATA), PEER, 1, "P.JPG", len(DATA), "image/jpeg", None, {}, b"t",
                         Where.ABSENT)
    card.add_thumbnail(record, 1.0)
    card.write_partial(record.image_id, Incoming.SMALLER, 0, COPY)
    card.finish_partial(record.image_id, Incoming.SMALLER, sha(COPY), 2.0)
    assert card.smaller_copies() == {record.image_id: len(COPY)}
    return record.image_id


def original_arrives(card: Card, image_id: str) -> None:
    card.write_partial(image_id, Incoming.ORIGINAL, 0, DATA)
    card.finish_partial(image_id, Incoming.ORIGINAL, sha(DATA), 3.0)


def test_the_copy_is_dropped_once_the_original_arrives(card: Card) -> None:
    image_id = with_copy(card)
    original_arrives(card, image_id)
    assert card.smaller_copies() == {}
    assert not (card.path / "smaller" / image_id).exists()
    assert card.usage().used == len(DATA)
    with pytest.raises(NotFound):
        card.read_smaller(image_id, 0, 10)


def test_a_copy_kept_on_purpose_stays_beside_the_original(card: Card) -> None:
    image_id = with_copy(card)
    kept = card.keep_smaller(image_id)
    assert kept is not None and kept.kept and kept.size == len(COPY)
    original_arrives(card, image_id)
    assert card.smaller_copies() == {image_id: len(COPY)}
    assert card.read_smaller(image_id, 0, 100) == COPY[:100]
    assert card.usage().used == len(DATA) + len(COPY)
    # Let go once the original is here: it goes at once.
    assert card.keep_smaller(image_id, keep=False) is None
    assert card.smaller_copies() == {} and card.usage().used == len(DATA)


def test_keeping_survives_a_reopen_and_a_copy_of_another_size(card: Card, tmp_path: Path) -> None:
    image_id = with_copy(card)
    card.keep_smaller(image_id)
    other = b"another size " * 10
    card.write_partial(image_id, Incoming.SMALLER, 0, other)
    card.finish_partial(image_id, Incoming.SMALLER, sha(other), 2.5)
    card.close()
    with Card.open(card.path) as again:
        details = again.smaller_details()[image_id]
        assert (details.size, details.kept) == (len(other), True)


def test_importing_the_original_drops_the_copy(card: Card) -> None:
    image_id = with_copy(card)
    record, new = card.add_original(DATA, name="P.JPG", now=6.0,
                                    extracted=lambda p: pytest.fail("known by thumbnail"))
    assert not new and record.image_id == image_id
    assert card.smaller_copies() == {}


def test_keeping_a_copy_the_card_does_not_have_says_how_to_get_one(card: Card) -> None:
    with pytest.raises(NotFound, match=r"no smaller copy of .* to keep; ask for one first"):
        card.keep_smaller("f" * 64)
