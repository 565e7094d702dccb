"""storage.metadata: EXIF fields read correctly, hostile EXIF never escapes as bad metadata."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.messages import check_metadata
from storage import samples
from storage.metadata import METERING, Tiff, capture_time, clean_text, read_exif
from storage.thumbnails import extract


def test_metadata_matches_what_the_samples_wrote(tmp_path: Path) -> None:
    start = 1_650_000_000.0
    paths = samples.write_sample_jpegs(tmp_path, 4, seed=3, start_time=start)
    for index, path in enumerate(paths):
        info = samples.sample_exif(index, seed=3, start_time=start)
        got = extract(path)
        meta = got.metadata
        assert got.capture_time == meta["capture_time"] == info.capture_time
        assert meta["make"] == info.make and meta["model"] == info.model
        assert meta["lens"] == info.lens
        assert meta["exposure_time"] == pytest.approx(info.exposure[0] / info.exposure[1])
        assert meta["exposure_text"] == f"1/{info.exposure[1]}"
        assert meta["f_number"] == pytest.approx(info.f_number[0] / info.f_number[1])
        assert meta["iso"] == info.iso
        assert meta["metering_mode"] == METERING[info.metering_code]
        assert meta["focal_length"] == pytest.approx(info.focal_length[0])
        assert (meta["width"], meta["height"], meta["orientation"]) == (640, 480, 1)
        lat, lon, alt = info.gps
        assert meta["gps_latitude"] == pytest.approx(lat, abs=1e-5)
        assert meta["gps_longitude"] == pytest.approx(lon, abs=1e-5)
        assert meta["gps_altitude"] == pytest.approx(alt, abs=0.05)
        check_metadata("Test", "metadata", meta)


def test_capture_time_uses_the_offset_when_given() -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert capture_time("2024:01:02 03:04:05", None) == naive  # no offset: read as UTC
    assert capture_time("2024:01:02 03:04:05", "+02:00") == naive - 7200
    assert capture_time("2024:01:02 03:04:05", "-05:30") == naive + 5.5 * 3600
    assert capture_time("2024:01:02 03:04:05", "garbage") == naive
    assert capture_time("0000:00:00 00:00:00", None) is None
    assert capture_time("    :  :     :  :  ", None) is None
    assert capture_time(None, "+01:00") is None


def test_text_is_cleaned() -> None:
    assert clean_text("  Can\x07on\x1b[31m \r\n") == "Canon[31m"
    assert clean_text("\x00\x01 ") is None
    assert clean_text("x" * 2000) == "x" * 512


def test_hostile_strings_are_cleaned_in_metadata(tmp_path: Path) -> None:
    info = dataclasses.replace(
        samples.sample_exif(0), make="Ca\x07non\x1b" + "y" * 900, model="A\x00hidden"
    )
    data = samples.exif_bytes(info, width=640, height=480, thumbnail=None)
    meta = read_exif(Tiff(data, 6)).metadata
    assert meta["make"] == ("Canon" + "y" * 900)[:512]
    assert meta["model"] == "A"  # EXIF text ends at its first NUL
    check_metadata("Test", "metadata", meta)


def test_gps_south_and_west_are_negative() -> None:
    info = dataclasses.replace(samples.sample_exif(0), gps=(-33.8568, -151.2153, -12.5))
    meta = read_exif(Tiff(samples.exif_bytes(info, width=1, height=1, thumbnail=None), 6)).metadata
    assert meta["gps_latitude"] == pytest.approx(-33.8568, abs=1e-5)
    assert meta["gps_longitude"] == pytest.approx(-151.2153, abs=1e-5)
    assert meta["gps_altitude"] == pytest.approx(-12.5)


def test_a_bad_tiff_header_is_refused() -> None:
    with pytest.raises(ValueError):
        Tiff(b"JUNKJUNK")


GOOD = samples.exif_bytes(samples.sample_exif(1), width=640, height=480, thumbnail=None)[6:]


@given(
    cut=st.integers(min_value=8, max_value=len(GOOD)),
    flips=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), max_size=12),
)
def test_damaged_exif_gives_safe_metadata(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(GOOD[:cut])
    for at, value in flips:
        if 4 <= at < len(data):  # keep the byte-order mark so the reader starts
            data[at] = value
    exif = read_exif(Tiff(bytes(data)))
    check_metadata("Test", "metadata", exif.metadata)
    assert 1 <= exif.orientation <= 8


@given(st.binary(max_size=600))
def test_random_tiff_bodies_never_raise(body: bytes) -> None:
    for header in (b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08"):
        check_metadata("Test", "metadata", read_exif(Tiff(header + body)).metadata)


def test_a_card_keeps_only_metadata_values_a_thumbnail_offer_can_carry() -> None:
    from storage.card import clean_metadata

    kept = clean_metadata(
        {
            "Big": 2**63,  # past a signed 64-bit integer
            "Max": 2**63 - 1,
            "NaN": float("nan"),
            "List": [1],
            "Text": "x" * 600,
            "Flag": True,
            "": 1,
        }
    )
    assert kept == {"Max": 2**63 - 1, "Text": "x" * 512, "Flag": True}
    check_metadata("ThumbnailOffer", "metadata", kept)
