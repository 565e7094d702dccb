"""Names, not ids, and smaller copies that say what they are, in `cammesh ls`, `ls --json`,
`cammesh keep` and the status view (issue 17).  Cards made by mesh/desk_demo.py, no node."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from rich.console import Console

from mesh.cli import main
from mesh.desk_demo import DeviceSpec, make_mesh
from mesh.device_names import card_names, shown, shown_names
from mesh.identity import Identity, short_id_of
from mesh.status_view import render_status
from protocol.messages import Role
from protocol.store import DispersalState, ImageRecord, Incoming, Where
from storage.card import Card
from storage.importer import import_paths
from storage.samples import write_sample_jpegs

COPY = b"a reduced jpeg " * 40


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_name_alone_unless_two_devices_share_it() -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    names = shown_names({a: "north", b: "South", c: "south"})
    assert names[a] == "north"
    assert names[b] == f"South ({short_id_of(b)})"
    assert names[c] == f"south ({short_id_of(c)})"
    assert shown(names, "d" * 64) == short_id_of("d" * 64)  # nobody named it: the id is all


@pytest.fixture
def mesh(tmp_path: Path) -> dict[str, Path]:
    paths = make_mesh(tmp_path / "mesh", [DeviceSpec("desk", Role.DESK),
                                          DeviceSpec("north-cam", Role.CAMERA)])
    return dict(zip(("desk", "cam"), paths, strict=True))


def ids(mesh: dict[str, Path]) -> dict[str, str]:
    return {name: Identity.load(path).device_id for name, path in mesh.items()}


def test_card_names_are_the_pinned_peers_and_the_card_itself(mesh: dict[str, Path]) -> None:
    who = ids(mesh)
    assert card_names(mesh["cam"], me=who["cam"], my_name="north-cam") == {
        who["cam"]: "north-cam", who["desk"]: "desk"}


def test_ls_names_holders_by_device_name(mesh: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    who = ids(mesh)
    (picture,) = write_sample_jpegs(tmp_path / "in", 1, seed=4)
    with Card.open(mesh["cam"]) as card:
        (record,) = import_paths(card, [picture], now=1.0).imported
        card.set_dispersion(record.image_id, who["desk"], DispersalState.STORED, 2.0)
    capsys.readouterr()
    assert main(["ls", str(mesh["cam"])]) == 0
    out = capsys.readouterr().out
    assert "→ desk" in out
    assert short_id_of(who["desk"]) not in out
    assert main(["ls", str(mesh["cam"]), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["holders"][0]["holder"] == who["desk"]  # the id stays, for scripts
    assert row["holders"][0]["holder_name"] == "desk"
    assert row["origin_name"] == "north-cam"
    assert row["smaller"] is None


def copy_on_desk(mesh: dict[str, Path]) -> str:
    who = ids(mesh)
    data = b"an original the desk has not got " * 50
    record = ImageRecord(sha(data), who["cam"], 1, "IMG_0001.JPG", len(data), "image/jpeg",
                         None, {}, b"t", Where.ABSENT)
    with Card.open(mesh["desk"]) as card:
        card.add_thumbnail(record, 1.0)
        card.write_partial(record.image_id, Incoming.SMALLER, 0, COPY)
        card.finish_partial(record.image_id, Incoming.SMALLER, sha(COPY), 2.0)
    return record.image_id


def test_ls_says_a_smaller_copy_is_one_and_keep_keeps_it(
    mesh: dict[str, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    image_id = copy_on_desk(mesh)
    capsys.readouterr()
    assert main(["ls", str(mesh["desk"])]) == 0
    assert "absent · smaller copy (600 B)" in capsys.readouterr().out
    assert main(["ls", str(mesh["desk"]), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["where"] == "absent"
    assert row["smaller"] == {"size": len(COPY), "stored_at": 2.0, "kept": False}

    assert main(["keep", str(mesh["desk"]), image_id[:10]]) == 0
    assert "keeping the smaller copy" in capsys.readouterr().out
    assert main(["ls", str(mesh["desk"])]) == 0
    assert "smaller copy (600 B, kept)" in capsys.readouterr().out
    assert main(["keep", str(mesh["desk"]), image_id[:10], "--no"]) == 0
    assert "goes once its original arrives" in capsys.readouterr().out


def test_keep_without_a_copy_is_one_clear_line(mesh: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    copy_on_desk(mesh)
    with Card.open(mesh["desk"]) as card:
        other = ImageRecord("f" * 64, ids(mesh)["cam"], 2, "B.JPG", 10, "image/jpeg", None, {},
                            b"t", Where.ABSENT)
        card.add_thumbnail(other, 1.0)
    capsys.readouterr()
    assert main(["keep", str(mesh["desk"]), "ffff"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no smaller copy of ffffffffffff to keep" in err


@pytest.mark.parametrize(("flags", "says"), [
    (["--max-side", "8"], "the long edge must be a whole number of pixels"),
    (["--max-side", "99999"], "from 16 to 16384"),
    (["--quality", "0"], "the JPEG quality must be a whole number"),
])
def test_request_refuses_a_bad_size_before_asking_the_node(
    mesh: dict[str, Path], flags: list[str], says: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["request", str(mesh["desk"]), "abc", *flags]) == 2
    err = capsys.readouterr().err
    assert says in err and "not running" not in err


def status_answer(peer: str, *, names: dict[str, str]) -> dict[str, object]:
    return {
        "name": "desk", "role": "desk", "short_id": "AAAA-BBBB", "port": 1, "used": 10,
        "capacity": 100, "free": 90,
        "smaller": {"count": 2, "bytes": 2_000, "kept": 1}, "names": names,
        "sealed_without_key": 3, "node": {"images_absent": 2, "held": 4},
        "peers": [{"peer_id": peer, "name": "north-cam", "ready": True, "queues": {}}],
        "incoming": [{"peer": peer, "image_id": "c" * 64, "purpose": "smaller", "done": 5,
                      "total": 10}],
    }


def rendered(answer: dict[str, object]) -> str:
    console = Console(width=160, record=True)
    console.print(render_status(answer))
    return console.export_text()


def test_the_status_view_names_peers_and_says_what_a_smaller_copy_is() -> None:
    peer = "b" * 64
    text = rendered(status_answer(peer, names={peer: "north-cam"}))
    assert "north-cam" in text and short_id_of(peer) not in text
    assert "2 smaller copies (reduced, not originals: 2.0 kB, 1 kept)" in text
    assert "(a smaller copy) from north-cam" in text
    # Held originals it cannot open: it says it holds them sealed, with no key (issue 17).
    assert "holding 4 for others (3 sealed, no key here: only their owners can read them)" in text
    # Two devices of one name: the id tells them apart.
    text = rendered(status_answer(peer, names={peer: f"north-cam ({short_id_of(peer)})"}))
    assert f"north-cam ({short_id_of(peer)})" in text
