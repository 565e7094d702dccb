"""The card commands of ``cammesh``: init, import, ls, thumb; bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh.cli import main
from mesh.identity import Identity
from storage.card import Card
from storage.samples import write_sample_jpegs


@pytest.fixture
def card(tmp_path: Path) -> Path:
    path = tmp_path / "card"
    assert main(["init", str(path), "--name", "cam one", "--capacity", "512MiB", "--reserve", "1MB"]) == 0
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_init_makes_a_card_with_its_own_identity(card: Path) -> None:
    with Card.open(card) as opened:
        assert opened.device_id == Identity.load(card).device_id
        assert (opened.name, opened.role, opened.capacity, opened.reserve_bytes) == ("cam one", "camera", 512 * 2**20, 10**6)


def test_init_twice_is_refused(card: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["init", str(card), "--name", "again", "--capacity", "1GB"]) == 2
    assert "already holds a card" in one_line_error(capsys)


@pytest.mark.parametrize("size", ["lots", "-5GB", "1.5.5"])
def test_a_bad_size_is_one_line_and_makes_nothing(tmp_path: Path, size: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "c"), "--name", "x", f"--capacity={size}"]) == 2
    assert "not a size" in one_line_error(capsys)
    assert not (tmp_path / "c").exists()


def test_a_reserve_as_large_as_the_card_is_refused_before_any_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "c"), "--name", "x", "--capacity", "1MB", "--reserve", "2MB"]) == 2
    assert "reserve" in one_line_error(capsys)
    assert not (tmp_path / "c").exists()


def test_import_then_ls_then_thumb(card: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pictures = write_sample_jpegs(tmp_path / "in", 3, seed=21)
    (tmp_path / "in" / "empty.JPG").write_bytes(b"")
    capsys.readouterr()
    assert main(["import", str(card), str(tmp_path / "in"), str(pictures[0])]) == 0
    out = capsys.readouterr().out
    assert "imported 3" in out and "duplicates 1" in out and "rejected 1" in out
    assert "empty.JPG: empty file" in out

    assert main(["ls", str(card), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [p.name for p in pictures]
    for row in rows:
        assert row["where"] == "local" and row["thumbnail_at"] is None and row["original_at"] is not None
        assert row["thumbnail_source"] == "embedded" and row["metadata"]["make"]
        assert len(row["image_id"]) == 64 and row["seq"] >= 1

    assert main(["ls", str(card)]) == 0
    table = capsys.readouterr().out
    assert all(p.name in table for p in pictures)
    assert rows[0]["image_id"][:12] in table

    out_file = tmp_path / "thumb.jpg"
    assert main(["thumb", str(card), rows[1]["image_id"][:10], "-o", str(out_file)]) == 0
    with Card.open(card) as opened:
        record = opened.image(rows[1]["image_id"])
    assert record is not None and out_file.read_bytes() == record.thumbnail
    assert out_file.read_bytes().startswith(b"\xff\xd8")


def test_an_import_of_nothing_readable_exits_1(card: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert main(["import", str(card), str(tmp_path / "empty.jpg"), str(tmp_path / "missing.jpg")]) == 1
    out = capsys.readouterr().out
    assert "imported 0" in out and "rejected 2" in out


def test_a_long_import_with_a_progress_bar_still_sums_up(card: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_sample_jpegs(tmp_path / "many", 22, seed=22)
    assert main(["import", str(card), str(tmp_path / "many")]) == 0
    assert "imported 22" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ls", "{tmp}/nowhere"], "not a cammesh card"),
        (["import", "{tmp}/nowhere", "{tmp}"], "not a cammesh card"),
        (["thumb", "{card}", "ffff0000", "-o", "{tmp}/t.jpg"], "no picture"),
        (["thumb", "{card}", "not-hex", "-o", "{tmp}/t.jpg"], "hexadecimal"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    card: Path, tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    args = [a.format(tmp=tmp_path, card=card) for a in argv]
    assert main(args) == 2
    assert message in one_line_error(capsys)


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("init", "import", "ls", "thumb", "demo"):
        assert command in out
    assert main(["import", "--help"]) == 0
    assert "already on the card" in capsys.readouterr().out.lower()
    assert main([]) == 2  # no command: argparse's usage error


def test_a_card_in_use_is_refused_in_one_line(card: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with Card.open(card):  # as a running node would hold it
        assert main(["import", str(card), str(tmp_path)]) == 2
    assert "in use by another process" in one_line_error(capsys)


def test_ls_json_shows_the_editors_marks_with_a_node_running_or_not(
    card: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pictures = write_sample_jpegs(tmp_path / "in", 2, seed=5)
    assert main(["import", str(card), str(tmp_path / "in")]) == 0
    with Card.open(card) as opened:
        first, second = (r.image_id for r in opened.images())
        opened.set_marks(first, rating=4, color=2, tagged=True, caption="Goal", now=50.0)
        opened.set_color_label(2, "Sports front", now=51.0)
        device = opened.device_id
    capsys.readouterr()
    assert main(["ls", str(card), "--json"]) == 0
    rows = {r["image_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[first]["marks"] == {"rating": 4, "color": 2, "tagged": True, "caption": "Goal",
                                    "headline": "", "credit": "", "keywords": []}
    assert rows[first]["color_label"] == "Sports front"
    assert rows[first]["marks_changed"]["rating"] == {"at": 50.0, "device": device}
    assert rows[second]["marks"]["rating"] is None and rows[second]["marks_changed"] == {}
    with Card.open(card):  # a running node holds the card: ls reads the catalog itself
        assert main(["ls", str(card), "--json"]) == 0
    assert {r["image_id"]: r for r in json.loads(capsys.readouterr().out)} == rows
    assert len(pictures) == 2
