"""storage.samples: the project's own test pictures are what they claim to be."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from storage import samples
from storage.thumbnails import extract


def test_small_samples_are_distinct_jpegs_with_exif(tmp_path: Path) -> None:
    paths = samples.write_sample_jpegs(tmp_path, 5, seed=2)
    assert len(paths) == 5
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}) == 5
    for index, path in enumerate(paths):
        assert 10_000 < path.stat().st_size < 500_000
        info = samples.sample_exif(index, seed=2)
        with Image.open(path) as image:  # Pillow, not our reader, is the judge here
            assert (image.format, image.size) == ("JPEG", (640, 480))
            exif = image.getexif()
            sub = exif.get_ifd(ExifTags.IFD.Exif)
            ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
        assert exif[0x010F] == info.make and exif[0x0112] == 1
        assert sub[0x8827] == info.iso and float(sub[0x829D]) == info.f_number[0] / 10
        assert ifd1[0x0103] == 6 and ifd1[0x0202] > 0
        assert exif.get_ifd(ExifTags.IFD.GPSInfo)[1] in ("N", "S")


def test_capture_times_follow_the_start(tmp_path: Path) -> None:
    paths = samples.write_sample_jpegs(tmp_path, 3, start_time=1_600_000_000.0)
    assert [extract(p).capture_time for p in paths] == [1_600_000_000.0 + 2 * i for i in range(3)]


def test_unknown_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        samples.write_sample_jpegs(tmp_path, 1, size="huge")


def test_hostile_files_are_what_their_names_say(tmp_path: Path) -> None:
    files = samples.write_hostile_files(tmp_path)
    assert files["zero-byte.jpg"].stat().st_size == 0
    assert files["text.jpg"].read_bytes().startswith(b"Dear diary")
    assert files["movie.MOV"].read_bytes()[4:8] == b"ftyp"
    assert files["bomb.png"].stat().st_size < 10_000
    with Image.open(files["no-exif.jpg"]) as image:
        assert "exif" not in image.info
    with Image.open(files["rotated.jpg"]) as image:
        assert image.getexif()[0x0112] == 6


def test_fake_raw_is_a_tiff(tmp_path: Path) -> None:
    path = samples.write_sample_raw(tmp_path / "x.ARW", seed=1)
    data = path.read_bytes()
    assert data.startswith(b"II*\x00")
    assert data.count(b"\xff\xd8\xff") == 2  # a thumbnail and a preview


@pytest.mark.slow
def test_a_24_megapixel_sample(tmp_path: Path) -> None:
    (path,) = samples.write_sample_jpegs(tmp_path, 1, size="24mp", seed=4)
    assert 10_000_000 <= path.stat().st_size <= 13_000_000
    with Image.open(path) as image:
        assert image.size == (6000, 4000)
        ifd1 = image.getexif().get_ifd(ExifTags.IFD.IFD1)
    got = extract(path)
    assert got.thumbnail_source == "embedded" and len(got.thumbnail) == ifd1[0x0202]
    assert (got.width, got.height) == (6000, 4000)
    fallback = extract(path, use_embedded=False)
    with Image.open(io.BytesIO(fallback.thumbnail)) as small:
        assert small.size in ((320, 213), (320, 214))


def test_samples_are_reproducible_from_their_seed(tmp_path: Path) -> None:
    first = samples.write_sample_jpegs(tmp_path / "a", 2, seed=11)
    again = samples.write_sample_jpegs(tmp_path / "b", 2, seed=11)
    other = samples.write_sample_jpegs(tmp_path / "c", 2, seed=12)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[0].read_bytes() != other[0].read_bytes()
