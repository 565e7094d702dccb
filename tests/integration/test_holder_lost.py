"""A holder away or lost, on real `cammesh node` processes (issue 5): `get --wait` says what it
waits for and reads the picture out once the holder returns; `cammesh repair` copies what a
lost holder held to a new one, so every dispersed original has its replicas again.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.desk_demo import DeviceSpec
from protocol.messages import Role
from tests.integration.devices import ProcessMesh, cammesh, disagreements, ls_json
from tests.integration.nodes import ROOT, WAIT_S, wait_until, write_pictures

pytestmark = pytest.mark.integration

PICTURE_SIDE = 900  # about 400 kB each
THUMBNAILS_ONLY = ["--policy", "*=thumbnails"]  # originals move only by dispersal here


def dispersed_settled(mesh: ProcessMesh, owner: str, limit: int) -> bool:
    status = mesh[owner].running.ask({"op": "status"})
    return status["used"] <= limit and not disagreements(mesh.listings(), mesh.ids())


def import_files(mesh: ProcessMesh, owner: str, files: list[Path]) -> None:
    answer = mesh[owner].running.ask({"op": "import", "paths": [str(p) for p in files]})
    assert len(answer["summary"]["imported"]) == len(files), answer["summary"]


def test_get_waits_for_the_holder_saying_so_and_reads_out_when_it_returns(
    tmp_path: Path, meshes: list[ProcessMesh]
) -> None:
    capacity = 3_000_000
    mesh = ProcessMesh.create(
        tmp_path,
        [DeviceSpec("cam", Role.CAMERA, capacity), DeviceSpec("desk", Role.DESK),
         DeviceSpec("reader", Role.CAMERA, 300_000)],
        {"cam": ["--high-water", "0.4"], "desk": THUMBNAILS_ONLY, "reader": THUMBNAILS_ONLY},
    )
    meshes.append(mesh)
    mesh.start_all()
    mesh.wait_connected()
    files = write_pictures(tmp_path / "pics", 5, side=PICTURE_SIDE, seed=21)
    source = {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in files}
    import_files(mesh, "cam", files)
    wait_until("cam under its mark", lambda: dispersed_settled(mesh, "cam", int(0.4 * capacity)))
    away = sorted(r["image_id"] for r in ls_json(mesh["cam"].card) if r["where"] == "dispersed")[0]
    wait_until("the thumbnail at the reader",
               lambda: away in {r["image_id"] for r in ls_json(mesh["reader"].card)})
    # No room under cam's mark to bring it home: collect says so, naming the picture.
    refused = cammesh("collect", mesh["cam"].card, away[:16])
    assert "collecting 0 original(s)" in refused.stdout, refused.stderr
    assert f"not collected: {away[:12]}: no room" in refused.stderr, refused.stderr

    mesh["desk"].running.stop()
    wait_until("cam to see the desk gone", lambda: mesh.connected("cam") == 1)

    # A short wait runs out, naming the holder and that it gave up.
    short = cammesh("get", mesh["reader"].card, away[:16], "-o", tmp_path / "x.jpg", "--wait", "1")
    assert short.returncode == 2
    assert "desk" in short.stderr and "gave up waiting" in short.stderr, short.stderr
    assert not (tmp_path / "x.jpg").exists()

    # A long one says what it waits for while it waits, and succeeds once the desk is back.
    notes = tmp_path / "get.stderr"
    with notes.open("w") as err:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "mesh.cli", "get", str(mesh["reader"].card), away[:16],
             "-o", str(tmp_path / "x.jpg"), "--wait", str(WAIT_S)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            wait_until("the get to say it waits for the desk", lambda: (
                "waiting up to" in notes.read_text() and "desk" in notes.read_text()))
            assert waiting.poll() is None  # still waiting, not failed
            mesh.start("desk")
            out, _ = waiting.communicate(timeout=2 * WAIT_S)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
    assert waiting.returncode == 0, notes.read_text()
    assert "wrote" in out
    assert (tmp_path / "x.jpg").read_bytes() == source[away].read_bytes()


def test_repair_copies_what_a_lost_holder_held_to_a_new_holder(
    tmp_path: Path, meshes: list[ProcessMesh]
) -> None:
    capacity = 3_000_000
    holders = ("h1", "h2", "h3")
    mesh = ProcessMesh.create(
        tmp_path,
        [DeviceSpec("cam", Role.CAMERA, capacity),
         *(DeviceSpec(name, Role.DESK) for name in holders)],
        {"cam": ["--high-water", "0.4", "--replicas", "2"],
         **{name: THUMBNAILS_ONLY for name in holders}},
    )
    meshes.append(mesh)
    mesh.start_all()
    mesh.wait_connected()
    ids = mesh.ids()
    files = write_pictures(tmp_path / "pics", 5, side=PICTURE_SIDE, seed=22)
    import_files(mesh, "cam", files)
    wait_until("cam under its mark", lambda: dispersed_settled(mesh, "cam", int(0.4 * capacity)))

    def listed() -> dict[str, set[str]]:
        return {r["image_id"]: {h["holder"] for h in r["holders"] if h["state"] == "stored"}
                for r in ls_json(mesh["cam"].card) if r["where"] == "dispersed"}

    before = listed()
    lost = next(name for name in holders if any(ids[name] in h for h in before.values()))
    on_lost = {i for i, h in before.items() if ids[lost] in h}
    mesh[lost].running.kill()  # lost for good: its card is never seen again
    wait_until("cam to see it gone", lambda: mesh.connected("cam") == len(holders) - 1)

    unknown = cammesh("repair", mesh["cam"].card, "nobody")
    assert unknown.returncode == 2 and "names 0 devices" in unknown.stderr, unknown.stderr
    result = cammesh("repair", mesh["cam"].card, lost, "--timeout", str(WAIT_S))
    assert result.returncode == 0, result.stderr
    assert f"{len(on_lost)} original(s) repaired, 0 still copying, 0 failed" in result.stdout

    after = listed()
    assert after.keys() == before.keys()
    for image_id, now_held in after.items():
        assert len(now_held) == 2 and ids[lost] not in now_held, image_id[:12]
    for name in holders:
        if name != lost:
            held = {h["image_id"] for h in ls_json(mesh[name].card, held=True)}
            assert held == {i for i, h in after.items() if ids[name] in h}, name
