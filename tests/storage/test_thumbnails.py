"""storage.thumbnails: embedded thumbnail first, reduced decode next, RAW previews, placeholders."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import ExifTags, Image

from protocol.messages import Limits, check_metadata
from storage import samples
from storage.thumbnails import MAX_SIDE, extract, mime_of

RED, BLUE = (220, 0, 0), (0, 0, 220)


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    image.load()
    return image.convert("RGB")


def near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 60 for a, b in zip(pixel, colour, strict=False))


def exif_thumbnail(path: Path) -> bytes:
    """The IFD1 thumbnail as Pillow (not our parser) finds it."""
    with Image.open(path) as image:
        ifd1 = image.getexif().get_ifd(ExifTags.IFD.IFD1)
        raw = image.info["exif"]
    start = 6 + ifd1[0x0201]
    return bytes(raw[start : start + ifd1[0x0202]])


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return samples.write_sample_jpegs(tmp_path_factory.mktemp("jpegs"), 3, seed=5)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return samples.write_hostile_files(tmp_path_factory.mktemp("hostile"))


def test_embedded_thumbnail_is_used_byte_for_byte(jpegs: list[Path]) -> None:
    for path in jpegs:
        got = extract(path)
        assert got.thumbnail_source == "embedded"
        assert got.reason is None
        assert got.thumbnail == exif_thumbnail(path)
        assert (got.width, got.height, got.mime) == (640, 480, "image/jpeg")


def test_fallback_decodes_to_at_most_320_pixels(
    jpegs: list[Path], hostile: dict[str, Path]
) -> None:
    for got in (extract(jpegs[0], use_embedded=False), extract(hostile["no-exif.jpg"])):
        assert got.thumbnail_source == "decoded"
        assert got.reason
        assert picture(got.thumbnail).size == (MAX_SIDE, 240)


# Stored: left half red, right half blue. Where each colour must be once shown upright,
# as (top-left pixel, bottom-right pixel) and whether the picture turns to portrait.
UPRIGHT = {
    1: (RED, BLUE, False),
    2: (BLUE, RED, False),  # mirrored
    3: (BLUE, RED, False),  # turned 180
    6: (RED, BLUE, True),  # turned 90 clockwise: the left half goes to the top
    8: (BLUE, RED, True),  # turned 90 anticlockwise: the left half goes to the bottom
}


@pytest.mark.parametrize("with_thumbnail", [True, False], ids=["embedded", "decoded"])
@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_orientation_is_applied(tmp_path: Path, orientation: int, with_thumbnail: bool) -> None:
    path = tmp_path / "turned.jpg"
    path.write_bytes(samples.rotated_sample(orientation=orientation, with_thumbnail=with_thumbnail))
    got = extract(path)
    assert got.thumbnail_source == ("embedded" if with_thumbnail else "decoded")
    image = picture(got.thumbnail)
    top_left, bottom_right, portrait = UPRIGHT[orientation]
    assert (image.height > image.width) == portrait
    assert near(image.getpixel((2, 2)), top_left)  # type: ignore[arg-type]
    assert near(image.getpixel((image.width - 3, image.height - 3)), bottom_right)  # type: ignore[arg-type]
    if orientation in (6, 8):  # the other corners tell a turn from a mirror
        assert near(image.getpixel((image.width - 3, 2)), top_left)  # type: ignore[arg-type]
    assert got.metadata["orientation"] == orientation
    assert (got.width, got.height) == (640, 480)  # as stored


EXPECTED = {
    "zero-byte.jpg": "placeholder",
    "truncated.jpg": "placeholder",
    "truncated-scan.jpg": "placeholder",
    "text.jpg": "placeholder",
    "bomb.png": "placeholder",
    "bomb-warning.png": "placeholder",
    "bomb.jpg": "placeholder",
    "movie.MOV": "placeholder",
    "garbage-exif.jpg": "decoded",
    "no-exif.jpg": "decoded",
    "rotated.jpg": "embedded",
    "control-name.jpg": "embedded",
}


def test_every_hostile_file_is_expected(hostile: dict[str, Path]) -> None:
    assert set(hostile) <= set(EXPECTED)
    assert set(EXPECTED) - set(hostile) <= {"control-name.jpg"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_files_never_crash(hostile: dict[str, Path], name: str) -> None:
    if name not in hostile:
        pytest.skip("this filesystem refuses control characters in names")
    got = extract(hostile[name])
    assert got.thumbnail_source == EXPECTED[name]
    if got.thumbnail_source == "placeholder":
        assert got.reason and len(got.reason) <= Limits.MAX_TEXT
    assert 0 < len(got.thumbnail) <= Limits.MAX_THUMBNAIL
    assert max(picture(got.thumbnail).size) <= MAX_SIDE
    check_metadata("Test", "metadata", got.metadata)


def test_reasons_say_what_is_wrong(hostile: dict[str, Path]) -> None:
    assert "empty" in str(extract(hostile["zero-byte.jpg"]).reason)
    assert "bomb" in str(extract(hostile["bomb.jpg"]).reason)
    assert "bomb" in str(extract(hostile["bomb.png"]).reason)
    assert "bomb" in str(extract(hostile["bomb-warning.png"]).reason)
    assert "movie" in str(extract(hostile["movie.MOV"]).reason)
    assert "truncated" in str(extract(hostile["truncated.jpg"]).reason)


def test_mime_comes_from_content_not_name(
    hostile: dict[str, Path], jpegs: list[Path], tmp_path: Path
) -> None:
    assert extract(hostile["text.jpg"]).mime == "text/plain"
    assert extract(hostile["movie.MOV"]).mime == "video/quicktime"
    assert extract(hostile["bomb.png"]).mime == "image/png"
    lying = tmp_path / "really-a-jpeg.png"
    lying.write_bytes(jpegs[0].read_bytes())
    assert extract(lying).mime == "image/jpeg"
    assert mime_of(b"\0\0\0\x18ftypisom") == "video/mp4"
    assert mime_of(b"\x00\x01\x02\xff") == "application/octet-stream"


@pytest.mark.parametrize("in_ifd", [True, False], ids=["ifd", "scanned"])
def test_raw_uses_its_largest_jpeg_preview(tmp_path: Path, in_ifd: bool) -> None:
    path = samples.write_sample_raw(tmp_path / "DSC0001.ARW", seed=3, preview_in_ifd=in_ifd)
    got = extract(path)
    assert got.thumbnail_source == "raw-preview"
    assert got.mime == "image/x-sony-arw"
    image = picture(got.thumbnail)
    # the 1024x683 preview (3:2), not the 160x120 thumbnail (4:3)
    assert image.width == MAX_SIDE and image.height in (213, 214)
    assert near(image.getpixel((160, 100)), (200, 0, 0))  # type: ignore[arg-type]
    assert got.metadata["make"] == "SONY"


def test_tiff_without_preview_gets_a_placeholder(tmp_path: Path) -> None:
    path = tmp_path / "empty.DNG"
    path.write_bytes(b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00" + bytes(100))
    got = extract(path)
    assert got.thumbnail_source == "placeholder"
    assert got.reason


def test_a_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        extract(tmp_path / "gone.jpg")


SMALL = samples.rotated_sample(orientation=6)


@given(
    cut=st.integers(min_value=0, max_value=len(SMALL)),
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=4000), st.integers(0, 255)), max_size=8
    ),
)
def test_damaged_jpegs_never_raise(
    tmp_path_factory: pytest.TempPathFactory, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(SMALL[:cut])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    path = tmp_path_factory.mktemp("fuzz") / "damaged.jpg"
    path.write_bytes(bytes(data))
    got = extract(path)
    assert got.thumbnail_source in ("embedded", "decoded", "placeholder")
    assert 0 < len(got.thumbnail) <= Limits.MAX_THUMBNAIL
    check_metadata("Test", "metadata", got.metadata)


def test_a_broken_picture_keeps_its_exif_metadata(tmp_path: Path) -> None:
    whole = samples.rotated_sample(orientation=1, with_thumbnail=False)
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[: len(whole) - 2000])  # the scan is cut short
    got = extract(path)
    assert got.thumbnail_source == "placeholder"
    assert "truncated" in str(got.reason)
    assert got.metadata["make"] == samples.sample_exif(0).make
    assert got.capture_time == samples.sample_exif(0).capture_time
    assert (got.width, got.height) == (640, 480)
