"""``cammesh export`` read back by exiftool (issue 19, Must show 3).

A desk and a camera, real `cammesh node` processes on loopback; the desk pulls thumbnails
only, so the camera's originals are not on the desk.  The editor's marks are set on the desk's
card; export writes the selects with their sidecars, reading the missing originals out through
the desk's running node.  exiftool (Debian's libimage-exiftool-perl) reads the sidecars back;
every exported original's SHA-256 must be its image id.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mesh.desk_demo import DeviceSpec
from protocol.messages import Role
from storage.card import Card
from storage.importer import import_paths
from tests.integration.devices import ProcessMesh, cammesh, ls_json
from tests.integration.nodes import wait_until, write_pictures

pytestmark = pytest.mark.integration

EXIFTOOL = shutil.which("exiftool")
if EXIFTOOL is None:
    pytest.skip("no exiftool (apt-get install libimage-exiftool-perl)", allow_module_level=True)

CAPTION = 'Fans <b>cheer</b> & "sing" in the rain'


def exiftool(paths: list[Path]) -> list[dict[str, Any]]:
    out = subprocess.run([EXIFTOOL, "-json", "-G1", "-n", *map(str, paths)],
                         capture_output=True, text=True, check=True, timeout=60)
    found: list[dict[str, Any]] = json.loads(out.stdout)
    return found


def test_export_reads_back_in_exiftool_with_originals_byte_identical(tmp_path: Path) -> None:
    mesh = ProcessMesh.create(tmp_path, [DeviceSpec("desk", Role.DESK), DeviceSpec("cam", Role.CAMERA)],
                       args={"desk": ["--policy", "*=thumbnails"]})
    desk, cam = mesh["desk"].card, mesh["cam"].card
    with Card.open(cam) as card:
        import_paths(card, write_pictures(tmp_path / "shots", 5, side=600, seed=3), now=1.0)
    with Card.open(desk) as card:
        import_paths(card, write_pictures(tmp_path / "own", 1, side=600, seed=9), now=1.0)
    try:
        mesh.start_all()
        wait_until("the desk to have every thumbnail", lambda: len(ls_json(desk)) == 6 or None)
        mesh["desk"].running.stop()
        rows = {r["image_id"]: r for r in ls_json(desk)}
        absent = sorted(i for i, r in rows.items() if r["where"] == "absent")
        local = [i for i, r in rows.items() if r["where"] == "local"]
        assert len(absent) == 5 and len(local) == 1
        chosen = {absent[0]: dict(rating=5, color=1, tagged=True, caption=CAPTION,
                                  headline="Final", credit="A. Lee / Agency",
                                  keywords=("football", "rain <wet>")),
                  absent[1]: dict(rating=0, tagged=True),
                  absent[2]: dict(color=3, tagged=True, caption="second"),
                  local[0]: dict(rating=2, color=8, tagged=True)}
        with Card.open(desk) as card:
            for image_id, fields in chosen.items():
                card.set_marks(image_id, **fields)
            card.set_marks(absent[3], rating=5)  # rated, not tagged: left out by --tagged
            card.set_color_label(1, "Front page")

        # Without a running node, only the original on the desk's card can go.
        first = cammesh("export", desk, "--to", tmp_path / "offline", "--tagged")
        assert first.returncode == 1, first.stderr
        assert "start `cammesh node" in first.stderr
        assert sorted(p.name for p in (tmp_path / "offline").iterdir()) == sorted(
            [rows[local[0]]["name"], Path(rows[local[0]]["name"]).stem + ".xmp"])

        mesh.start("desk")
        mesh.wait_connected()
        out = tmp_path / "out"
        out.mkdir()
        (out / "keep-me.JPG").write_bytes(b"an editor's own file")
        done = cammesh("export", desk, "--to", out, "--tagged", "--rename", "{photographer}-{seq}")
        assert done.returncode == 0, done.stderr
    finally:
        mesh.stop_all()

    originals = sorted(p for p in out.iterdir() if p.suffix != ".xmp" and p.name != "keep-me.JPG")
    assert (out / "keep-me.JPG").read_bytes() == b"an editor's own file"
    assert len(originals) == len(chosen)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in originals}
    assert set(digests) == set(chosen)  # byte-identical: each one hashes to its image id
    sidecars = {digest: path.with_suffix(".xmp") for digest, path in digests.items()}
    assert all(s.exists() for s in sidecars.values())
    read = {Path(doc["SourceFile"]).name: doc for doc in exiftool(list(sidecars.values()))}
    for image_id, fields in chosen.items():
        doc = read[sidecars[image_id].name]
        assert doc.get("XMP-xmp:Rating") == fields.get("rating")
        assert doc.get("XMP-photomech:ColorClass") == fields.get("color")
        assert doc.get("XMP-photomech:Tagged") is True
        label = {1: "Front page", 3: "Superior", 8: "Extra alt"}.get(fields.get("color"))  # type: ignore[arg-type]
        assert doc.get("XMP-xmp:Label") == label
        assert doc.get("XMP-dc:Description") == fields.get("caption")
        assert doc.get("XMP-photoshop:Headline") == fields.get("headline")
        assert doc.get("XMP-photoshop:Credit") == fields.get("credit")
        keywords = doc.get("XMP-dc:Subject")
        want = list(fields.get("keywords", ())) or None  # type: ignore[call-overload]
        assert (keywords if isinstance(keywords, list) or keywords is None else [keywords]) == want
