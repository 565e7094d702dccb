"""Export file names: the rename template's fields, hostile metadata, never replacing a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.store import ImageRecord, Where
from storage.export import (
    TemplateError,
    check_template,
    export_stem,
    free_stem,
    split_name,
    write_new,
)


def record(name: str = "IMG_0042.CR3", **metadata: object) -> ImageRecord:
    return ImageRecord(image_id="ab" * 32, origin="cd" * 32, seq=7, name=name, size=3,
                       mime="image/jpeg", capture_time=1_700_000_000.0,
                       metadata=metadata, thumbnail=b"", where=Where.LOCAL)  # type: ignore[arg-type]


def test_every_field_of_a_template() -> None:
    r = record(model="X-T5", photographer="Ann Lee",
               capture_time_text="2026:03:04 05:06:07 +01:00")
    stem = export_stem("{date}_{time}_{camera}_{photographer}_{seq}_{name}_{id}", r, 12)
    assert stem == "20260304_050607_X-T5_Ann_Lee_0012_IMG_0042_abababababab"


def test_without_exif_time_the_capture_time_in_utc_and_without_a_template_its_own_name() -> None:
    assert export_stem("{date}-{time}", record(), 1) == "20231114-221320"
    assert export_stem(None, record(), 1) == "IMG_0042"
    assert split_name("IMG_0042.CR3") == ("IMG_0042", ".CR3")


def test_unknown_fields_and_stray_braces_are_refused_naming_the_fields() -> None:
    with pytest.raises(TemplateError, match=r"\{lens\} is unknown.*\{date\}"):
        check_template("{date}_{lens}")
    with pytest.raises(TemplateError, match="braces"):
        check_template("{date")
    check_template("{date}_{seq}")


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/abs", "a\x00b", ".hidden", "a\nb"])
def test_metadata_from_a_peer_cannot_leave_the_folder_or_hide(hostile: str) -> None:
    stem = export_stem("{photographer}", record(photographer=hostile), 1)
    assert "/" not in stem and "\x00" not in stem and "\n" not in stem
    assert not stem.startswith(".")
    assert "/" not in export_stem(None, record(name=hostile), 1)


def test_a_name_in_use_gets_a_suffix_and_a_file_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"theirs")
    (tmp_path / "a-2.xmp").write_bytes(b"theirs too")
    assert free_stem(tmp_path, "a", (".jpg", ".xmp")) == "a-3"
    with pytest.raises(FileExistsError):
        write_new(tmp_path / "a.jpg", b"ours")
    assert (tmp_path / "a.jpg").read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir() if "cammesh" in p.name] == []
    write_new(tmp_path / "b.jpg", [b"o", b"urs"])
    assert (tmp_path / "b.jpg").read_bytes() == b"ours"
