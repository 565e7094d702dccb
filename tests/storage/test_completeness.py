"""A file cut short is not a picture: JPEG end markers, TIFF/RAW extents, ISO media boxes."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from storage import movie_samples
from storage.completeness import complete
from storage.samples import write_sample_jpegs, write_sample_raw


def cuts(data: bytes) -> list[int]:
    """Lengths to cut ``data`` at: into the header, the middle, and the last bytes."""
    n = len(data)
    return sorted({8, 9, 64, n // 4, n // 2, 3 * n // 4, n - 64, n - 2})


def raws(folder: Path) -> list[Path]:
    return [
        movie_samples.write_dng(folder / "IMG_0001.DNG", orientation=6),  # LibRaw reads it
        write_sample_raw(folder / "DSC_0001.ARW", seed=1),
        write_sample_raw(folder / "DSC_0002.NEF", seed=2, preview_in_ifd=False),
    ]


def test_whole_raws_are_complete_and_cut_ones_are_not(tmp_path: Path) -> None:
    for path in raws(tmp_path):
        assert complete(path), path.name
        data = path.read_bytes()
        for length in cuts(data):
            cut = tmp_path / f"cut-{length}-{path.name}"
            cut.write_bytes(data[:length])
            assert not complete(cut), (path.name, length, len(data))


def test_whole_jpegs_are_complete_and_cut_ones_are_not(tmp_path: Path) -> None:
    [path] = write_sample_jpegs(tmp_path, 1, seed=3)
    assert complete(path)
    data = path.read_bytes()
    for length in cuts(data):
        cut = tmp_path / f"cut-{length}.jpg"
        cut.write_bytes(data[:length])
        assert not complete(cut), length
    (tmp_path / "tail.jpg").write_bytes(data + b"appended preview")
    assert complete(tmp_path / "tail.jpg")


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


@pytest.mark.parametrize("brand", [b"crx ", b"heic", b"qt  "])
def test_iso_media_boxes_tile_the_whole_file(tmp_path: Path, brand: bytes) -> None:
    data = box(b"ftyp", brand + bytes(8)) + box(b"moov", bytes(100)) + box(b"mdat", bytes(5000))
    (tmp_path / "whole").write_bytes(data)
    assert complete(tmp_path / "whole")
    for length in cuts(data):
        (tmp_path / "cut").write_bytes(data[:length])
        assert not complete(tmp_path / "cut"), length
    large = box(b"ftyp", brand + bytes(8)) + struct.pack(">I4sQ", 1, b"mdat", 16 + 300) + bytes(300)
    (tmp_path / "large").write_bytes(large)
    assert complete(tmp_path / "large")
    (tmp_path / "large").write_bytes(large[:-1])
    assert not complete(tmp_path / "large")


def test_hostile_tiffs_never_raise(tmp_path: Path) -> None:
    rng = random.Random(5)
    base = write_sample_raw(tmp_path / "base.ARW", seed=5).read_bytes()
    loop = b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 1) + struct.pack(
        "<HHII", 0x014A, 4, 1, 8) + struct.pack("<I", 8)  # an IFD that is its own SubIFD and next
    (tmp_path / "loop.tif").write_bytes(loop)
    assert complete(tmp_path / "loop.tif")
    for index in range(300):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 40)):
            data[rng.randrange(8, 600)] = rng.randrange(256)
        path = tmp_path / f"mutant-{index}.ARW"
        path.write_bytes(bytes(data[: rng.randrange(8, len(data) + 1)]))
        assert complete(path) in (True, False)


def test_other_files_have_no_check(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"not a picture")
    (tmp_path / "pic.RAF").write_bytes(b"FUJIFILMCCD-RAW 0201" + bytes(100))
    assert complete(tmp_path / "notes.txt") and complete(tmp_path / "pic.RAF")
