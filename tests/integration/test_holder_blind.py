"""Holder-blind dispersal (issue 7, "Must show" 1): a holder's card holds no plaintext of the
originals it holds for another owner, and a collected picture comes back byte-identical.

Real `cammesh node` processes: a camera whose card passes its high-water mark disperses to
a desk (which pulls only thumbnails, so any bytes of the camera's originals on the desk's
card are there because it holds them); the test then searches every file of the desk's
card for distinctive runs of each original's bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.desk_demo import DeviceSpec
from protocol.messages import Role
from tests.integration.devices import ProcessMesh, cammesh, ls_json
from tests.integration.nodes import wait_until, write_pictures

pytestmark = pytest.mark.integration

RUN = 32  # bytes: a run this long cannot turn up in ciphertext by chance
PROBES = 24  # runs taken from each original, spread over it


def probes(data: bytes) -> list[bytes]:
    """Distinctive runs of an original: from its high-entropy middle, not its EXIF header."""
    start = len(data) // 8
    step = max(1, (len(data) - start - RUN) // PROBES)
    return [data[i:i + RUN] for i in range(start, len(data) - RUN, step)][:PROBES]


def plaintext_on(card: Path, originals: dict[str, bytes]) -> list[str]:
    """Every (picture, file) where a run of a picture's original appears in a file of ``card``."""
    found = []
    files = [p for p in card.rglob("*") if p.is_file()]
    for path in files:
        content = path.read_bytes()
        for image_id, data in originals.items():
            if any(run in content for run in probes(data)):
                found.append(f"{image_id[:8]} in {path.relative_to(card)}")
    return found


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[ProcessMesh]:
    made = ProcessMesh.create(tmp_path, [DeviceSpec("cam", Role.CAMERA, 1_500_000),
                                  DeviceSpec("desk", Role.DESK)],
                       {"cam": ["--high-water", "0.4"], "desk": ["--policy", "*=thumbnails"]})
    try:
        made.start_all()
        made.wait_connected()
        yield made
    finally:
        made.stop_all()


def disperse(mesh: ProcessMesh, folder: Path) -> dict[str, bytes]:
    files = write_pictures(folder, 6, side=500, seed=41)
    answer = mesh["cam"].running.ask({"op": "import", "paths": [str(f) for f in files]})
    assert not answer["summary"]["rejected"], answer
    originals = {hashlib.sha256(f.read_bytes()).hexdigest(): f.read_bytes() for f in files}
    cam = mesh["cam"].running
    wait_until("some originals dispersed to the desk", lambda: sum(
        1 for i in originals if cam.images()[i]["where"] == "dispersed") >= 2)
    return originals


def test_the_probe_finds_plaintext_where_it_is(mesh: ProcessMesh, tmp_path: Path) -> None:
    """The search itself: every original is found on the camera's own card in the clear."""
    originals = disperse(mesh, tmp_path / "pics")
    local = {i: d for i, d in originals.items()
             if mesh["cam"].running.images()[i]["where"] == "local"}
    found = plaintext_on(mesh["cam"].card, local)
    assert {f[:8] for f in found} == {i[:8] for i in local}


def test_a_collected_picture_is_byte_identical(mesh: ProcessMesh, tmp_path: Path) -> None:
    originals = disperse(mesh, tmp_path / "pics")
    cam = mesh["cam"].running
    dispersed = [i for i in originals if cam.images()[i]["where"] == "dispersed"]
    target = tmp_path / "read-out.jpg"
    cam.ask({"op": "get", "id": dispersed[0], "path": str(target)}, timeout=180)
    # The read-out collected it from the desk (claims 10, 20) and relayed it, verified.
    assert target.read_bytes() == originals[dispersed[0]]
    assert cam.images()[dispersed[0]]["where"] == "dispersed"


def test_a_holders_card_holds_no_plaintext_of_what_it_holds(mesh: ProcessMesh, tmp_path: Path) -> None:
    originals = disperse(mesh, tmp_path / "pics")
    cam = mesh["cam"].running
    dispersed = {i: d for i, d in originals.items() if cam.images()[i]["where"] == "dispersed"}
    wait_until("the desk to hold what the camera dispersed", lambda: set(dispersed) <= {
        h["image_id"] for h in ls_json(mesh["desk"].card, held=True)})
    found = plaintext_on(mesh["desk"].card, dispersed)
    assert not found, f"the holder's card holds plaintext: {found}"
    # ... and what it holds is all there, sealed: as many bytes as the originals and a bit.
    held = {h["image_id"]: h for h in ls_json(mesh["desk"].card, held=True)}
    for image_id, data in dispersed.items():
        assert len(data) < held[image_id]["size"] < len(data) + len(data) // 1000 + 64
        assert held[image_id]["sealed_without_key"]  # and `ls --held` says so (issue 17)


def test_the_desk_cannot_open_what_it_holds_once_the_camera_is_gone(
    mesh: ProcessMesh, tmp_path: Path
) -> None:
    originals = disperse(mesh, tmp_path / "pics")
    cam = mesh["cam"].running
    dispersed = [i for i in originals if cam.images()[i]["where"] == "dispersed"]
    cam.stop()
    target = tmp_path / "read-out.jpg"
    result = cammesh("get", mesh["desk"].card, dispersed[0], "-o", target, "--timeout", "20")
    assert result.returncode != 0 and not target.exists()
    assert "cam" in result.stderr  # its owner is the one to ask
    # ... and it says what it has: a sealed copy and no key (issue 17), not only "not connected".
    assert "holds it only sealed for its owner cam, with no key to open it" in result.stderr


def test_with_keys_for_desks_the_desk_reads_what_a_lost_camera_dispersed(
    tmp_path: Path,
) -> None:
    mesh = ProcessMesh.create(tmp_path, [DeviceSpec("cam", Role.CAMERA, 1_500_000),
                                  DeviceSpec("desk", Role.DESK)],
                       {"cam": ["--high-water", "0.4", "--keys-for-desks"],
                        "desk": ["--policy", "*=thumbnails"]})
    try:
        mesh.start_all()
        mesh.wait_connected()
        originals = disperse(mesh, tmp_path / "pics")
        cam = mesh["cam"].running
        dispersed = [i for i in originals if cam.images()[i]["where"] == "dispersed"]
        held = {h["image_id"]: h for h in ls_json(mesh["desk"].card, held=True)}
        assert not any(held[i]["sealed_without_key"] for i in dispersed)  # its keys are here
        cam.kill()  # lost in the field: its card and its keys with it
        for image_id in dispersed:
            target = tmp_path / f"{image_id[:8]}.jpg"
            result = cammesh("get", mesh["desk"].card, image_id, "-o", target)
            assert result.returncode == 0, result.stderr
            assert target.read_bytes() == originals[image_id]
    finally:
        mesh.stop_all()


def test_an_original_collected_home_is_byte_identical(mesh: ProcessMesh, tmp_path: Path) -> None:
    originals = disperse(mesh, tmp_path / "pics")
    cam = mesh["cam"].running
    dispersed = {i for i in originals if cam.images()[i]["where"] == "dispersed"}
    cam.stop()  # offloaded, as it were: room below the mark again
    mesh["cam"].args = ["--high-water", "0.95"]
    mesh.start("cam")
    mesh.wait_connected()
    result = cammesh("collect", mesh["cam"].card, "--all")
    assert result.returncode == 0, result.stderr
    wait_until("every original home and released", lambda: (
        all(r["where"] == "local" for r in ls_json(mesh["cam"].card))
        and ls_json(mesh["desk"].card, held=True) == []))
    for image_id in dispersed:
        path = mesh["cam"].card / "originals" / image_id[:2] / image_id
        assert path.read_bytes() == originals[image_id]
