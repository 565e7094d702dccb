"""Dispersal over a link of known rate, and the cost of reading out a dispersed picture.

Prints one JSON object (issue 5, "Must show" 4).  A camera whose card is above its
high-water mark disperses 12 MB originals to a desk; then the camera's own user reads
out (``get``) a picture still on the card and one that was dispersed, which the camera
collects from the desk across the link.  As root the two `cammesh node` processes run
in two network namespaces joined by a tbf-shaped veth pair (tests/integration/devices.py,
``shaped_link``); otherwise on loopback with both nodes pacing themselves (``--rate``).

- ``dispersal_link_fraction``: bytes of the dispersed originals ÷ (the camera's first
  ``DispersalAccepted`` to its last ``Dispersed``) ÷ the link rate;
- ``readout_local_s`` / ``readout_dispersed_s``: wall time of ``get`` through the
  camera's control socket, best of ``--repeat``; ``readout_dispersed_floor_s`` is the
  picture's size ÷ the link rate.

    python bench/dispersal.py [--count 6] [--mbit 40] [--loopback] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mesh.card_commands import read_listing  # noqa: E402
from mesh.desk_demo import DeviceSpec  # noqa: E402
from protocol.messages import Role  # noqa: E402
from protocol.store import DispersalState  # noqa: E402
from storage.card import Card  # noqa: E402
from storage.importer import import_paths  # noqa: E402
from tests.integration.devices import LinkEnd, ProcessMesh, bench_on_link  # noqa: E402
from tests.integration.nodes import NodeProcess, wait_until, write_pictures  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "cammesh-bench"
SIDE_12MB = 5000  # write_pictures at this side gives about 12 MB
HIGH_WATER = 0.35


def cached_pictures(count: int, seed: int = 21) -> list[Path]:
    folder = CACHE / f"dispersal-12mb-seed{seed}"
    done = folder / "complete"  # written last: an interrupted run's pictures are not reused
    if not (done.is_file() and int(done.read_text() or 0) >= count):
        shutil.rmtree(folder, ignore_errors=True)
        write_pictures(folder, count, side=SIDE_12MB, seed=seed)
        done.write_text(str(count))
    return sorted(folder.glob("IMG_*.JPG"))[:count]


def events(node: NodeProcess, name: str) -> list[dict[str, Any]]:
    return [doc for doc in node.events() if doc["event"] == name]


def timed_get(node: NodeProcess, image_id: str, out: Path, repeat: int) -> float:
    best = float("inf")
    for attempt in range(repeat):
        target = out / f"{image_id[:12]}-{attempt}.jpg"
        started = time.perf_counter()
        node.ask({"op": "get", "id": image_id, "path": str(target)}, timeout=600)
        best = min(best, time.perf_counter() - started)
        if target.stat().st_size == 0:
            raise SystemExit(f"read-out of {image_id[:12]} wrote nothing")
        target.unlink()
    return best


def run(args: argparse.Namespace, folder: Path, link: tuple[LinkEnd, LinkEnd] | None) -> dict[str, Any]:
    pictures = cached_pictures(args.count)
    total = sum(p.stat().st_size for p in pictures)
    capacity = int(total * 1.1)  # every picture fits, far above the mark: most must leave
    rate = args.mbit * 1e6 / 8  # bytes per second
    pacing = [] if link is not None else ["--rate", str(int(rate))]
    mesh = ProcessMesh.create(folder, [DeviceSpec("camera", Role.CAMERA, capacity),
                                DeviceSpec("desk", Role.DESK)],
                       {"camera": ["--high-water", str(HIGH_WATER), *pacing],
                        "desk": ["--policy", "*=thumbnails", *pacing]})
    if link is not None:
        for device, side in zip(mesh.devices.values(), link, strict=True):
            device.host, device.netns = side.address, side.netns
    with Card.open(mesh["camera"].card) as card:
        summary = import_paths(card, pictures, now=time.time())
        sizes = {item.image_id: item.size for item in summary.imported}
    try:
        mesh.start("desk")
        camera = mesh.start("camera")

        def dispersal_done() -> bool:
            status = camera.ask({"op": "status"})
            entries = read_listing(mesh["camera"].card).dispersion
            return status["used"] <= HIGH_WATER * capacity and all(
                e.state is DispersalState.STORED for e in entries)

        wait_until("the camera under its high-water mark", dispersal_done, timeout=1200, every=0.5)
        accepted = events(camera, "DispersalAccepted")
        dispersed = events(camera, "Dispersed")
        moved = sum(sizes[d["image_id"]] for d in dispersed)
        seconds = max(d["t"] for d in dispersed) - min(a["t"] for a in accepted)
        where = {i["image_id"]: i["where"] for i in camera.ask({"op": "ls"})["images"]}
        local = next(i for i, w in where.items() if w == "local")
        away = next(i for i, w in where.items() if w == "dispersed")
        out = folder / "out"
        out.mkdir()
        readout_local = timed_get(camera, local, out, args.repeat)
        readout_dispersed = timed_get(camera, away, out, args.repeat)
    finally:
        mesh.stop_all()
    return {
        "link": f"tbf-shaped veth between two network namespaces ({link[0].netns}, {link[1].netns})"
        if link is not None else "loopback, both nodes paced with --rate",
        "link_mbit": args.mbit,
        "pictures": len(sizes),
        "dispersed": len(dispersed),
        "dispersed_bytes": moved,
        "dispersal_s": round(seconds, 3),
        "dispersal_mbit": round(moved * 8 / seconds / 1e6, 2),
        "dispersal_link_fraction": round(moved / seconds / rate, 4),
        "readout_bytes": {"local": sizes[local], "dispersed": sizes[away]},
        "readout_local_s": round(readout_local, 3),
        "readout_dispersed_s": round(readout_dispersed, 3),
        "readout_dispersed_floor_s": round(sizes[away] / rate, 3),
        "logs": {name: str(d.node.log) for name, d in mesh.devices.items()
                 if d.node is not None and args.keep is not None},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=6, help="12 MB pictures (default 6)")
    parser.add_argument("--mbit", type=float, default=40.0, help="link rate (default 40 Mbit/s)")
    parser.add_argument("--repeat", type=int, default=2, help="read-outs of each kind, best kept")
    parser.add_argument("--loopback", action="store_true", help="loopback even as root")
    parser.add_argument("--keep", type=Path, help="keep cards and logs in this folder")
    args = parser.parse_args()
    result = bench_on_link(run, args, prefix="cammesh-dispersal-")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
