"""The receiver's policy with real processes (issue 17): a camera node and a `cammesh desk`.

The desk runs as a user starts it, `cammesh desk CARD` with no ``--policy``: every
thumbnail arrives, and of the originals only the one its user asks for (`cammesh
request`).  Started again with ``--policy '*=all'`` the same desk mirrors the rest; the
old word ``*=thumbnails`` is taken as ``requested`` with a warning.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mesh.control import ask
from mesh.desk_demo import DeviceSpec
from protocol.messages import Role
from storage.card import Card
from storage.importer import import_paths
from tests.integration.devices import ProcessMesh, cammesh, free_port, ls_json
from tests.integration.nodes import ROOT, wait_until, write_pictures

pytestmark = pytest.mark.integration

PICTURES = 4


def start_desk(card: Path, camera_port: int, log: Path, *policy: str) -> subprocess.Popen[str]:
    with log.open("w") as errors:
        desk = subprocess.Popen(
            [sys.executable, "-m", "mesh.cli", "desk", str(card), "--listen", "127.0.0.1:0",
             "--node-listen", f"127.0.0.1:{free_port()}", "--no-discovery",
             "--peer", f"127.0.0.1:{camera_port}", *policy],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
    assert desk.stdout is not None
    line = desk.stdout.readline()
    assert "the desk is on" in line, log.read_text()[-3000:]
    return desk


def stop(desk: subprocess.Popen[str]) -> None:
    assert desk.stdout is not None
    desk.stdout.close()
    desk.terminate()
    try:
        desk.wait(timeout=20)
    except subprocess.TimeoutExpired:
        desk.kill()
        desk.wait(timeout=20)


def where(card: Path) -> dict[str, str]:
    return {r["image_id"]: r["where"] for r in ls_json(card)}


def status(card: Path) -> dict[str, Any]:
    return ask(card, {"op": "status"})


def test_a_desk_pulls_only_what_its_user_asks_for_unless_told_to_mirror(tmp_path: Path) -> None:
    mesh = ProcessMesh.create(tmp_path, [DeviceSpec("cam", Role.CAMERA), DeviceSpec("desk", Role.DESK)])
    camera, desk_card = mesh["cam"], mesh["desk"].card
    with Card.open(camera.card) as card:
        shots = write_pictures(tmp_path / "shots", PICTURES, side=900, seed=17)
        ids = [i.image_id for i in import_paths(card, shots, now=1.0).imported]
    camera.args = ["--policy", "*=requested"]  # the camera pulls nothing back from the desk
    mesh.start("cam")
    log = tmp_path / "desk.log"
    desk = start_desk(desk_card, camera.port, log)
    try:
        wait_until("every thumbnail at the desk", lambda: len(where(desk_card)) == PICTURES)
        assert set(where(desk_card).values()) == {"absent"}
        node = status(desk_card)["node"]
        assert (node["pulls_waiting"], node["requests_waiting"]) == (0, 0)

        asked = cammesh("request", desk_card, ids[1][:12])
        assert asked.returncode == 0, asked.stderr
        wait_until("the requested original", lambda: where(desk_card)[ids[1]] == "local")
        # The one asked for came; the camera was never asked for the others.
        assert [where(desk_card)[i] for i in ids] == ["absent", "local", "absent", "absent"]
        assert status(desk_card)["node"]["pulls_waiting"] == 0
    finally:
        stop(desk)

    # The old word: the same behaviour, and a warning saying what to write instead.
    desk = start_desk(desk_card, camera.port, log, "--policy", "*=thumbnails")
    try:
        wait_until("the desk to reach the camera", lambda: status(desk_card)["peers"] or None)
        assert "'thumbnails' is the old word for 'requested'" in log.read_text()
        assert [where(desk_card)[i] for i in ids] == ["absent", "local", "absent", "absent"]
    finally:
        stop(desk)

    desk = start_desk(desk_card, camera.port, log, "--policy", "*=all")
    try:
        wait_until("every original mirrored",
                   lambda: set(where(desk_card).values()) == {"local"})
    finally:
        stop(desk)
        mesh.stop_all()
