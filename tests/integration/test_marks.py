"""Marks between real processes (issue 19, Must show 1 and 2): a camera and two desks.

The camera runs ``cammesh node``, each desk ``cammesh desk`` (its page and its node), on
loopback with fixed ports and no mDNS; the desks reach each other only through the camera.
Marks are set as the page sets them (``POST /api/marks``), read back from the camera's
``cammesh ls --json`` and the desks' ``/api/tiles``.  Stopping the camera parts the desks:
each marks the same picture differently, and once the camera is back both show the marks of
the documented rule (per field, the later change; docs/ARCHITECTURE.md, "Marks between
devices").
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mesh.desk_demo import DeviceSpec, make_mesh
from protocol.messages import Role
from storage.card import Card
from storage.importer import import_paths
from tests.integration.devices import free_port, ls_json
from tests.integration.nodes import ROOT, NodeProcess, wait_until, write_pictures

pytestmark = pytest.mark.integration


@dataclass
class DeskProcess:
    """A ``cammesh desk`` process: its page on ``http``, its node on ``port``."""

    card: Path
    port: int
    peers: list[int]
    http: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def start(self) -> DeskProcess:
        log = self.card.parent / f"{self.card.name}.log"
        command = [sys.executable, "-m", "mesh.cli", "desk", str(self.card),
                   "--listen", f"127.0.0.1:{self.http}", "--node-listen", f"127.0.0.1:{self.port}",
                   "--no-discovery", *[a for p in self.peers for a in ("--peer", f"127.0.0.1:{p}")]]
        with log.open("a") as err:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                                         text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "the desk is on" in line, log.read_text()[-3000:]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.communicate(timeout=30)

    def tiles(self) -> dict[str, dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/api/tiles?offset=0&limit=2000", timeout=30) as r:
            body = json.load(r)
        return {t["id"]: t for t in body["tiles"]}

    def mark(self, ids: list[str], **fields: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + "/api/marks", data=json.dumps({"ids": ids, "set": fields}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as r:
            answer: dict[str, Any] = json.load(r)
        assert answer["ok"], answer
        return answer


@dataclass
class Field:
    camera: NodeProcess
    desks: dict[str, DeskProcess]
    camera_card: Path
    pictures: list[str]

    def camera_marks(self) -> dict[str, dict[str, Any]]:
        return {row["image_id"]: row for row in ls_json(self.camera_card)}


@contextmanager
def camera_and_two_desks(tmp_path: Path, *, pictures: int = 3) -> Iterator[Field]:
    cards = make_mesh(tmp_path, [DeviceSpec("cam", Role.CAMERA), DeviceSpec("desk-a", Role.DESK),
                                 DeviceSpec("desk-b", Role.DESK)])
    shots = write_pictures(tmp_path / "shots", pictures, side=400, seed=19)
    with Card.open(cards[0]) as card:
        ids = [r.image_id for r in import_paths(card, shots, now=time.time()).imported]
    cam_port, a_port, b_port = free_port(), free_port(), free_port()
    camera = NodeProcess(cards[0], ["--listen", f"127.0.0.1:{cam_port}", "--no-discovery",
                                    "--peer", f"127.0.0.1:{a_port}", "--peer", f"127.0.0.1:{b_port}"])
    desks = {"desk-a": DeskProcess(cards[1], a_port, [cam_port]),
             "desk-b": DeskProcess(cards[2], b_port, [cam_port])}
    try:
        camera.start().wait_ready()
        for desk in desks.values():
            desk.start()
        for name, desk in desks.items():
            wait_until(f"{name} to show the camera's {pictures} pictures",
                       lambda desk=desk: len(desk.tiles()) == pictures)  # type: ignore[misc]
        yield Field(camera, desks, cards[0], ids)
    finally:
        for desk in desks.values():
            desk.stop()
        camera.stop()


def shown(marks: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in marks.items() if v not in (None, False, "", [])}


def test_marks_on_one_desk_reach_the_camera_and_the_other_desk_and_agree_after_a_partition(
    tmp_path: Path,
) -> None:
    with camera_and_two_desks(tmp_path) as mesh:
        a, b = mesh.desks["desk-a"], mesh.desks["desk-b"]
        first, second = mesh.pictures[0], mesh.pictures[1]
        a.mark([first], rating=4, color=2, tagged=True, caption="Goal, 89th minute")
        want = {"rating": 4, "color": 2, "tagged": True, "caption": "Goal, 89th minute"}
        wait_until("the camera's ls --json to show desk-a's marks",
                   lambda: shown(mesh.camera_marks()[first]["marks"]) == want)
        wait_until("desk-b to show desk-a's marks", lambda: shown(b.tiles()[first]["marks"]) == want)
        row = mesh.camera_marks()[first]
        assert set(row["marks_changed"]) == set(want)
        assert {c["device"] for c in row["marks_changed"].values()} == {a_id(a)}

        # The camera stops: the desks are apart.  Each marks the second picture its own way,
        # desk-b after desk-a, and each sees only its own.
        mesh.camera.stop()
        a.mark([second], rating=1, headline="desk-a's headline", keywords=["early"])
        time.sleep(0.05)  # a later stamp, on this machine's one clock
        b.mark([second], rating=5, credit="desk-b's credit")
        assert shown(a.tiles()[second]["marks"])["rating"] == 1
        assert shown(b.tiles()[second]["marks"])["rating"] == 5
        mesh.camera.start().wait_ready()
        # By the rule: per field, the later change (desk-b's rating), and each field only one
        # side set kept (desk-a's headline and keywords, desk-b's credit).
        agreed = {"rating": 5, "headline": "desk-a's headline", "keywords": ["early"],
                  "credit": "desk-b's credit"}
        for name, desk in mesh.desks.items():
            wait_until(f"{name} to show the merged marks",
                       lambda desk=desk: shown(desk.tiles()[second]["marks"]) == agreed)  # type: ignore[misc]
        wait_until("the camera to show the merged marks",
                   lambda: shown(mesh.camera_marks()[second]["marks"]) == agreed)
        assert shown(b.tiles()[first]["marks"]) == want  # the first picture's marks stayed


def a_id(desk: DeskProcess) -> str:
    from mesh.identity import Identity

    return Identity.load(desk.card).device_id
