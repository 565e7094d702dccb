"""Dispersal on real `cammesh node` processes (issue 5, "Must show" 1): a small card fills,
its originals go to two holders, every picture reads out byte-identical from a third device,
and `cammesh collect` brings them home while the holders release them.

Every wait is a bounded poll (tests/integration/nodes.py); the checks are on what the cards
hold, read through `cammesh ls --json` / `--held` and, once the nodes stop, by opening them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mesh.desk_demo import DeviceSpec
from protocol.messages import Role
from tests.integration.devices import ProcessMesh, audit, cammesh, disagreements, ls_json
from tests.integration.nodes import wait_until, write_pictures

pytestmark = pytest.mark.integration

PICTURE_SIDE = 900  # about 400 kB each: big enough to take chunks, small enough to make fast
THUMBNAILS_ONLY = ["--policy", "*=thumbnails"]  # originals move only by dispersal here


def settled(mesh: ProcessMesh, ids: dict[str, str], owner: str, limit: int,
            peaks: list[int]) -> bool:
    """The owner is at or below its high-water mark and every list agrees with its holders."""
    status = mesh[owner].running.ask({"op": "status"})
    peaks.append(status["used"])
    assert status["used"] <= status["capacity"], f"{owner} passed its capacity: {status}"
    return status["used"] <= limit and not disagreements(mesh.listings(), ids)


def import_batch(mesh: ProcessMesh, owner: str, files: list[Path]) -> list[str]:
    answer = mesh[owner].running.ask({"op": "import", "paths": [str(p) for p in files]})
    summary = answer["summary"]
    # A capture that did not fit is refused with a reason, never silently dropped.
    assert len(summary["imported"]) + len(summary["rejected"]) == len(files), summary
    assert not summary["rejected"], summary["rejected"]
    return [item["image_id"] for item in summary["imported"]]


def test_a_full_card_disperses_to_two_holders_and_every_picture_reads_out(
    tmp_path: Path, meshes: list[ProcessMesh]
) -> None:
    capacity = 6_000_000
    mesh = ProcessMesh.create(
        tmp_path,
        [DeviceSpec("cam", Role.CAMERA, capacity), DeviceSpec("desk", Role.DESK),
         DeviceSpec("cam2", Role.CAMERA),
         # The reader's card is too small to hold anyone's originals: it only reads out.
         DeviceSpec("reader", Role.CAMERA, 300_000)],
        {"cam": ["--high-water", "0.5", "--replicas", "2"], "desk": THUMBNAILS_ONLY,
         "cam2": THUMBNAILS_ONLY, "reader": THUMBNAILS_ONLY},
    )
    meshes.append(mesh)
    mesh.start_all()
    mesh.wait_connected()
    ids = mesh.ids()
    files = write_pictures(tmp_path / "pics", 20, side=PICTURE_SIDE, seed=11)
    source = {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in files}
    assert sum(f.stat().st_size for f in files) > capacity  # more than the card can take

    limit, peaks, imported = capacity // 2, list[int](), list[str]()
    for start in range(0, len(files), 5):
        batch = files[start:start + 5]
        if start == 0:  # `cammesh import` on a card a node runs on: the node imports them
            result = cammesh("import", mesh["cam"].card, *batch)
            assert result.returncode == 0 and "imported 5" in result.stdout, result.stderr
            imported += [i for i in source if source[i] in batch]
        else:
            imported += import_batch(mesh, "cam", batch)
        wait_until("cam back under its high-water mark, lists agreeing with holdings",
                   lambda: settled(mesh, ids, "cam", limit, peaks))
    assert sorted(imported) == sorted(source)
    assert max(peaks) <= capacity

    # The dispersion list names both holders of each dispersed picture (replicas 2).
    pictures = {row["image_id"]: row for row in ls_json(mesh["cam"].card)}
    dispersed = {i for i, row in pictures.items() if row["where"] == "dispersed"}
    assert len(dispersed) >= 10  # 20 pictures of which at most ~7 fit under the mark
    for image_id in dispersed:
        holders = {(h["holder"], h["state"]) for h in pictures[image_id]["holders"]}
        assert holders == {(ids["desk"], "stored"), (ids["cam2"], "stored")}, image_id[:12]
    for image_id in set(pictures) - dispersed:
        assert pictures[image_id]["where"] == "local" and not pictures[image_id]["holders"]
    # Holdings: apart from the holders' own pictures, counted against their cards.
    for holder in ("desk", "cam2"):
        held = ls_json(mesh[holder].card, held=True)
        assert {h["image_id"] for h in held} == dispersed
        assert all(h["owner"] == ids["cam"] for h in held)
        assert all(row["where"] != "local" for row in ls_json(mesh[holder].card))
        status = mesh[holder].running.ask({"op": "status"})
        assert status["used"] >= sum(h["size"] for h in held)
    assert ls_json(mesh["reader"].card, held=True) == []

    # Read-out from a third device, of every picture wherever its original is (claims 8, 18).
    reader = mesh["reader"]
    wait_until("every thumbnail at the reader",
               lambda: {r["image_id"] for r in ls_json(reader.card)} >= set(source))
    out = tmp_path / "out"
    out.mkdir()
    some_dispersed = sorted(dispersed)[0]
    got = cammesh("get", reader.card, some_dispersed[:16], "-o", out / "cli.jpg")
    assert got.returncode == 0, got.stderr
    assert (out / "cli.jpg").read_bytes() == source[some_dispersed].read_bytes()
    for image_id, file in source.items():
        target = out / f"{image_id}.jpg"
        reader.running.ask({"op": "get", "id": image_id, "path": str(target)}, timeout=180)
        assert target.read_bytes() == file.read_bytes(), image_id[:12]
    # A read-out relays: the dispersed originals stay dispersed, the reader keeps no copy.
    after = {row["image_id"]: row["where"] for row in ls_json(mesh["cam"].card)}
    assert {i for i, where in after.items() if where == "dispersed"} == dispersed
    assert all(row["where"] != "local" for row in ls_json(reader.card))

    mesh.stop_all()
    # The same listings with no node running (the card opened, not a catalog snapshot).
    assert {h["image_id"] for h in ls_json(mesh["cam2"].card, held=True)} == dispersed
    assert {r["image_id"] for r in ls_json(mesh["cam"].card) if r["holders"]} == dispersed
    checked = audit(mesh.cards(), source)
    assert checked.problems == []
    assert all(len(checked.copies[i]) == 2 for i in dispersed)  # one on each holder
    used, cap = checked.used["cam"]
    assert used <= limit and cap == capacity


def test_collect_brings_originals_home_and_holders_release_them(
    tmp_path: Path, meshes: list[ProcessMesh]
) -> None:
    capacity = 6_000_000
    mesh = ProcessMesh.create(
        tmp_path,
        [DeviceSpec("cam", Role.CAMERA, capacity), DeviceSpec("desk", Role.DESK),
         DeviceSpec("cam2", Role.CAMERA)],
        {"cam": ["--high-water", "0.4", "--replicas", "2"], "desk": THUMBNAILS_ONLY,
         "cam2": THUMBNAILS_ONLY},
    )
    meshes.append(mesh)
    mesh.start_all()
    mesh.wait_connected()
    ids = mesh.ids()
    files = write_pictures(tmp_path / "pics", 12, side=PICTURE_SIDE, seed=12)
    source = {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in files}
    peaks: list[int] = []
    for start in (0, 6):
        import_batch(mesh, "cam", files[start:start + 6])
        wait_until("cam under its mark", lambda: settled(mesh, ids, "cam", int(0.4 * capacity), peaks))
    dispersed = {r["image_id"] for r in ls_json(mesh["cam"].card) if r["where"] == "dispersed"}
    assert len(dispersed) >= 4

    # With the mark still at 40% there is no room: collect says so and nothing moves.
    one = sorted(dispersed)[0]
    result = cammesh("collect", mesh["cam"].card, one[:16])
    assert result.returncode == 1 and "no room" in result.stderr, result.stderr
    wait_until("the refusal in the log", lambda: any(
        e["event"] == "CollectFailed" and e.get("image_id") == one and "no room" in e.get("reason", "")
        for e in mesh["cam"].running.events()))
    assert {h["image_id"] for h in ls_json(mesh["desk"].card, held=True)} == dispersed

    # Room again (the mark raised, as after offloading): one by id, then --all.
    mesh["cam"].running.stop()
    mesh["cam"].args = ["--high-water", "0.95", "--replicas", "2"]
    mesh.start("cam")
    mesh.wait_connected()
    result = cammesh("collect", mesh["cam"].card, one[:16])
    assert result.returncode == 0 and "collecting 1" in result.stdout, result.stderr
    wait_until("the first original home and released by both holders", lambda: (
        {r["image_id"]: r["where"] for r in ls_json(mesh["cam"].card)}[one] == "local"
        and all(one not in {h["image_id"] for h in ls_json(mesh[h].card, held=True)}
                for h in ("desk", "cam2"))))
    result = cammesh("collect", mesh["cam"].card, "--all")
    assert result.returncode == 0, result.stderr
    assert f"collecting {len(dispersed) - 1} original(s)" in result.stdout
    wait_until("every original home, every holder released", lambda: (
        all(r["where"] == "local" and not r["holders"] for r in ls_json(mesh["cam"].card))
        and ls_json(mesh["desk"].card, held=True) == []
        and ls_json(mesh["cam2"].card, held=True) == []))
    events = mesh["desk"].running.events()
    assert {e["image_id"] for e in events if e["event"] == "Released"} == dispersed

    mesh.stop_all()
    checked = audit(mesh.cards(), source)
    assert checked.problems == []
    assert all(checked.copies[i] == ["cam:local"] for i in source)
    assert checked.used["cam"][0] <= capacity


def test_a_read_out_while_the_holder_is_away_names_it_and_works_once_it_returns(
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
    ids = mesh.ids()
    files = write_pictures(tmp_path / "pics", 5, side=PICTURE_SIDE, seed=13)
    source = {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in files}
    import_batch(mesh, "cam", files)
    wait_until("cam under its mark", lambda: settled(mesh, ids, "cam", int(0.4 * capacity), []))
    away = sorted(r["image_id"] for r in ls_json(mesh["cam"].card) if r["where"] == "dispersed")[0]
    wait_until("the thumbnail at the reader",
               lambda: away in {r["image_id"] for r in ls_json(mesh["reader"].card)})

    mesh["desk"].running.stop()
    wait_until("cam to see the desk gone", lambda: mesh.connected("cam") == 1)
    result = cammesh("get", mesh["reader"].card, away[:16], "-o", tmp_path / "x.jpg")
    assert result.returncode == 2
    assert "desk" in result.stderr and "not connected" in result.stderr, result.stderr
    assert not (tmp_path / "x.jpg").exists()

    mesh.start("desk")
    wait_until("cam to see the desk again", lambda: mesh.connected("cam") == 2)
    result = cammesh("get", mesh["reader"].card, away[:16], "-o", tmp_path / "x.jpg")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.jpg").read_bytes() == source[away].read_bytes()
